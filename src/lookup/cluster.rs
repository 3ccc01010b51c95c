//! Services from a live cluster. A watch of the **headless** Services only
//! (the field selector `spec.clusterIP=None`, which the API server serves)
//! keeps a map of small projections (namespace, name, clusterIP, selector:
//! what the headless-service rule reads), so a normal admission makes no
//! API call and memory follows the number of headless Services, not the
//! size of the cluster. A miss (a Service that is not headless, or was
//! created a moment ago) falls back to one GET bounded by a short
//! deadline, so "is not headless" and "names no Service" stay exact, and
//! an unreachable API server costs at most that deadline.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use super::LookupPath;
use super::listing::{Key, ListedService};
use crate::rules::ServiceState;
use crate::view;

/// The field selector of the watch: headless Services only.
pub const HEADLESS_SELECTOR: &str = "spec.clusterIP=None";

/// A client from the usual configuration (in-cluster, or `KUBECONFIG`),
/// with the process-wide TLS crypto provider kube's rustls client needs.
pub async fn connect() -> Result<kube::Client, kube::Error> {
    crate::install_crypto_provider();
    kube::Client::try_default().await
}

pub struct ClusterServices {
    client: kube::Client,
    headless: Arc<RwLock<HashMap<Key, Arc<view::Service>>>>,
    synced: Arc<AtomicBool>,
    lookup_timeout: Duration,
}

impl ClusterServices {
    /// Starts the watch in the background; `is_synced` turns true once the
    /// first full list has arrived. The watcher relists and rewatches by
    /// itself (with backoff) after an error; the map keeps its last state
    /// meanwhile.
    pub fn start(client: kube::Client, lookup_timeout: Duration) -> Arc<Self> {
        let headless = Arc::new(RwLock::new(HashMap::new()));
        let synced = Arc::new(AtomicBool::new(false));
        let api: Api<ListedService> = Api::all(client.clone());
        let stream =
            watcher(api, watcher::Config::default().fields(HEADLESS_SELECTOR)).default_backoff();
        let (map, flag) = (headless.clone(), synced.clone());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            // A relist is collected here and swapped in whole at its end, so
            // a lookup never sees a half-listed cache.
            let mut relist: Option<HashMap<Key, Arc<view::Service>>> = None;
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Init) => relist = Some(HashMap::new()),
                    Ok(watcher::Event::InitApply(svc)) => {
                        if let Some(buffer) = relist.as_mut() {
                            let (key, value) = svc.projection();
                            buffer.insert(key, value);
                        }
                    }
                    Ok(watcher::Event::InitDone) => {
                        let fresh = relist.take().unwrap_or_default();
                        let count = fresh.len();
                        *write(&map) = fresh;
                        if !flag.swap(true, Ordering::AcqRel) {
                            tracing::info!(headless_services = count, "service cache synced");
                        }
                    }
                    Ok(watcher::Event::Apply(svc)) => {
                        let (key, value) = svc.projection();
                        write(&map).insert(key, value);
                    }
                    Ok(watcher::Event::Delete(svc)) => {
                        write(&map).remove(&svc.projection().0);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "service watch interrupted; retrying");
                    }
                }
            }
        });
        Arc::new(ClusterServices {
            client,
            headless,
            synced,
            lookup_timeout,
        })
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Headless Services in the cache.
    pub fn len(&self) -> usize {
        read(&self.headless).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub async fn resolve(&self, namespace: &str, name: &str) -> (ServiceState, LookupPath) {
        let key = (namespace.to_string(), name.to_string());
        if let Some(svc) = read(&self.headless).get(&key) {
            return (ServiceState::Found(svc.clone()), LookupPath::Cache);
        }
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        match tokio::time::timeout(self.lookup_timeout, api.get_opt(name)).await {
            Ok(Ok(Some(svc))) => (
                ServiceState::Found(Arc::new(view::Service::of(&svc, namespace))),
                LookupPath::ApiGet,
            ),
            Ok(Ok(None)) => (ServiceState::NotFound, LookupPath::ApiGet),
            Ok(Err(e)) => {
                tracing::warn!(namespace, name, error = %e, "service lookup failed");
                (
                    ServiceState::Unknown("API server error".into()),
                    LookupPath::ApiError,
                )
            }
            Err(_) => {
                tracing::warn!(namespace, name, timeout = ?self.lookup_timeout, "service lookup timed out");
                (
                    ServiceState::Unknown(format!(
                        "API server did not answer within {}",
                        humantime::format_duration(self.lookup_timeout)
                    )),
                    LookupPath::ApiError,
                )
            }
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
