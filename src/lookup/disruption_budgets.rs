//! PodDisruptionBudgets, looked up by namespace (every budget of it) for
//! `disruption-budget`.
//!
//! The watch holds every budget. Once it has synced it knows "none" too,
//! so the usual answer (most namespaces have no budget) costs no API
//! request; before that, and to confirm a denial that rests on the watch's
//! "none", one live LIST of the namespace.

use std::sync::Arc;

use compact_str::CompactString;
use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::ListParams;
use serde::Deserialize;

use super::listing::{Key, Projection, lean_metadata};
use super::{Cache, Definitions, Kind, KindInfo, LiveRequest, Reason};
use crate::view;

/// Every PodDisruptionBudget of a namespace.
pub struct DisruptionBudgets;

/// What a lookup of a namespace's PodDisruptionBudgets found.
#[derive(Debug, Clone)]
pub enum BudgetsState {
    /// Every budget of the namespace (maybe none).
    Found(Vec<Arc<view::DisruptionBudget>>),
    /// The lookup could not be answered (API server unreachable or slow).
    Unknown(String),
}

impl Kind for DisruptionBudgets {
    const INFO: KindInfo = KindInfo {
        name: "disruption-budgets",
        plural: "PodDisruptionBudgets",
        watched: "PodDisruptionBudgets",
        watch_task: "watch: PodDisruptionBudgets",
        api_version: "policy/v1",
        kind: "PodDisruptionBudget",
        missing: "budget-missing",
        unknown: "budgets-unknown",
        dry_run_missing: Reason {
            code: "dry-run-budget-missing",
            note: " (allowed on dry-run: the same apply may create it)",
        },
        lookup_failed: Reason {
            code: "budget-lookup-failed",
            note: " (allowed: PodDisruptionBudget lookup failed)",
        },
        gone_on_update: None,
    };
    /// The namespace.
    type Query = CompactString;
    type State = BudgetsState;
    type Projection = view::DisruptionBudget;
    type Listed = ListedBudget;
    type Live = Vec<Arc<view::DisruptionBudget>>;

    fn unknown(why: String) -> BudgetsState {
        BudgetsState::Unknown(why)
    }

    /// Once the watch has synced it holds every budget: a range of the
    /// ordered cache, "none" included. Before that, a live LIST.
    fn cached(cache: &Cache<Self>, synced: bool, namespace: &CompactString) -> Option<BudgetsState> {
        if !synced {
            return None;
        }
        let from = (namespace.clone(), CompactString::default());
        let budgets = cache
            .range(from..)
            .take_while(|((ns, _), _)| ns == namespace)
            .map(|(_, b)| b.clone())
            .collect();
        Some(BudgetsState::Found(budgets))
    }

    /// A consistent LIST: right after a write of anything else it waits
    /// until the API server's budget cache has caught up with etcd (98 ms
    /// on kube-apiserver 1.34, against 1 ms idle or with
    /// `resourceVersion=0`); that wait is what made a LIST per admission
    /// cost ~100 ms, and here it is paid only before the watch synced and
    /// for a denial.
    fn live(client: &kube::Client, namespace: &CompactString) -> LiveRequest<Self::Live> {
        let api: Api<ListedBudget> = Api::namespaced(client.clone(), namespace);
        let what = format!("PodDisruptionBudgets of {namespace}");
        let request = async move {
            let list = api.list(&ListParams::default()).await?;
            Ok(list.items.into_iter().map(|b| b.projection().1).collect())
        };
        (what, request.boxed())
    }

    fn from_live(answer: Result<Self::Live, String>) -> BudgetsState {
        match answer {
            Ok(budgets) => BudgetsState::Found(budgets),
            Err(why) => BudgetsState::Unknown(why),
        }
    }

    fn from_manifest(
        object: serde_json::Value,
        default_namespace: &str,
    ) -> Option<view::DisruptionBudget> {
        let pdb: k8s_openapi::api::policy::v1::PodDisruptionBudget =
            serde_json::from_value(object).ok()?;
        let namespace = pdb.metadata.namespace.as_deref();
        Some(view::DisruptionBudget::of(
            &pdb,
            namespace.unwrap_or(default_namespace),
        ))
    }

    fn key(budget: &view::DisruptionBudget) -> Key {
        (budget.namespace.clone(), budget.name.clone())
    }

    fn from_objects(
        defined: &Definitions<view::DisruptionBudget>,
        namespace: &CompactString,
    ) -> BudgetsState {
        let from = (namespace.clone(), CompactString::default());
        let budgets = defined
            .range(from..)
            .take_while(|((ns, _), _)| ns == namespace)
            .flat_map(|(_, defs)| defs.iter().map(|d| d.object.clone()))
            .collect();
        BudgetsState::Found(budgets)
    }
}

/// A PodDisruptionBudget as the watch and `audit` decode it.
#[derive(Debug, Clone, Deserialize, kube::Resource)]
#[resource(inherit = "k8s_openapi::api::policy::v1::PodDisruptionBudget")]
pub struct ListedBudget {
    #[serde(deserialize_with = "lean_metadata")]
    metadata: ObjectMeta,
    spec: Option<ListedBudgetSpec>,
}

#[derive(Debug, Clone, Deserialize)]
struct ListedBudgetSpec {
    selector: Option<view::Selector>,
}

impl Projection for ListedBudget {
    type Into = view::DisruptionBudget;
    fn projection(self) -> (Key, Arc<view::DisruptionBudget>) {
        let namespace: CompactString = self.metadata.namespace.unwrap_or_default().into();
        let name: CompactString = self.metadata.name.unwrap_or_default().into();
        let budget = view::DisruptionBudget {
            namespace: namespace.clone(),
            name: name.clone(),
            selector: self.spec.and_then(|s| s.selector),
        };
        ((namespace, name), Arc::new(budget))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_listing_is_the_api_resource_it_decodes() {
        assert_eq!(crate::lookup::listing::api_path::<ListedBudget>(), "policy/v1/poddisruptionbudgets");
    }
}
