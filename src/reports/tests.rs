use serde_json::json;

use super::*;
use crate::lookup::NoLookups;
use crate::policy::Policy;
use crate::review::{ObjectRef, Operation, Request, validate};
use crate::view::StatefulSet;

const AT: Timestamp = Timestamp {
    seconds: 1_796_169_600,
    nanos: 5,
};

/// The outcomes of creating `sts` as `shop/web` under `policy`.
fn created(sts: &StatefulSet, policy: &Policy) -> Vec<Outcome> {
    let request = Request {
        object: ObjectRef {
            namespace: "shop",
            name: "web",
        },
        sts,
        old: None,
        operation: Operation::Create,
        dry_run: false,
        now: jiff::Timestamp::now(),
    };
    validate(&request, policy, &NoLookups).outcomes
}

/// `shop/web`: one container with neither probe, a Service that does not
/// exist; liveness enforced, readiness in audit mode, the Service rule
/// exempted.
fn outcomes() -> Vec<Outcome> {
    let sts: StatefulSet = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "serviceName": "web", "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "app", "image": "nginx"}]}},
        },
    }))
    .unwrap();
    let policy = Policy::from_yaml(
        "rules:\n  readiness-probe: audit\nexemptions:\n  - namespace: shop\n    name: web\n    rules: [headless-service]\n    reason: DNS-less by design (TICKET-7)\n",
        "policy.yaml",
    )
    .unwrap();
    created(&sts, &policy)
}

fn owner() -> Owner<'static> {
    Owner {
        namespace: "shop",
        name: "web",
        uid: "6f1c-uid",
    }
}

fn by_rule<'a>(results: &'a [ReportResult], rule: &str) -> &'a ReportResult {
    results
        .iter()
        .find(|r| r.rule.as_deref() == Some(rule))
        .unwrap_or_else(|| panic!("no result for {rule}"))
}

fn property<'a>(result: &'a ReportResult, key: &str) -> Option<&'a str> {
    result.properties.as_ref()?.get(key).map(String::as_str)
}

#[test]
fn every_rule_has_a_result_and_each_finding_its_own() {
    let results = results(&outcomes(), AT);
    let rules: Vec<&str> = results.iter().filter_map(|r| r.rule.as_deref()).collect();
    let every: Vec<&str> = RULES.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(rules, every);
    for r in &results {
        assert_eq!(r.source, "sts-guard");
        assert_eq!(Some(r.policy.as_str()), r.rule.as_deref());
        assert_eq!(r.timestamp, Some(AT));
    }

    let liveness = by_rule(&results, "liveness-probe");
    assert_eq!(liveness.result, Some(PolicyResult::Fail));
    assert_eq!(property(liveness, "container"), Some("app"));
    assert_eq!(
        property(liveness, "path"),
        Some("spec.template.spec.containers[0]")
    );
    assert_eq!(property(liveness, "action"), Some("deny"));
    assert!(
        liveness
            .message
            .as_deref()
            .unwrap()
            .starts_with("spec.template.spec.containers[0] \"app\" has no livenessProbe"),
        "{liveness:?}"
    );

    let readiness = by_rule(&results, "readiness-probe");
    assert_eq!(readiness.result, Some(PolicyResult::Warn));
    assert_eq!(property(readiness, "action"), Some("audit"));
    assert_eq!(property(readiness, "reason"), Some("audit-mode"));

    let service = by_rule(&results, "headless-service");
    assert_eq!(service.result, Some(PolicyResult::Skip));
    assert_eq!(
        property(service, "reason"),
        Some("DNS-less by design (TICKET-7)")
    );
    assert!(
        service
            .message
            .as_deref()
            .unwrap()
            .ends_with("(exempt: DNS-less by design (TICKET-7))")
    );
    assert_eq!(property(service, "container"), None);

    let budget = by_rule(&results, "disruption-budget");
    assert_eq!(budget.result, Some(PolicyResult::Pass));
    assert_eq!(budget.properties, None);

    assert_eq!(
        ReportSummary::of(&results),
        ReportSummary {
            pass: 4,
            fail: 1,
            warn: 1,
            error: 0,
            skip: 1,
        }
    );
}

#[test]
fn two_containers_failing_one_rule_are_two_results() {
    let sts: StatefulSet = serde_json::from_value(json!({
        "spec": {"template": {"spec": {"containers": [{"name": "app"}, {"name": "log"}]}}},
    }))
    .unwrap();
    let outcomes = created(&sts, &Policy::default());
    let results = results(&outcomes, AT);
    let containers: Vec<&str> = results
        .iter()
        .filter(|r| r.rule.as_deref() == Some("liveness-probe"))
        .filter_map(|r| property(r, "container"))
        .collect();
    assert_eq!(containers, ["app", "log"]);
}

#[test]
fn a_report_names_and_is_owned_by_its_statefulset() {
    let report: Report = build(&outcomes(), &owner(), AT);
    let value = serde_json::to_value(&report).unwrap();
    assert_eq!(value["apiVersion"], "openreports.io/v1alpha1");
    assert_eq!(value["kind"], "Report");
    assert_eq!(value["source"], "sts-guard");
    assert_eq!(value["metadata"]["name"], "sts-guard-web");
    assert_eq!(value["metadata"]["namespace"], "shop");
    assert_eq!(
        value["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "sts-guard"
    );
    assert_eq!(
        value["metadata"]["ownerReferences"],
        json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "6f1c-uid"}])
    );
    assert_eq!(
        value["scope"],
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "namespace": "shop", "uid": "6f1c-uid"})
    );
    assert_eq!(
        value["summary"],
        json!({"pass": 4, "fail": 1, "warn": 1, "error": 0, "skip": 1})
    );
    assert_eq!(
        value["results"][0]["timestamp"],
        json!({"seconds": 1_796_169_600, "nanos": 5})
    );

    let policy_report: PolicyReport = build(&outcomes(), &owner(), AT);
    let value = serde_json::to_value(&policy_report).unwrap();
    assert_eq!(value["apiVersion"], "wgpolicyk8s.io/v1alpha2");
    assert_eq!(value["kind"], "PolicyReport");
    // PolicyReport has no root source; its results do.
    assert!(value.get("source").is_none());
    assert_eq!(value["results"][0]["source"], "sts-guard");
}

#[test]
fn report_names_stay_valid_and_distinct() {
    assert_eq!(report_name("web"), "sts-guard-web");
    let long_a = format!("{}a", "x".repeat(252));
    let long_b = format!("{}b", "x".repeat(252));
    let (a, b) = (report_name(&long_a), report_name(&long_b));
    assert_ne!(a, b);
    for name in [&a, &b] {
        assert!(name.len() <= 253, "{} characters", name.len());
        assert!(name.starts_with("sts-guard-xxx"));
    }
    // Deterministic: the same StatefulSet, the same report.
    assert_eq!(report_name(&long_a), a);
    // A name that fits exactly keeps its plain form.
    let fits = "y".repeat(243);
    assert_eq!(report_name(&fits), format!("sts-guard-{fits}"));
}
