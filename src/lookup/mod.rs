//! What rules look up besides the object under review, and where it comes
//! from: the cluster (a watch cache, then one bounded live request) for
//! `serve`, the manifests given to `check`, the listings of `audit`.
//!
//! A looked-up kind is a value, like a rule: a [`Kind`] says what a lookup
//! of it asks ([`Kind::Query`]) and finds ([`Kind::State`]), what the rules
//! read of one object (its projection), how its watch cache and a live
//! request answer, how an object of a manifest or a listing becomes the
//! projection, and its names and words ([`KindInfo`]). The rest is the
//! same for every kind: the fetch of one review's lookups under one
//! deadline ([`LookupSource::fetch`]), the short-lived cache of live
//! lookups, the metrics, and what the review makes of an object that is
//! missing or could not be looked up.
//!
//! `serve` fetches, before the pure review runs, exactly what the rules
//! declared (`crate::rules::needs`) into a [`Fetched`]; the review reads
//! only that.
//!
//! # Adding a looked-up kind
//!
//! 1. Write `src/lookup/<kinds>.rs` holding a unit struct that implements
//!    [`Kind`]: its [`KindInfo`] (metric label, words, the codes of its
//!    findings and warnings); the `Query` a rule asks with and the `State`
//!    it gets back; the `Projection` (a type in `crate::view`: what the
//!    rules read of one object; keep it small, the watch keeps one per
//!    object in the cluster) and the lean `Listed` type the watch and
//!    `audit` decode it from ([`listing::lean_metadata`]); `watch` (the
//!    watch's selectors); `cached` (the watch cache's answer, or `None` to
//!    ask the API server) and `live`/`from_live` (that request and what its
//!    answer means); `from_manifest` (a manifest's object, decoded as the
//!    API server would); `from_objects` (the answer from manifests or a
//!    listing).
//! 2. Add `<kinds>::<Kind>` to the `kinds!` list below.
//! 3. Write the rule that reads it (`crate::rules`, "Adding a rule"): its
//!    `needs` returns `Need::<Kind>(query)`, its `check` reads
//!    [`look_up`]`::<Kind>(subject.lookups, query)` and reports
//!    `FindingKind::Missing(&<Kind>::INFO)` or `FindingKind::Unknown(..)`;
//!    add it to the `rules!` list.
//!
//! That is all: `serve` watches the kind, answers from the watch or one
//! live request shared for [`RECENT_WINDOW`], counts its lookups in
//! `sts_guard_lookups_total{kind}` and its watch in
//! `sts_guard_cache_synced{what}`; `check` reads it from manifests, `audit`
//! lists it; the review lets a missing object pass a dry-run and a failed
//! lookup warn.
//!
//! `disruption-budget` is exactly that: (1) `src/lookup/disruption_budgets.rs`
//! holds `DisruptionBudgets`: asked by namespace, answered `BudgetsState`
//! (every budget of the namespace, or unknown), projection
//! `view::DisruptionBudget` decoded from `ListedBudget`, a watch of every
//! budget answering by a range of the ordered cache once it has synced and
//! by a live LIST before, `policy/v1` `PodDisruptionBudget` in manifests;
//! (2) `disruption_budgets::DisruptionBudgets` in `kinds!`; (3)
//! `src/rules/disruption_budget.rs` and `disruption_budget` in `rules!`.

mod client;
mod cluster;
pub mod listing;
mod objects;
mod recent;

use std::collections::BTreeSet;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use futures::future::BoxFuture;
use k8s_openapi::NamespaceResourceScope;
use kube::runtime::watcher;
use tokio::time::Instant;

pub use client::connect;
pub use cluster::{Cache, ClusterCache, Looked, RECENT_WINDOW, Store};
pub use listing::{Key, Projection};
pub use objects::{Definitions, Duplicate, Objects};

/// Declares the looked-up kinds (one module each), [`KINDS`], and what is
/// the same for every kind: [`Need`], [`Answer`], [`Object`] and the
/// per-kind stores of the cluster cache and of [`Objects`].
macro_rules! kinds {
    ($($module:ident :: $kind:ident),* $(,)?) => {
        $(mod $module; pub use $module::*;)*

        /// Every looked-up kind.
        pub const KINDS: &[&KindInfo] = &[$(&<$kind as Kind>::INFO),*];

        /// Something a rule looks up besides the object under review.
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Need {
            $($kind(<$kind as Kind>::Query)),*
        }

        /// What a lookup found.
        #[derive(Debug, Clone)]
        pub enum Answer {
            $($kind(<$kind as Kind>::State)),*
        }

        /// One object of a looked-up kind, as rules read it, from a
        /// manifest or a listing.
        #[derive(Debug, Clone)]
        pub enum Object {
            $($kind(Arc<<$kind as Kind>::Projection>)),*
        }

        /// The cluster cache's store of each kind.
        #[derive(Default)]
        pub struct CacheStores {
            $($module: Store<$kind>),*
        }

        /// The definitions of each kind known from manifests or listings.
        #[derive(Debug, Default)]
        pub struct ObjectMaps {
            $($module: Definitions<<$kind as Kind>::Projection>),*
        }

        $(impl Member for $kind {
            fn need(query: Self::Query) -> Need {
                Need::$kind(query)
            }
            fn answer(state: Self::State) -> Answer {
                Answer::$kind(state)
            }
            #[allow(unreachable_patterns)]
            fn state(answer: &Answer) -> Option<&Self::State> {
                match answer {
                    Answer::$kind(state) => Some(state),
                    _ => None,
                }
            }
            fn object(projection: Arc<Self::Projection>) -> Object {
                Object::$kind(projection)
            }
            fn store(stores: &CacheStores) -> &Store<Self> {
                &stores.$module
            }
            fn definitions(maps: &ObjectMaps) -> &Definitions<Self::Projection> {
                &maps.$module
            }
        })*

        impl Need {
            /// The kind this need looks up.
            pub fn kind(&self) -> &'static KindInfo {
                match self {
                    $(Need::$kind(_) => &<$kind as Kind>::INFO),*
                }
            }

            /// The answer of a lookup of this need that could not be made.
            pub fn unknown(&self, why: String) -> Answer {
                match self {
                    $(Need::$kind(_) => Answer::$kind(<$kind as Kind>::unknown(why))),*
                }
            }

            fn answer_in(&self, maps: &ObjectMaps) -> Answer {
                match self {
                    $(Need::$kind(query) => Answer::$kind(<$kind as Kind>::from_objects(&maps.$module, query))),*
                }
            }

            async fn answer_from(&self, cluster: &ClusterCache, deadline: Instant) -> Looked<Answer> {
                match self {
                    $(Need::$kind(query) => within::<$kind>(deadline, cluster, cluster.look_up::<$kind>(query)).await),*
                }
            }

            /// A live answer, or `None` when it did not come.
            async fn live(&self, cluster: &ClusterCache, deadline: Instant) -> (Option<Answer>, LookupPath) {
                match self {
                    $(Need::$kind(query) => cluster::confirmed::<$kind>(cluster, query, deadline).await),*
                }
            }
        }

        impl Object {
            /// The object of a manifest of `api_version` and `kind`, when it
            /// is of a looked-up kind: `None` when it is not; `Some(None)`
            /// when it does not decode (the API server would refuse it, so
            /// it does not exist here).
            pub fn from_manifest(
                api_version: &str,
                kind: &str,
                json: impl FnOnce() -> serde_json::Value,
                default_namespace: &str,
            ) -> Option<Option<Object>> {
                $(let info = &<$kind as Kind>::INFO;
                if (info.api_version, info.kind) == (api_version, kind) {
                    return Some(<$kind as Kind>::from_manifest(json(), default_namespace)
                        .map(|p| Object::$kind(Arc::new(p))));
                })*
                None
            }

            fn insert_into(self, maps: &mut ObjectMaps, place: String) {
                match self {
                    $(Object::$kind(p) => objects::insert(&mut maps.$module, <$kind as Kind>::key(&p), p, place)),*
                }
            }
        }

        impl ClusterCache {
            fn watch_every_kind(&self, tasks: &crate::tasks::Spawner) {
                $(cluster::watch::<$kind>(self, tasks);)*
            }

            /// Whether each kind's watch has delivered its first list, by
            /// the `what` label of `sts_guard_cache_synced`.
            pub fn synced(&self) -> Vec<(&'static str, bool)> {
                vec![$((<$kind as Kind>::INFO.name, self.stores.$module.is_synced())),*]
            }
        }

        /// Lists every kind for `audit`, one kind after the other.
        pub async fn list_every_kind<L: Lister>(lister: &mut L) -> Result<(), L::Error> {
            $(lister.list::<$kind>().await?;)*
            Ok(())
        }
    };
}

kinds![services::Services, disruption_budgets::DisruptionBudgets];

/// A kind of object rules look up. One file each; see "Adding a
/// looked-up kind" above.
pub trait Kind: Sized + Send + Sync + 'static {
    const INFO: KindInfo;
    /// What a lookup asks for: `(namespace, name)` of one object, the
    /// namespace of all its objects, ...
    type Query: Clone + Ord + Hash + fmt::Debug + Send + Sync + 'static;
    /// What a lookup finds.
    type State: Clone + fmt::Debug + Send + Sync + 'static;
    /// What the rules read of one object.
    type Projection: fmt::Debug + Send + Sync + 'static;
    /// The object as the watch and `audit` decode it.
    type Listed: Projection<Into = Self::Projection>
        + kube::Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + fmt::Debug
        + Send
        + 'static;
    /// What a live request brings back.
    type Live: Clone + Send + Sync + 'static;

    /// The answer of a lookup that could not be made.
    fn unknown(why: String) -> Self::State;
    /// The watch's selectors.
    fn watch() -> watcher::Config {
        watcher::Config::default()
    }
    /// The watch cache's answer (`synced`: its first list arrived), or
    /// `None` to ask the API server.
    fn cached(cache: &Cache<Self>, synced: bool, query: &Self::Query) -> Option<Self::State>;
    /// The live request (what it asks, for the log; the request).
    fn live(client: &kube::Client, query: &Self::Query) -> LiveRequest<Self::Live>;
    /// What a live answer (or why there is none) means.
    fn from_live(answer: Result<Self::Live, String>) -> Self::State;
    /// The projection of a manifest's object, `None` when it does not
    /// decode.
    fn from_manifest(
        object: serde_json::Value,
        default_namespace: &str,
    ) -> Option<Self::Projection>;
    /// The (namespace, name) of a projection.
    fn key(projection: &Self::Projection) -> Key;
    /// The answer from what manifests or a listing define.
    fn from_objects(defined: &Definitions<Self::Projection>, query: &Self::Query) -> Self::State;
}

/// A live request: what it asks (`Service shop/web`, for the log) and the
/// request.
pub type LiveRequest<T> = (String, BoxFuture<'static, Result<T, kube::Error>>);

/// What `kinds!` adds to each [`Kind`]: its place in [`Need`], [`Answer`],
/// [`Object`] and the stores.
pub trait Member: Kind {
    fn need(query: Self::Query) -> Need;
    fn answer(state: Self::State) -> Answer;
    fn state(answer: &Answer) -> Option<&Self::State>;
    fn object(projection: Arc<Self::Projection>) -> Object;
    fn store(stores: &CacheStores) -> &Store<Self>;
    fn definitions(maps: &ObjectMaps) -> &Definitions<Self::Projection>;
}

/// A kind's names and words.
#[derive(Debug, PartialEq, Eq)]
pub struct KindInfo {
    /// `services`: the `kind` label of `sts_guard_lookups_total`, the `what`
    /// label of `sts_guard_cache_synced`.
    pub name: &'static str,
    /// `Services`, in messages.
    pub plural: &'static str,
    /// What the watch holds (`headless Services`), in the log.
    pub watched: &'static str,
    /// The watch's task (`watch: headless Services`), to its supervisor.
    pub watch_task: &'static str,
    /// Its manifests' `apiVersion` and `kind`.
    pub api_version: &'static str,
    pub kind: &'static str,
    /// The code of a finding that rests on the object being absent
    /// (`service-missing`).
    pub missing: &'static str,
    /// The code of a finding that rests on a lookup that failed.
    pub unknown: &'static str,
    /// Why an absent object only warns on dry-run: the same apply may
    /// create it, and a dry-run stores nothing.
    pub dry_run_missing: Reason,
    /// Why a failed lookup only warns.
    pub lookup_failed: Reason,
    /// Why an absent object only warns on UPDATE, when the field that names
    /// it is immutable (an object deleted after creation never blocks).
    pub gone_on_update: Option<Reason>,
}

/// Why an enforced finding only warns: its stable code and the note the
/// warning ends with.
#[derive(Debug, PartialEq, Eq)]
pub struct Reason {
    /// `dry-run-service-missing`, in logs and reports.
    pub code: &'static str,
    /// ` (allowed on dry-run: the same apply may create it)`. Short: a
    /// warning is cut at 256 bytes.
    pub note: &'static str,
}

/// What a lookup of `K` asked with `query` finds in `lookups`.
pub fn look_up<K: Member>(lookups: &dyn Lookups, query: K::Query) -> K::State {
    let need = K::need(query);
    let answer = lookups.answer(&need);
    match K::state(&answer) {
        Some(state) => state.clone(),
        None => K::unknown(undeclared(&need)),
    }
}

/// Where rules read what they look up: what the webhook fetched for this
/// request in `serve`, the manifests given to `check`, the listings of
/// `audit`.
pub trait Lookups {
    fn answer(&self, need: &Need) -> Answer;
}

/// Knows nothing; for callers that only mutate.
pub struct NoLookups;

impl Lookups for NoLookups {
    fn answer(&self, need: &Need) -> Answer {
        need.answer_in(&ObjectMaps::default())
    }
}

/// Lists the objects of one kind, for [`list_every_kind`].
pub trait Lister {
    type Error;
    fn list<K: Member>(&mut self) -> impl Future<Output = Result<(), Self::Error>>;
}

/// Where a server's lookups are answered.
#[derive(Clone)]
pub enum LookupSource {
    Cluster(Arc<ClusterCache>),
    /// Fixed manifests (`serve --services-from`: benchmarks, demos).
    Static(Arc<Objects>),
}

/// Where a lookup was answered, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupPath {
    Cache,
    ApiGet,
    ApiError,
    /// A live lookup made for an earlier review within
    /// [`RECENT_WINDOW`] (or still on its way).
    Recent,
    Static,
}

impl LookupPath {
    /// Every path, each at its own place (`path as usize`).
    pub const ALL: [LookupPath; 5] = [
        LookupPath::Cache,
        LookupPath::ApiGet,
        LookupPath::ApiError,
        LookupPath::Recent,
        LookupPath::Static,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            LookupPath::Cache => "cache",
            LookupPath::ApiGet => "api",
            LookupPath::ApiError => "api-error",
            LookupPath::Recent => "recent",
            LookupPath::Static => "static",
        }
    }
}

impl LookupSource {
    /// Answers every need ahead of the pure review, all at once and all
    /// within one deadline ([`ClusterCache::lookup_timeout`] from now), so
    /// a review waits for its slowest lookup, never for the sum of them;
    /// `on_lookup` hears once per need what was looked up and where it was
    /// answered.
    pub async fn fetch(
        &self,
        needs: BTreeSet<Need>,
        mut on_lookup: impl FnMut(&'static KindInfo, LookupPath),
    ) -> Fetched {
        let cluster = match self {
            LookupSource::Cluster(c) => c,
            LookupSource::Static(s) => {
                let answers = needs
                    .into_iter()
                    .map(|need| {
                        let answer = s.answer(&need);
                        on_lookup(need.kind(), LookupPath::Static);
                        (need, answer, LookupPath::Static)
                    })
                    .collect();
                return Fetched {
                    answers,
                    deadline: None,
                };
            }
        };
        let deadline = Instant::now() + cluster.lookup_timeout();
        let lookups = needs.into_iter().map(|need| async move {
            let (answer, path) = need.answer_from(cluster, deadline).await;
            (need, answer, path)
        });
        let answers = futures::future::join_all(lookups).await;
        for (need, _, path) in &answers {
            on_lookup(need.kind(), *path);
        }
        Fetched {
            answers,
            deadline: Some(deadline),
        }
    }

    /// Asks the API server again (at most once per query per
    /// [`RECENT_WINDOW`]) what the watch answered for the needs of `kinds`:
    /// for a denial that rests on "not there", since an object created a
    /// moment before the StatefulSet (`kubectl apply -f` of both) may not
    /// have reached the watch yet. Within what is left of the fetch's
    /// deadline; an answer that does not come keeps the watch's.
    pub async fn confirm(
        &self,
        fetched: &mut Fetched,
        kinds: &[&'static KindInfo],
        mut on_lookup: impl FnMut(&'static KindInfo, LookupPath),
    ) {
        let (LookupSource::Cluster(cluster), Some(deadline)) = (self, fetched.deadline) else {
            return;
        };
        let unconfirmed = fetched
            .answers
            .iter_mut()
            .filter(|(need, _, path)| *path == LookupPath::Cache && kinds.contains(&need.kind()));
        let confirmations = unconfirmed.map(|(need, answer, path)| async move {
            let (live, live_path) = need.live(cluster, deadline).await;
            if let Some(live) = live {
                *answer = live;
                *path = live_path;
            }
            (need.kind(), live_path)
        });
        for (kind, path) in futures::future::join_all(confirmations).await {
            on_lookup(kind, path);
        }
    }

    /// True once the source can answer from its cache.
    pub fn is_synced(&self) -> bool {
        match self {
            LookupSource::Cluster(c) => c.is_synced(),
            LookupSource::Static(_) => true,
        }
    }
}

/// `lookup` by `deadline`, or an answer saying it did not come within the
/// cluster's lookup timeout.
async fn within<K: Member>(
    deadline: Instant,
    cluster: &ClusterCache,
    lookup: impl Future<Output = Looked<K::State>>,
) -> Looked<Answer> {
    match tokio::time::timeout_at(deadline, lookup).await {
        Ok((state, path)) => (K::answer(state), path),
        Err(_) => (
            K::answer(K::unknown(cluster::timed_out(cluster.lookup_timeout()))),
            LookupPath::ApiError,
        ),
    }
}

/// What was fetched for one request: the answer to each need and where it
/// was answered, and the deadline they shared.
#[derive(Debug, Default)]
pub struct Fetched {
    answers: Vec<(Need, Answer, LookupPath)>,
    deadline: Option<Instant>,
}

/// A rule asked for what it did not declare: a bug, caught by the tests
/// (debug builds panic); in production the rule warns instead of guessing.
fn undeclared(need: &Need) -> String {
    debug_assert!(false, "{need:?} looked up but not declared");
    tracing::error!(?need, "a rule looked up what it did not declare");
    "not fetched: an sts-guard bug, please report it".into()
}

impl Lookups for Fetched {
    fn answer(&self, need: &Need) -> Answer {
        match self.answers.iter().find(|(fetched, _, _)| fetched == need) {
            Some((_, answer, _)) => answer.clone(),
            None => need.unknown(undeclared(need)),
        }
    }
}
