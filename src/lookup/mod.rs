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

pub use cluster::{ClusterCache, connect};
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

impl LookupSource {
    /// Answers every need ahead of the pure review; `on_lookup` hears what
    /// was looked up and where it was answered.
    pub async fn fetch(
        &self,
        needs: Vec<Need>,
        mut on_lookup: impl FnMut(LookupKind, LookupPath),
    ) -> Fetched {
        let mut fetched = Fetched::default();
        for need in needs {
            let answer = match &need {
                Need::Service { namespace, name } => {
                    let (state, path) = match self {
                        LookupSource::Cluster(c) => c.resolve(namespace, name).await,
                        LookupSource::Static(s) => (s.service(namespace, name), LookupPath::Static),
                    };
                    on_lookup(LookupKind::Service, path);
                    Answer::Service(state)
                }
                Need::DisruptionBudgets { namespace } => {
                    let (state, path) = match self {
                        LookupSource::Cluster(c) => c.budgets(namespace).await,
                        LookupSource::Static(s) => {
                            (s.disruption_budgets(namespace), LookupPath::Static)
                        }
                    };
                    on_lookup(LookupKind::DisruptionBudgets, path);
                    Answer::Budgets(state)
                }
            };
            fetched.answers.push((need, answer));
        }
        fetched
    }

    /// True once the source can answer from its cache.
    pub fn is_synced(&self) -> bool {
        match self {
            LookupSource::Cluster(c) => c.is_synced(),
            LookupSource::Static(_) => true,
        }
    }
}

/// What was fetched for one request: the answer to each need.
#[derive(Debug, Default)]
pub struct Fetched {
    answers: Vec<(Need, Answer)>,
}

#[derive(Debug)]
enum Answer {
    Service(ServiceState),
    Budgets(BudgetsState),
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
        match self.answers.iter().find(|(need, _)| *need == want) {
            Some((_, Answer::Service(state))) => state.clone(),
            _ => ServiceState::Unknown(undeclared(&format!("Service {namespace}/{name}"))),
        }
    }

    fn disruption_budgets(&self, namespace: &str) -> BudgetsState {
        let want = Need::DisruptionBudgets {
            namespace: namespace.into(),
        };
        match self.answers.iter().find(|(need, _)| *need == want) {
            Some((_, Answer::Budgets(state))) => state.clone(),
            _ => BudgetsState::Unknown(undeclared(&format!("PodDisruptionBudgets of {namespace}"))),
        }
    }
}
