//! Services from a live cluster: a reflector (watch cache) answers normal
//! admissions without an API call; a miss falls back to one GET bounded by a
//! short deadline, so a Service created a moment before its StatefulSet is
//! still found, and an unreachable API server costs at most that deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};

use super::LookupPath;
use crate::rules::ServiceState;
use crate::view;

/// A client from the usual configuration (in-cluster, or `KUBECONFIG`),
/// with the process-wide TLS crypto provider kube's rustls client needs.
pub async fn connect() -> Result<kube::Client, kube::Error> {
    crate::install_crypto_provider();
    kube::Client::try_default().await
}

pub struct ClusterServices {
    client: kube::Client,
    store: Store<Service>,
    synced: Arc<AtomicBool>,
    lookup_timeout: Duration,
}

impl ClusterServices {
    /// Starts the watch in the background; `is_synced` turns true once the
    /// first full list has arrived.
    pub fn start(client: kube::Client, lookup_timeout: Duration) -> Arc<Self> {
        let (store, writer) = reflector::store();
        let synced = Arc::new(AtomicBool::new(false));
        let api: Api<Service> = Api::all(client.clone());
        let stream = watcher(api, watcher::Config::default())
            .default_backoff()
            // Only spec.clusterIP and spec.selector are read: drop the bulk.
            .modify(|svc: &mut Service| {
                svc.metadata.managed_fields = None;
                svc.metadata.annotations = None;
                svc.status = None;
            })
            .reflect(writer)
            .applied_objects();
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    // The watcher retries with backoff by itself; the cache
                    // keeps its last state meanwhile.
                    tracing::warn!(error = %e, "service watch interrupted; retrying");
                }
            }
        });
        let ready_store = store.clone();
        let ready_flag = synced.clone();
        tokio::spawn(async move {
            if ready_store.wait_until_ready().await.is_ok() {
                ready_flag.store(true, Ordering::Release);
                tracing::info!(services = ready_store.len(), "service cache synced");
            }
        });
        Arc::new(ClusterServices {
            client,
            store,
            synced,
            lookup_timeout,
        })
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub async fn resolve(&self, namespace: &str, name: &str) -> (ServiceState, LookupPath) {
        let found =
            |svc: &Service| ServiceState::Found(Arc::new(view::Service::of(svc, namespace)));
        if let Some(svc) = self.store.get(&ObjectRef::new(name).within(namespace)) {
            return (found(&svc), LookupPath::Cache);
        }
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        match tokio::time::timeout(self.lookup_timeout, api.get_opt(name)).await {
            Ok(Ok(Some(svc))) => (found(&svc), LookupPath::ApiGet),
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
