//! What rules look up, and where it comes from: the cluster (watch cache,
//! then one bounded GET) for `serve`, the manifests given to `check`, the
//! listings of `audit`.
//!
//! `serve` fetches, before the pure review runs, exactly what the rules
//! declared ([`crate::rules::needs`]) into a [`Fetched`]; the review reads
//! only that.

mod cluster;
pub mod listing;
mod manifests;
mod recent;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

pub use cluster::{ClusterCache, RECENT_WINDOW, connect};
pub use manifests::{Duplicate, ManifestLookups};

use crate::rules::{BudgetsState, Lookups, Need, ServiceState};

/// Where a server's lookups are answered.
#[derive(Clone)]
pub enum LookupSource {
    Cluster(Arc<ClusterCache>),
    /// Fixed manifests (`serve --services-from`: benchmarks, demos).
    Static(Arc<ManifestLookups>),
}

/// What was looked up, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupKind {
    Service,
    DisruptionBudgets,
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
        mut on_lookup: impl FnMut(LookupKind, LookupPath),
    ) -> Fetched {
        let cluster = match self {
            LookupSource::Cluster(c) => c,
            LookupSource::Static(s) => {
                let answers = needs
                    .into_iter()
                    .map(|need| {
                        let answer = match &need {
                            Need::Service { namespace, name } => {
                                Answer::Service(s.service(namespace, name))
                            }
                            Need::DisruptionBudgets { namespace } => {
                                Answer::Budgets(s.disruption_budgets(namespace))
                            }
                        };
                        on_lookup(answer.kind(), LookupPath::Static);
                        (need, answer, LookupPath::Static)
                    })
                    .collect();
                return Fetched {
                    answers,
                    deadline: None,
                };
            }
        };
        let timeout = cluster.lookup_timeout();
        let deadline = Instant::now() + timeout;
        let lookups = needs.into_iter().map(|need| async move {
            let (answer, path) = match &need {
                Need::Service { namespace, name } => {
                    within(deadline, timeout, cluster.resolve(namespace, name)).await
                }
                Need::DisruptionBudgets { namespace } => {
                    within(deadline, timeout, cluster.budgets(namespace)).await
                }
            };
            (need, answer, path)
        });
        let answers = futures::future::join_all(lookups).await;
        for (_, answer, path) in &answers {
            on_lookup(answer.kind(), *path);
        }
        Fetched {
            answers,
            deadline: Some(deadline),
        }
    }

    /// Asks the API server (at most once per namespace per
    /// [`RECENT_WINDOW`]) for the budgets the watch answered for: for a
    /// denial that rests on "none of them selects the pods", since a budget
    /// created a moment before the StatefulSet (`kubectl apply -f` of both)
    /// may not have reached the watch yet. Within what is left of the
    /// fetch's deadline; an answer that does not come keeps the watch's.
    pub async fn confirm_budgets(
        &self,
        fetched: &mut Fetched,
        mut on_lookup: impl FnMut(LookupKind, LookupPath),
    ) {
        let (LookupSource::Cluster(cluster), Some(deadline)) = (self, fetched.deadline) else {
            return;
        };
        let timeout = cluster.lookup_timeout();
        let unconfirmed = fetched.answers.iter_mut().filter(|(_, answer, path)| {
            *path == LookupPath::Cache && matches!(answer, Answer::Budgets(BudgetsState::Found(_)))
        });
        let confirmations = unconfirmed.map(|(need, answer, path)| async move {
            let Need::DisruptionBudgets { namespace } = need else {
                return None;
            };
            let (live, live_path) =
                within(deadline, timeout, cluster.live_budgets(namespace)).await;
            if matches!(live, Answer::Budgets(BudgetsState::Found(_))) {
                *answer = live;
                *path = live_path;
            }
            Some(live_path)
        });
        for path in futures::future::join_all(confirmations)
            .await
            .into_iter()
            .flatten()
        {
            on_lookup(LookupKind::DisruptionBudgets, path);
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

/// `lookup` by `deadline`, or an answer saying it did not come within
/// `timeout`.
async fn within<T: State>(
    deadline: Instant,
    timeout: Duration,
    lookup: impl Future<Output = (T, LookupPath)>,
) -> (Answer, LookupPath) {
    match tokio::time::timeout_at(deadline, lookup).await {
        Ok((state, path)) => (state.into_answer(), path),
        Err(_) => (
            T::unknown(cluster::timed_out(timeout)),
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

#[derive(Debug)]
enum Answer {
    Service(ServiceState),
    Budgets(BudgetsState),
}

impl Answer {
    fn kind(&self) -> LookupKind {
        match self {
            Answer::Service(_) => LookupKind::Service,
            Answer::Budgets(_) => LookupKind::DisruptionBudgets,
        }
    }
}

/// What one kind of lookup finds, as the [`Answer`] it is.
trait State {
    fn into_answer(self) -> Answer;
    /// The answer of a lookup that could not be made.
    fn unknown(why: String) -> Answer;
}

impl State for ServiceState {
    fn into_answer(self) -> Answer {
        Answer::Service(self)
    }
    fn unknown(why: String) -> Answer {
        Answer::Service(ServiceState::Unknown(why))
    }
}

impl State for BudgetsState {
    fn into_answer(self) -> Answer {
        Answer::Budgets(self)
    }
    fn unknown(why: String) -> Answer {
        Answer::Budgets(BudgetsState::Unknown(why))
    }
}

/// A rule asked for what it did not declare: a bug, caught by the tests
/// (debug builds panic); in production the rule warns instead of guessing.
fn undeclared(what: &str) -> String {
    debug_assert!(false, "{what} looked up but not declared");
    tracing::error!(what, "a rule looked up what it did not declare");
    "not fetched: an sts-guard bug, please report it".into()
}

impl Lookups for Fetched {
    fn service(&self, namespace: &str, name: &str) -> ServiceState {
        let want = Need::Service {
            namespace: namespace.into(),
            name: name.into(),
        };
        match self.answers.iter().find(|(need, _, _)| *need == want) {
            Some((_, Answer::Service(state), _)) => state.clone(),
            _ => ServiceState::Unknown(undeclared(&format!("Service {namespace}/{name}"))),
        }
    }

    fn disruption_budgets(&self, namespace: &str) -> BudgetsState {
        let want = Need::DisruptionBudgets {
            namespace: namespace.into(),
        };
        match self.answers.iter().find(|(need, _, _)| *need == want) {
            Some((_, Answer::Budgets(state), _)) => state.clone(),
            _ => BudgetsState::Unknown(undeclared(&format!("PodDisruptionBudgets of {namespace}"))),
        }
    }
}
