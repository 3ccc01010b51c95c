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
                        (need, answer)
                    })
                    .collect();
                return Fetched { answers };
            }
        };
        let timeout = cluster.lookup_timeout();
        let deadline = tokio::time::Instant::now() + timeout;
        let lookups = needs.into_iter().map(|need| async move {
            let answer = match &need {
                Need::Service { namespace, name } => {
                    tokio::time::timeout_at(deadline, cluster.resolve(namespace, name))
                        .await
                        .map(|(state, path)| (Answer::Service(state), path))
                        .unwrap_or_else(|_| {
                            let why = cluster::timed_out(timeout);
                            (
                                Answer::Service(ServiceState::Unknown(why)),
                                LookupPath::ApiError,
                            )
                        })
                }
                Need::DisruptionBudgets { namespace } => {
                    tokio::time::timeout_at(deadline, cluster.budgets(namespace))
                        .await
                        .map(|(state, path)| (Answer::Budgets(state), path))
                        .unwrap_or_else(|_| {
                            let why = cluster::timed_out(timeout);
                            (
                                Answer::Budgets(BudgetsState::Unknown(why)),
                                LookupPath::ApiError,
                            )
                        })
                }
            };
            (need, answer)
        });
        let answers = futures::future::join_all(lookups)
            .await
            .into_iter()
            .map(|(need, (answer, path))| {
                on_lookup(answer.kind(), path);
                (need, answer)
            })
            .collect();
        Fetched { answers }
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

impl Answer {
    fn kind(&self) -> LookupKind {
        match self {
            Answer::Service(_) => LookupKind::Service,
            Answer::Budgets(_) => LookupKind::DisruptionBudgets,
        }
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
