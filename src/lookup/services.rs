//! Services, looked up by (namespace, name) for `headless-service`.
//!
//! The watch holds the **headless** Services only (the field selector
//! `spec.clusterIP=None`, which the API server serves), as small
//! projections (namespace, name, clusterIP, selector), so memory follows
//! the number of headless Services, not the size of the cluster. A miss
//! (a Service that is not headless, or was created a moment ago) is one
//! GET, so "is not headless" and "names no Service" stay exact.
//!
//! The same Service can be defined more than once in one input (several
//! environments rendered into one namespace). Which one a cluster ends up
//! with depends on the order of the applies, so `check` gives an answer
//! that does not: a StatefulSet is checked against every distinct
//! definition and passes only if it passes with each.

use std::sync::Arc;

use compact_str::CompactString;
use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::runtime::watcher;
use serde::Deserialize;

use super::listing::{Key, Projection, lean_metadata};
use super::{Cache, Definitions, Kind, KindInfo, LiveRequest, Reason};
use crate::view;

/// The field selector of the watch: headless Services only.
pub const HEADLESS_SELECTOR: &str = "spec.clusterIP=None";

/// Services, by (namespace, name).
pub struct Services;

/// What a Service lookup found.
#[derive(Debug, Clone)]
pub enum ServiceState {
    Found(Arc<view::Service>),
    /// Defined more than once, differently (in `check`'s manifests); each
    /// definition must pass.
    Several(Vec<Arc<view::Service>>),
    NotFound,
    /// The lookup could not be answered (API server unreachable or slow).
    Unknown(String),
}

impl Kind for Services {
    const INFO: KindInfo = KindInfo {
        name: "services",
        plural: "Services",
        watched: "headless Services",
        watch_task: "watch: headless Services",
        api_version: "v1",
        kind: "Service",
        missing: "service-missing",
        unknown: "lookup-failed",
        dry_run_missing: Reason {
            code: "dry-run-service-missing",
            note: " (allowed on dry-run: the same apply may create it)",
        },
        lookup_failed: Reason {
            code: "lookup-failed",
            note: " (allowed: Service lookup failed)",
        },
        // `serviceName` is immutable: a Service deleted after creation
        // never blocks an update.
        gone_on_update: Some(Reason {
            code: "service-gone-on-update",
            note: " (allowed on update: serviceName is immutable)",
        }),
    };
    /// (namespace, name)
    type Query = Key;
    type State = ServiceState;
    type Projection = view::Service;
    type Listed = ListedService;
    type Live = Option<Arc<view::Service>>;

    fn unknown(why: String) -> ServiceState {
        ServiceState::Unknown(why)
    }

    fn watch() -> watcher::Config {
        watcher::Config::default().fields(HEADLESS_SELECTOR)
    }

    fn cached(cache: &Cache<Self>, _synced: bool, query: &Key) -> Option<ServiceState> {
        cache.get(query).map(|svc| ServiceState::Found(svc.clone()))
    }

    fn live(client: &kube::Client, (namespace, name): &Key) -> LiveRequest<Self::Live> {
        let api: Api<k8s_openapi::api::core::v1::Service> =
            Api::namespaced(client.clone(), namespace);
        let (ns, name) = (namespace.clone(), name.clone());
        let what = format!("Service {ns}/{name}");
        let request = async move {
            let svc = api.get_opt(&name).await?;
            Ok(svc.map(|svc| Arc::new(view::Service::of(&svc, &ns))))
        };
        (what, request.boxed())
    }

    fn from_live(answer: Result<Self::Live, String>) -> ServiceState {
        match answer {
            Ok(Some(svc)) => ServiceState::Found(svc),
            Ok(None) => ServiceState::NotFound,
            Err(why) => ServiceState::Unknown(why),
        }
    }

    fn from_manifest(object: serde_json::Value, default_namespace: &str) -> Option<view::Service> {
        let service: k8s_openapi::api::core::v1::Service = serde_json::from_value(object).ok()?;
        let namespace = service.metadata.namespace.as_deref();
        Some(view::Service::of(
            &service,
            namespace.unwrap_or(default_namespace),
        ))
    }

    fn key(service: &view::Service) -> Key {
        (service.namespace.clone(), service.name.clone())
    }

    fn from_objects(defined: &Definitions<view::Service>, query: &Key) -> ServiceState {
        let Some(defs) = defined.get(query) else {
            return ServiceState::NotFound;
        };
        if let [only] = defs.as_slice() {
            return ServiceState::Found(only.object.clone());
        }
        // In an order that does not depend on the input's.
        let mut distinct: Vec<(String, Arc<view::Service>)> = defs
            .iter()
            .map(|d| (what_the_rule_reads(&d.object), d.object.clone()))
            .collect();
        distinct.sort_by(|a, b| a.0.cmp(&b.0));
        distinct.dedup_by(|a, b| a.0 == b.0);
        match distinct.len() {
            1 => ServiceState::Found(distinct.remove(0).1),
            _ => ServiceState::Several(distinct.into_iter().map(|(_, s)| s).collect()),
        }
    }
}

/// What the rules read of a Service, as a sort key: two definitions that
/// agree on it are the same answer.
fn what_the_rule_reads(service: &view::Service) -> String {
    serde_json::to_string(&(&service.cluster_ip, &service.selector)).unwrap_or_default()
}

/// A Service as the watch and `audit` decode it: the projection, and the
/// metadata the watch itself needs. Everything else (managedFields,
/// annotations such as `last-applied-configuration`, ports, status) is
/// skipped unbuilt.
#[derive(Debug, Clone, Deserialize, kube::Resource)]
#[resource(inherit = "k8s_openapi::api::core::v1::Service")]
pub struct ListedService {
    #[serde(deserialize_with = "lean_metadata")]
    metadata: ObjectMeta,
    spec: Option<WatchedSpec>,
}

#[derive(Debug, Clone, Deserialize)]
struct WatchedSpec {
    #[serde(rename = "clusterIP")]
    cluster_ip: Option<Box<str>>,
    selector: Option<view::Labels>,
}

impl Projection for ListedService {
    type Into = view::Service;
    fn projection(self) -> (Key, Arc<view::Service>) {
        let namespace: CompactString = self.metadata.namespace.unwrap_or_default().into();
        let name: CompactString = self.metadata.name.unwrap_or_default().into();
        let spec = self.spec;
        let service = view::Service {
            namespace: namespace.clone(),
            name: name.clone(),
            cluster_ip: spec.as_ref().and_then(|s| s.cluster_ip.clone()),
            selector: spec.and_then(|s| s.selector),
        };
        ((namespace, name), Arc::new(service))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_listing_is_the_api_resource_it_decodes() {
        assert_eq!(crate::lookup::listing::api_path::<ListedService>(), "/v1/services");
    }

    #[test]
    fn the_watch_keeps_the_projection_and_skips_the_rest() {
        let svc: ListedService = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {
                "name": "web", "namespace": "shop", "resourceVersion": "42",
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(10_000)},
                "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}],
            },
            "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 80}]},
            "status": {"loadBalancer": {}},
        }))
        .unwrap();
        assert_eq!(svc.metadata.resource_version.as_deref(), Some("42"));
        assert!(svc.metadata.annotations.is_none() && svc.metadata.managed_fields.is_none());
        let ((ns, name), projection) = svc.projection();
        assert_eq!((ns.as_str(), name.as_str()), ("shop", "web"));
        assert_eq!(projection.cluster_ip.as_deref(), Some("None"));
        assert_eq!(
            projection.selector.as_ref().unwrap().get("app"),
            Some("web")
        );
    }
}
