//! Where Services come from: the cluster (watch cache, then one bounded GET)
//! for `serve` and `audit`, or the manifests given to `check`.

mod cluster;
mod manifests;

use std::sync::Arc;

pub use cluster::ClusterServices;
pub use manifests::{Duplicate, ManifestServices};

use crate::rules::{ServiceLookup, ServiceState};

/// The Services a server reviews against.
#[derive(Clone)]
pub enum ServiceSource {
    Cluster(Arc<ClusterServices>),
    Static(Arc<ManifestServices>),
}

/// Where a lookup was answered, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupPath {
    Cache,
    ApiGet,
    ApiError,
    Static,
}

impl LookupPath {
    pub const fn as_str(self) -> &'static str {
        match self {
            LookupPath::Cache => "cache",
            LookupPath::ApiGet => "api",
            LookupPath::ApiError => "api-error",
            LookupPath::Static => "static",
        }
    }
}

impl ServiceSource {
    /// Looks up one Service ahead of the pure review.
    pub async fn resolve(&self, namespace: &str, name: &str) -> (Resolved, LookupPath) {
        let (state, path) = match self {
            ServiceSource::Cluster(c) => c.resolve(namespace, name).await,
            ServiceSource::Static(s) => (s.service(namespace, name), LookupPath::Static),
        };
        (
            Resolved {
                namespace: namespace.to_string(),
                name: name.to_string(),
                state,
            },
            path,
        )
    }

    /// True once the source can answer from its cache.
    pub fn is_synced(&self) -> bool {
        match self {
            ServiceSource::Cluster(c) => c.is_synced(),
            ServiceSource::Static(_) => true,
        }
    }
}

/// One Service looked up in advance, so the review itself stays synchronous
/// and pure. A StatefulSet names exactly one Service (and `serviceName` is
/// immutable, so the old object of an UPDATE names the same one).
pub struct Resolved {
    namespace: String,
    name: String,
    state: ServiceState,
}

impl Resolved {
    pub fn none() -> Self {
        Resolved {
            namespace: String::new(),
            name: String::new(),
            state: ServiceState::NotFound,
        }
    }
}

impl ServiceLookup for Resolved {
    fn service(&self, namespace: &str, name: &str) -> ServiceState {
        if namespace == self.namespace && name == self.name {
            self.state.clone()
        } else {
            ServiceState::Unknown("not looked up".into())
        }
    }
}
