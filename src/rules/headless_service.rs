//! `headless-service`: `spec.serviceName` names a headless Service in the same
//! namespace that selects the pod template; otherwise the per-pod DNS names
//! (`web-0.web.ns.svc.cluster.local`) never appear.

use std::collections::BTreeMap;

use super::{Finding, FindingKind, RuleId, ServiceState, Subject};

const LOCATION: &str = "spec.serviceName";

pub fn check(subject: &Subject<'_>) -> Vec<Finding> {
    let spec = subject.sts.spec.as_ref();
    let service_name = spec
        .and_then(|s| s.service_name.as_deref())
        .unwrap_or_default();
    let finding = |kind, problem: String, fix: String| {
        vec![Finding {
            rule: RuleId::HeadlessService,
            kind,
            location: LOCATION.to_string(),
            container: None,
            problem,
            fix,
            key: RuleId::HeadlessService.to_string(),
        }]
    };
    if service_name.is_empty() {
        return finding(
            FindingKind::Other,
            "is empty".into(),
            "set serviceName to a headless Service (clusterIP: None) that selects the pods".into(),
        );
    }
    let ns = subject.namespace;
    let service = match subject.services.service(ns, service_name) {
        ServiceState::Found(svc) => svc,
        ServiceState::NotFound => {
            return finding(
                FindingKind::ServiceMissing,
                format!("{service_name:?} names no Service in namespace {ns:?}"),
                format!(
                    "create a headless Service {service_name:?} (clusterIP: None) selecting the pod labels"
                ),
            );
        }
        ServiceState::Unknown(why) => {
            return finding(
                FindingKind::ServiceUnknown,
                format!("{service_name:?} could not be checked ({why})"),
                "make sure the headless Service exists; sts-guard will check again on the next change".into(),
            );
        }
    };
    let svc_spec = service.spec.as_ref();
    let cluster_ip = svc_spec.and_then(|s| s.cluster_ip.as_deref());
    if cluster_ip != Some("None") {
        return finding(
            FindingKind::Other,
            format!(
                "Service {service_name:?} is not headless (clusterIP: {})",
                cluster_ip.unwrap_or("unset")
            ),
            "set clusterIP: None on that Service (recreate it: clusterIP is immutable) or point serviceName at a headless one".into(),
        );
    }
    let empty = BTreeMap::new();
    let selector = svc_spec.and_then(|s| s.selector.as_ref()).unwrap_or(&empty);
    let labels = spec
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .unwrap_or(&empty);
    if selector.is_empty() {
        return finding(
            FindingKind::Other,
            format!("Service {service_name:?} has no selector"),
            "give the Service a selector matching spec.template.metadata.labels".into(),
        );
    }
    let missing: Vec<String> = selector
        .iter()
        .filter(|(k, v)| labels.get(*k) != Some(*v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !missing.is_empty() {
        return finding(
            FindingKind::Other,
            format!(
                "Service {service_name:?} selects {} which the pod template does not carry",
                missing.join(",")
            ),
            "make the Service selector match spec.template.metadata.labels".into(),
        );
    }
    Vec::new()
}
