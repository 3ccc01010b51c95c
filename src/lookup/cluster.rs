//! Services from a live cluster. A watch of the **headless** Services only
//! (the field selector `spec.clusterIP=None`, which the API server serves)
//! keeps a map of small projections (namespace, name, clusterIP, selector:
//! what the headless-service rule reads), so a normal admission makes no
//! API call and memory follows the number of headless Services, not the
//! size of the cluster. A miss (a Service that is not headless, or was
//! created a moment ago) falls back to one GET bounded by a short
//! deadline, so "is not headless" and "names no Service" stay exact, and
//! an unreachable API server costs at most that deadline.

use std::collections::BTreeMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::{WatchStreamExt, watcher};

use futures::FutureExt;
use futures::future::BoxFuture;

use super::LookupPath;
use super::listing::{Key, ListedBudget, ListedService, Projection};
use super::recent::Recent;
use crate::rules::{BudgetsState, ServiceState};
use crate::tasks::Spawner;
use crate::view;

/// The field selector of the watch: headless Services only.
pub const HEADLESS_SELECTOR: &str = "spec.clusterIP=None";

/// A client from the usual configuration (in-cluster, or `KUBECONFIG`),
/// with the process-wide TLS crypto provider kube's rustls client needs.
pub async fn connect() -> Result<kube::Client, kube::Error> {
    crate::install_crypto_provider();
    kube::Client::try_default().await
}

/// Projections by (namespace, name), as a watch keeps them; ordered, so
/// one namespace's entries are a range, not a scan of the whole cache.
type Projections<T> = Arc<RwLock<BTreeMap<Key, Arc<T>>>>;

pub struct ClusterCache {
    client: kube::Client,
    headless: Projections<view::Service>,
    budgets: Projections<view::DisruptionBudget>,
    services_synced: Arc<AtomicBool>,
    budgets_synced: Arc<AtomicBool>,
    /// Live GETs of Services the watch does not hold (not headless, absent,
    /// or created a moment ago), by (namespace, name).
    recent_services: Recent<Key, Live<Option<Arc<view::Service>>>>,
    /// Live LISTs of a namespace's budgets: while the watch has not synced,
    /// and to confirm a denial that rests on its "none".
    recent_budgets: Recent<String, Live<Vec<Arc<view::DisruptionBudget>>>>,
    lookup_timeout: Duration,
}

/// How long a live lookup's answer is reused. A Service that the watch
/// does not hold is either not headless or absent; a change between the
/// two within this window is reported as the other (same rule, same fix),
/// while a Service that becomes headless is seen at once through the watch.
pub const RECENT_WINDOW: Duration = Duration::from_secs(5);

/// One lookup's answer as it left the cache: what was found, and where.
pub type Looked<T> = (T, LookupPath);

impl ClusterCache {
    /// Starts the watches (headless Services, PodDisruptionBudgets) in the
    /// background, unsupervised; `is_synced` turns true once both first
    /// lists have arrived. Each watcher relists and rewatches by itself
    /// (with [`crate::tasks::retry_backoff`]) after an error; its map keeps
    /// its last state meanwhile.
    pub fn start(client: kube::Client, lookup_timeout: Duration) -> Arc<Self> {
        Self::start_with(client, lookup_timeout, &Spawner::detached())
    }

    /// As [`ClusterCache::start`], the watches spawned by `tasks` (serve
    /// supervises them: a watch that ends takes the pod down).
    pub fn start_with(
        client: kube::Client,
        lookup_timeout: Duration,
        tasks: &Spawner,
    ) -> Arc<Self> {
        let this = Arc::new(ClusterCache {
            client: client.clone(),
            headless: Default::default(),
            budgets: Default::default(),
            services_synced: Default::default(),
            budgets_synced: Default::default(),
            recent_services: Recent::new(RECENT_WINDOW),
            recent_budgets: Recent::new(RECENT_WINDOW),
            lookup_timeout,
        });
        watch(
            Api::<ListedService>::all(client.clone()),
            watcher::Config::default().fields(HEADLESS_SELECTOR),
            this.headless.clone(),
            this.services_synced.clone(),
            "headless Services",
            (tasks, "watch: headless Services"),
        );
        watch(
            Api::<ListedBudget>::all(client),
            watcher::Config::default(),
            this.budgets.clone(),
            this.budgets_synced.clone(),
            "PodDisruptionBudgets",
            (tasks, "watch: PodDisruptionBudgets"),
        );
        this
    }

    pub fn is_synced(&self) -> bool {
        self.synced().iter().all(|(_, synced)| *synced)
    }

    /// Whether each watch has delivered its first list, by the `what` label
    /// of `sts_guard_cache_synced`.
    pub fn synced(&self) -> [(&'static str, bool); 2] {
        [
            ("services", self.services_synced.load(Ordering::Acquire)),
            (
                "disruption-budgets",
                self.budgets_synced.load(Ordering::Acquire),
            ),
        ]
    }

    /// The longest a lookup may take; [`super::LookupSource::fetch`] holds
    /// every lookup of a review to it, together.
    pub fn lookup_timeout(&self) -> Duration {
        self.lookup_timeout
    }

    /// The Service `namespace/name`: from the watch when it is headless,
    /// else from a GET made at most once per [`RECENT_WINDOW`].
    pub async fn resolve(&self, namespace: &str, name: &str) -> Looked<ServiceState> {
        let key = (namespace.to_string(), name.to_string());
        if let Some(svc) = read(&self.headless).get(&key) {
            return (ServiceState::Found(svc.clone()), LookupPath::Cache);
        }
        let (answer, path) = self
            .live(&self.recent_services, key, || {
                let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
                let (ns, name) = (namespace.to_string(), name.to_string());
                let what = format!("Service {ns}/{name}");
                let request = async move {
                    let svc = api.get_opt(&name).await?;
                    Ok(svc.map(|svc| Arc::new(view::Service::of(&svc, &ns))))
                };
                (what, request.boxed())
            })
            .await;
        let state = match answer {
            Ok(Some(svc)) => ServiceState::Found(svc),
            Ok(None) => ServiceState::NotFound,
            Err(why) => ServiceState::Unknown(why),
        };
        (state, path)
    }

    /// The PodDisruptionBudgets of `namespace`. Once the watch has synced
    /// it holds every budget, so "none" is an answer too and no lookup
    /// costs an API request; before that, [`ClusterCache::live_budgets`].
    pub async fn budgets(&self, namespace: &str) -> Looked<BudgetsState> {
        if !self.budgets_synced.load(Ordering::Acquire) {
            return self.live_budgets(namespace).await;
        }
        let from = (namespace.to_string(), String::new());
        let cached: Vec<_> = read(&self.budgets)
            .range(from..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|(_, b)| b.clone())
            .collect();
        (BudgetsState::Found(cached), LookupPath::Cache)
    }

    /// The PodDisruptionBudgets of `namespace` as the API server lists them
    /// now, at most once per namespace per [`RECENT_WINDOW`]: before the
    /// watch synced, and to confirm a denial that rests on the watch's
    /// "none" (a budget created a moment ago may not have arrived yet).
    /// A consistent LIST: right after a write of anything else it waits
    /// until the API server's budget cache has caught up with etcd (98 ms
    /// on kube-apiserver 1.34, against 1 ms idle or with
    /// `resourceVersion=0`); that wait is what made a LIST per admission
    /// cost ~100 ms, and here it is paid only for a denial.
    pub async fn live_budgets(&self, namespace: &str) -> Looked<BudgetsState> {
        let (answer, path) = self
            .live(&self.recent_budgets, namespace.to_string(), || {
                let api: Api<ListedBudget> = Api::namespaced(self.client.clone(), namespace);
                let what = format!("PodDisruptionBudgets of {namespace}");
                let request = async move {
                    let list = api.list(&ListParams::default()).await?;
                    Ok(list.items.into_iter().map(|b| b.projection().1).collect())
                };
                (what, request.boxed())
            })
            .await;
        let state = match answer {
            Ok(budgets) => BudgetsState::Found(budgets),
            Err(why) => BudgetsState::Unknown(why),
        };
        (state, path)
    }

    /// The answer to a live lookup of `key`: one made within
    /// [`RECENT_WINDOW`] (or still on its way), else the request `start`
    /// makes (what it is, for the log, and the request), bounded by the
    /// lookup timeout. `Err` says why there is no answer.
    async fn live<K: Hash + Eq, T: Clone + Send + Sync + 'static>(
        &self,
        recent: &Recent<K, Live<T>>,
        key: K,
        start: impl FnOnce() -> (String, BoxFuture<'static, Result<T, kube::Error>>),
    ) -> Looked<Live<T>> {
        let timeout = self.lookup_timeout;
        let pending = recent.get_or_start(key, || {
            let (what, request) = start();
            async move { bounded(timeout, &what, request).await }.boxed()
        });
        let answer = pending.answer.await;
        let path = match (&answer, pending.started_here) {
            (_, false) => LookupPath::Recent,
            (Err(_), true) => LookupPath::ApiError,
            (Ok(_), true) => LookupPath::ApiGet,
        };
        (answer, path)
    }
}

/// A live lookup's answer, or why there is none (a warning's words).
type Live<T> = Result<T, String>;

/// `request` within `timeout`: its value, or why there is none, in the
/// words of a warning (cut at 256 bytes by the API server, so short: the
/// HTTP status when the API server answered); failures are logged.
async fn bounded<T>(
    timeout: Duration,
    what: &str,
    request: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, request).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => {
            tracing::warn!(what, error = %e, "lookup failed");
            Err(match e {
                kube::Error::Api(status) => format!("API server answered {}", status.code),
                _ => "API server error".into(),
            })
        }
        Err(_) => {
            tracing::warn!(what, timeout = ?timeout, "lookup timed out");
            Err(timed_out(timeout))
        }
    }
}

/// The reason given when the API server did not answer in time.
pub fn timed_out(timeout: Duration) -> String {
    format!(
        "API server did not answer within {}",
        humantime::format_duration(timeout)
    )
}

/// Keeps `map` equal to what the watch of `api` lists, as projections. A
/// relist is collected aside and swapped in whole at its end, so a lookup
/// never sees a half-listed cache. The task, `task` to its supervisor,
/// never ends by itself: the watcher retries every error with the one
/// backoff.
fn watch<L>(
    api: Api<L>,
    config: watcher::Config,
    map: Projections<L::Into>,
    synced: Arc<AtomicBool>,
    what: &'static str,
    (tasks, task): (&Spawner, &'static str),
) where
    L: Projection
        + kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
    L::Into: Send + Sync + 'static,
{
    let stream = watcher(api, config).backoff(crate::tasks::retry_backoff());
    tasks.spawn(task, async move {
        let mut stream = std::pin::pin!(stream);
        let mut relist: Option<BTreeMap<Key, Arc<L::Into>>> = None;
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Init) => relist = Some(BTreeMap::new()),
                Ok(watcher::Event::InitApply(object)) => {
                    if let Some(buffer) = relist.as_mut() {
                        let (key, value) = object.projection();
                        buffer.insert(key, value);
                    }
                }
                Ok(watcher::Event::InitDone) => {
                    let fresh = relist.take().unwrap_or_default();
                    let count = fresh.len();
                    // The old map goes here too; both are dropped before
                    // the trim.
                    drop(std::mem::replace(&mut *write(&map), fresh));
                    release_freed_memory();
                    if !synced.swap(true, Ordering::AcqRel) {
                        tracing::info!(what, count, "cache synced");
                    }
                }
                Ok(watcher::Event::Apply(object)) => {
                    let (key, value) = object.projection();
                    write(&map).insert(key, value);
                }
                Ok(watcher::Event::Delete(object)) => {
                    write(&map).remove(&object.projection().0);
                }
                Err(e) => tracing::warn!(what, error = %e, "watch interrupted; retrying"),
            }
        }
    });
}

/// Hands memory freed by a (re)list back to the system. A list arrives in
/// pages of whole objects, decoded and dropped a page at a time; glibc's
/// allocator keeps what they used (several MiB in a large cluster) for
/// reuse that never comes, since the cache then changes one object at a
/// time. Measured by bench/scale.sh (RSS after sync).
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        // SAFETY: malloc_trim only returns free memory of glibc's own heaps
        // to the kernel; it touches no memory in use.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// A poisoned lock only means a writer panicked mid-update of a map of
/// independent entries: the map is still usable.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}
