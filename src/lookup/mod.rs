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

use std::sync::Arc;

pub use cluster::{ClusterServices, connect};
pub use manifests::{Duplicate, ManifestServices};

use crate::rules::{Lookups, Need, ServiceState};

/// Where a server's lookups are answered.
#[derive(Clone)]
pub enum ServiceSource {
    Cluster(Arc<ClusterServices>),
    /// Fixed manifests (`serve --services-from`: benchmarks, demos).
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
    /// Answers every need ahead of the pure review; `on_lookup` hears where
    /// each was answered.
    pub async fn fetch(&self, needs: Vec<Need>, mut on_lookup: impl FnMut(LookupPath)) -> Fetched {
        let mut fetched = Fetched::default();
        for need in needs {
            let state = match &need {
                Need::Service { namespace, name } => {
                    let (state, path) = match self {
                        ServiceSource::Cluster(c) => c.resolve(namespace, name).await,
                        ServiceSource::Static(s) => {
                            (s.service(namespace, name), LookupPath::Static)
                        }
                    };
                    on_lookup(path);
                    state
                }
            };
            fetched.answers.push((need, state));
        }
        fetched
    }

    /// True once the source can answer from its cache.
    pub fn is_synced(&self) -> bool {
        match self {
            ServiceSource::Cluster(c) => c.is_synced(),
            ServiceSource::Static(_) => true,
        }
    }
}

/// What was fetched for one request: the answer to each need.
#[derive(Debug, Default)]
pub struct Fetched {
    answers: Vec<(Need, ServiceState)>,
}

impl Lookups for Fetched {
    fn service(&self, namespace: &str, name: &str) -> ServiceState {
        let found = self.answers.iter().find(|(need, _)| match need {
            Need::Service {
                namespace: n,
                name: s,
            } => n == namespace && s == name,
        });
        match found {
            Some((_, state)) => state.clone(),
            None => {
                // A rule asked for what it did not declare: a bug, caught by
                // the tests (debug builds panic); in production the rule
                // warns instead of guessing.
                debug_assert!(
                    false,
                    "Service {namespace}/{name} looked up but not declared"
                );
                tracing::error!(
                    namespace,
                    name,
                    "a rule looked up a Service it did not declare"
                );
                ServiceState::Unknown("not fetched: an sts-guard bug, please report it".into())
            }
        }
    }
}
