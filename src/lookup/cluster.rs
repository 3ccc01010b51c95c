//! Lookups in a live cluster. One watch per looked-up kind keeps a map of
//! small projections (what the rules read), so a normal admission makes
//! no API call and memory follows what the watches select, not the size
//! of the cluster. What a watch cannot answer (an object it does not
//! select, one created a moment ago, anything before its first list) costs
//! one live request bounded by a short deadline and shared for
//! [`RECENT_WINDOW`], so an unreachable API server costs at most that
//! deadline.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use tokio::time::Instant;

use super::listing::{Key, Projection};
use super::recent::Recent;
use super::{Answer, CacheStores, Kind, LookupPath, Member};
use crate::tasks::Spawner;

/// A kind's watch cache: its projections by (namespace, name); ordered, so
/// one namespace's entries are a range, not a scan of the whole cache.
pub type Cache<K> = BTreeMap<Key, Arc<<K as Kind>::Projection>>;

/// One kind's watch cache, whether its first list arrived, and its live
/// lookups of the last [`RECENT_WINDOW`].
pub struct Store<K: Kind> {
    cache: Arc<RwLock<Cache<K>>>,
    synced: Arc<AtomicBool>,
    /// Live requests (what the watch does not hold, or before it synced,
    /// or to confirm a denial), by query.
    recent: Recent<K::Query, Live<K::Live>>,
}

impl<K: Kind> Default for Store<K> {
    fn default() -> Self {
        Store {
            cache: Default::default(),
            synced: Default::default(),
            recent: Recent::new(RECENT_WINDOW),
        }
    }
}

impl<K: Kind> Store<K> {
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }
}

pub struct ClusterCache {
    client: kube::Client,
    pub(super) stores: CacheStores,
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
    /// Starts the watches (one per looked-up kind) in the background,
    /// unsupervised; `is_synced` turns true once every first list has
    /// arrived. Each watcher relists and rewatches by itself (with
    /// [`crate::tasks::retry_backoff`]) after an error; its map keeps its
    /// last state meanwhile.
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
            client,
            stores: CacheStores::default(),
            lookup_timeout,
        });
        this.watch_every_kind(tasks);
        this
    }

    pub fn is_synced(&self) -> bool {
        self.synced().iter().all(|(_, synced)| *synced)
    }

    /// The longest a lookup may take; [`super::LookupSource::fetch`] holds
    /// every lookup of a review to it, together.
    pub fn lookup_timeout(&self) -> Duration {
        self.lookup_timeout
    }

    /// The answer to `query`: from the watch when it holds one
    /// ([`Kind::cached`]), else from a live request made at most once per
    /// [`RECENT_WINDOW`].
    pub async fn look_up<K: Member>(&self, query: &K::Query) -> Looked<K::State> {
        let store = K::store(&self.stores);
        let cached = K::cached(&read(&store.cache), store.is_synced(), query);
        match cached {
            Some(state) => (state, LookupPath::Cache),
            None => {
                let (answer, path) = self.live::<K>(query).await;
                (K::from_live(answer), path)
            }
        }
    }

    /// The answer to a live request for `query`: one made within
    /// [`RECENT_WINDOW`] (or still on its way), else a new one, bounded by
    /// the lookup timeout. `Err` says why there is none.
    async fn live<K: Member>(&self, query: &K::Query) -> Looked<Live<K::Live>> {
        let timeout = self.lookup_timeout;
        let pending = K::store(&self.stores)
            .recent
            .get_or_start(query.clone(), || {
                let (what, request) = K::live(&self.client, query);
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

/// A live answer to `query` by `deadline`, to confirm what the watch
/// answered: `None` (and the watch's answer stands) when none came.
pub(super) async fn confirmed<K: Member>(
    cluster: &ClusterCache,
    query: &K::Query,
    deadline: Instant,
) -> (Option<Answer>, LookupPath) {
    match tokio::time::timeout_at(deadline, cluster.live::<K>(query)).await {
        Ok((Ok(live), path)) => (Some(K::answer(K::from_live(Ok(live)))), path),
        Ok((Err(_), path)) => (None, path),
        Err(_) => (None, LookupPath::ApiError),
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

/// Keeps `K`'s store equal to what its watch lists, as projections. A
/// relist is collected aside and swapped in whole at its end, so a lookup
/// never sees a half-listed cache. The task, `K::INFO.watch_task` to its
/// supervisor, never ends by itself: the watcher retries every error with
/// the one backoff.
///
/// Not kube's `reflector`, which does the same buffer-and-swap: its
/// `Store` is a hash map of whole objects by `ObjectRef`, and a kind asked
/// by namespace (every PodDisruptionBudget of one) reads a range of this
/// ordered map instead of a scan of every object in the cluster.
pub(super) fn watch<K: Member>(cluster: &ClusterCache, tasks: &Spawner) {
    let store = K::store(&cluster.stores);
    let (map, synced) = (store.cache.clone(), store.synced.clone());
    let what = K::INFO.watched;
    let api = Api::<K::Listed>::all(cluster.client.clone());
    let stream = watcher(api, K::watch()).backoff(crate::tasks::retry_backoff());
    tasks.spawn(K::INFO.watch_task, async move {
        let mut stream = std::pin::pin!(stream);
        let mut relist: Option<Cache<K>> = None;
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
