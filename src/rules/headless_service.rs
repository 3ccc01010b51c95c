//! `headless-service`: `spec.serviceName` names a headless Service in the same
//! namespace that selects the pod template; otherwise the per-pod DNS names
//! (`web-0.web.ns.svc.cluster.local`) never appear.

use std::collections::BTreeMap;

use super::{FieldPath, Finding, FindingKind, Rule, RuleId, Subject};
use crate::lookup::{Kind, Need, ServiceState, Services, look_up};
use crate::view::{Labels, Service, StatefulSet};

pub const RULE: Rule = Rule {
    id: RuleId("headless-service"),
    summary: "spec.serviceName names a headless Service that selects the pods",
    help: "Create a Service in the same namespace with clusterIP: None whose selector matches spec.template.metadata.labels; otherwise the per-pod DNS names (web-0.web.ns.svc.cluster.local) never appear.",
    needs,
    check,
    denies_only_when_named: false,
    // Reads another object: a ValidatingAdmissionPolicy cannot.
    cel: None,
};

/// The Service `spec.serviceName` names (immutable, so the old object of
/// an UPDATE names the same one).
fn needs(sts: &StatefulSet, namespace: &str) -> Vec<Need> {
    match sts.service_name() {
        "" => Vec::new(),
        name => vec![Need::Services((namespace.into(), name.into()))],
    }
}

fn check(subject: &Subject<'_>) -> Vec<Finding> {
    let service_name = subject.sts.service_name();
    let finding = |kind, problem: String, fix: String| Finding {
        rule: RULE.id,
        kind,
        path: FieldPath::of(&["spec", "serviceName"]),
        container: None,
        problem,
        fix,
        key: RULE.id.to_string(),
    };
    if service_name.is_empty() {
        return vec![finding(
            FindingKind::Object,
            "is empty".into(),
            "set serviceName to a headless Service (clusterIP: None) that selects the pods".into(),
        )];
    }
    let ns = subject.namespace;
    let labels = subject.sts.template_labels();
    let query = (ns.into(), service_name.into());
    let problem = match look_up::<Services>(subject.lookups, query) {
        ServiceState::Found(svc) => judge(&svc, service_name, labels),
        // The first definition that fails, of an order the lookup fixed.
        ServiceState::Several(defs) => defs.iter().find_map(|svc| {
            judge(svc, service_name, labels).map(|(problem, fix)| {
                let n = defs.len();
                (format!("{problem} in one of its {n} definitions"), fix)
            })
        }),
        ServiceState::NotFound => {
            return vec![finding(
                FindingKind::Missing(&Services::INFO),
                format!("{service_name:?} names no Service in namespace {ns:?}"),
                // The name is in the problem already: warnings are cut at 256 bytes.
                "create a headless Service (clusterIP: None) of that name selecting the pod labels"
                    .into(),
            )];
        }
        ServiceState::Unknown(why) => {
            return vec![finding(
                FindingKind::Unknown(&Services::INFO),
                format!("{service_name:?} could not be checked ({why})"),
                "make sure the headless Service exists; sts-guard will check again on the next change".into(),
            )];
        }
    };
    problem
        .map(|(problem, fix)| finding(FindingKind::Object, problem, fix.into()))
        .into_iter()
        .collect()
}

/// What is wrong with `service` for pods labelled `labels`, and the fix.
fn judge(
    service: &Service,
    name: &str,
    labels: Option<&BTreeMap<String, String>>,
) -> Option<(String, &'static str)> {
    let cluster_ip = service.cluster_ip.as_deref();
    if cluster_ip != Some("None") {
        return Some((
            format!(
                "Service {name:?} is not headless (clusterIP: {})",
                cluster_ip.unwrap_or("unset")
            ),
            "set clusterIP: None on that Service (recreate it: clusterIP is immutable) or point serviceName at a headless one",
        ));
    }
    let no_selector = Labels::default();
    let selector = service.selector.as_ref().unwrap_or(&no_selector);
    let no_labels = BTreeMap::new();
    let labels = labels.unwrap_or(&no_labels);
    if selector.is_empty() {
        return Some((
            format!("Service {name:?} has no selector"),
            "give the Service a selector matching spec.template.metadata.labels",
        ));
    }
    let missing: Vec<String> = selector
        .iter()
        .filter(|(k, v)| labels.get(*k).map(String::as_str) != Some(*v))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !missing.is_empty() {
        return Some((
            format!(
                "Service {name:?} selects {} which the pod template does not carry",
                missing.join(",")
            ),
            "make the Service selector match spec.template.metadata.labels",
        ));
    }
    None
}
