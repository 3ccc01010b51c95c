//! The generated objects, for examples/policy.yaml (a golden file) and for
//! the policy keys that shape them. That the CEL decides as the Rust does
//! is proven on a real API server: tests/e2e/vap.rs.

use k8s_openapi::api::admissionregistration::v1::ValidatingAdmissionPolicyBinding;
use serde_json::json;

use super::*;
use crate::policy::objects::{ExemptionSpec, ExpiresAt, StatefulSetExemption};
use crate::view::StatefulSet;

fn now() -> jiff::Timestamp {
    "2026-06-01T00:00:00Z".parse().unwrap()
}

fn policy(yaml: &str) -> Policy {
    Policy::from_yaml(yaml, "policy.yaml").unwrap()
}

fn of(policy: &Policy, rule: &str) -> RulePolicy {
    generate(policy, "sts-guard", now())
        .into_iter()
        .find(|p| p.rule.as_str() == rule)
        .unwrap()
}

fn spec(p: &RulePolicy) -> &ValidatingAdmissionPolicySpec {
    p.policy.spec.as_ref().unwrap()
}

fn match_condition(p: &RulePolicy) -> Option<String> {
    spec(p)
        .match_conditions
        .as_ref()
        .map(|c| c[0].expression.clone())
}

fn variable(p: &RulePolicy, name: &str) -> String {
    spec(p)
        .variables
        .iter()
        .flatten()
        .find(|v| v.name == name)
        .unwrap()
        .expression
        .clone()
}

/// `(name, action, operator, namespaces)` of each binding.
fn bindings(p: &RulePolicy) -> Vec<(String, String, Option<String>, Vec<String>)> {
    p.bindings
        .iter()
        .map(|b: &ValidatingAdmissionPolicyBinding| {
            let spec = b.spec.as_ref().unwrap();
            assert_eq!(
                spec.policy_name.as_deref(),
                p.policy.metadata.name.as_deref()
            );
            let requirement = spec
                .match_resources
                .as_ref()
                .and_then(|m| m.namespace_selector.as_ref())
                .and_then(|s| s.match_expressions.as_ref())
                .map(|e| e[0].clone());
            (
                b.metadata.name.clone().unwrap(),
                spec.validation_actions.as_ref().unwrap().join(","),
                requirement.as_ref().map(|r| r.operator.clone()),
                requirement.and_then(|r| r.values).unwrap_or_default(),
            )
        })
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Every rule that reads only the StatefulSet has CEL; the two that look
/// other objects up (a Service, a PodDisruptionBudget) do not, and cannot.
#[test]
fn every_rule_that_reads_only_the_statefulset_has_cel() {
    let sts: StatefulSet = serde_json::from_value(json!({"spec": {
        "replicas": 3, "serviceName": "web",
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "app"}]}}
    }}))
    .unwrap();
    let without: Vec<&str> = RULES
        .iter()
        .filter(|r| r.cel.is_none())
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(without, ["headless-service", "disruption-budget"]);
    for rule in RULES {
        assert_eq!(
            (rule.needs)(&sts, "ns").is_empty(),
            rule.cel.is_some(),
            "{}",
            rule.id
        );
    }
    let generated: Vec<String> = generate(&Policy::default(), "sts-guard", now())
        .iter()
        .map(|p| p.policy.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        generated,
        [
            "sts-guard-liveness-probe",
            "sts-guard-readiness-probe",
            "sts-guard-identical-probes",
            "sts-guard-probe-port",
            "sts-guard-startup-budget"
        ]
    );
}

/// examples/policy.yaml's objects, byte for byte: a change to a rule's CEL
/// or to the generator shows in review. `UPDATE_GOLDEN=1 cargo test` writes
/// the file again.
#[test]
fn the_example_policy_generates_the_golden_file() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let yaml =
        crate::commands::policy::vap(Some(&root.join("examples/policy.yaml")), "sts-guard", now())
            .unwrap();
    let golden = root.join("tests/fixtures/vap/example-policy.yaml");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &yaml).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    assert!(
        yaml == expected,
        "the generated objects differ from {}; if the change is meant, run UPDATE_GOLDEN=1 cargo test --lib vap",
        golden.display()
    );
}

/// What examples/policy.yaml says, object by object: modes per namespace
/// (with the new-rule cap), the per-namespace startup budget, the owner
/// annotation where allowed, the shape every policy shares.
#[test]
fn the_example_policy_in_objects() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let p = Policy::load(&root.join("examples/policy.yaml")).unwrap();
    let all = generate(&p, "platform", now());
    for rule in &all {
        let spec = spec(rule);
        assert_eq!(spec.failure_policy.as_deref(), Some("Ignore"));
        assert!(spec.param_kind.is_none());
        assert_eq!(spec.validations.as_ref().unwrap().len(), 1);
        let labels = rule.policy.metadata.labels.as_ref().unwrap();
        assert_eq!(
            labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("sts-guard")
        );
        let constraints = spec.match_constraints.as_ref().unwrap();
        let resources = &constraints.resource_rules.as_ref().unwrap()[0];
        assert_eq!(
            resources.operations.as_deref(),
            Some(&strings(&["CREATE", "UPDATE"])[..])
        );
        assert_eq!(
            resources.resources.as_deref(),
            Some(&strings(&["statefulsets"])[..])
        );
        let selector = constraints.namespace_selector.as_ref().unwrap();
        let expressions = selector.match_expressions.as_ref().unwrap();
        assert_eq!(
            expressions[0].values.as_deref(),
            Some(&strings(&["kube-system", "kube-public", "kube-node-lease", "platform"])[..])
        );
        assert_eq!(
            (
                expressions[1].key.as_str(),
                expressions[1].operator.as_str()
            ),
            ("sts-guard.io/ignore", "DoesNotExist")
        );
        // sandbox allows owner exemptions; nothing else exempts these rules.
        assert_eq!(
            match_condition(rule),
            Some(format!(
                "!((request.namespace in ['sandbox']) && object.metadata.?annotations[?'sts-guard.io/exempt'].orValue('').split(',').exists(s, s.trim() in ['all', '{}']))",
                rule.rule
            ))
        );
    }
    let liveness = of(&p, "liveness-probe");
    assert_eq!(
        bindings(&liveness),
        [
            (
                "sts-guard-liveness-probe-deny".into(),
                "Deny".into(),
                Some("NotIn".into()),
                strings(&["sandbox", "legacy"])
            ),
            (
                "sts-guard-liveness-probe-audit".into(),
                "Audit".into(),
                Some("In".into()),
                strings(&["sandbox"])
            ),
            (
                "sts-guard-liveness-probe-warn".into(),
                "Warn".into(),
                Some("In".into()),
                strings(&["legacy"])
            ),
        ]
    );
    // Capped at warn by default, named for shop.
    let budget = of(&p, "startup-budget");
    assert_eq!(
        bindings(&budget),
        [
            (
                "sts-guard-startup-budget-warn".into(),
                "Warn".into(),
                Some("NotIn".into()),
                strings(&["sandbox", "shop"])
            ),
            (
                "sts-guard-startup-budget-audit".into(),
                "Audit".into(),
                Some("In".into()),
                strings(&["sandbox"])
            ),
            (
                "sts-guard-startup-budget-deny".into(),
                "Deny".into(),
                Some("In".into()),
                strings(&["shop"])
            ),
        ]
    );
    assert_eq!(
        variable(&budget, "startupBudgetMinSeconds"),
        "{'legacy': 180}[?namespaceObject.metadata.name].orValue(60)"
    );
    // Ratcheting only where the rule denies.
    assert!(variable(&budget, "oldFindings").starts_with(
        "request.operation == 'UPDATE' && namespaceObject.metadata.name in ['shop'] ? oldObject."
    ));
}

#[test]
fn one_mode_everywhere_is_one_binding_for_every_namespace() {
    let p = policy("mode: audit\n");
    let liveness = of(&p, "liveness-probe");
    assert_eq!(
        bindings(&liveness),
        [(
            "sts-guard-liveness-probe-audit".into(),
            "Audit".into(),
            None,
            vec![]
        )]
    );
    // Nothing denies: nothing ratchets, no exemption.
    assert_eq!(variable(&liveness, "oldFindings"), "[]");
    assert_eq!(match_condition(&liveness), None);
    assert_eq!(
        variable(&of(&p, "startup-budget"), "startupBudgetMinSeconds"),
        "60"
    );
    let enforce = of(&policy(""), "readiness-probe");
    assert!(
        variable(&enforce, "oldFindings").starts_with("request.operation == 'UPDATE' ? oldObject.")
    );
}

/// The policy's exemptions and exemption objects in force at `now` leave
/// the rules they name out; an expired or disallowed object does not.
#[test]
fn exemptions_in_force_become_the_match_condition() {
    let p = policy(
        "allowOwnerExemptions: true\n\
         namespaces: {locked: {allowOwnerExemptions: false}, team: {allowExemptionObjects: true}}\n\
         exemptions:\n\
         - {namespace: batch, name: worker, rules: [liveness-probe], reason: r}\n\
         - {namespace: legacy, reason: every rule}\n\
         - {namespace: batch, name: other, rules: [probe-port], reason: r}\n",
    );
    let object = |ns: &str, name: &str, sts: &str, expires: Option<&str>| {
        let mut e = StatefulSetExemption::new(
            name,
            ExemptionSpec {
                stateful_set: sts.into(),
                rules: vec![RuleId("liveness-probe")],
                reason: "r".into(),
                expires_at: expires.map(|t| ExpiresAt(t.parse().unwrap())),
                ..ExemptionSpec::default()
            },
        );
        e.metadata.namespace = Some(ns.into());
        e
    };
    let p = p.with_exemption_objects(
        [
            object("team", "db", "db", Some("2026-12-31T00:00:00Z")),
            object("team", "old", "old", Some("2026-01-01T00:00:00Z")),
            object("elsewhere", "all", "*", None),
            object("sts-guard", "platform", "*", None),
        ],
        "sts-guard",
    );
    assert_eq!(
        match_condition(&of(&p, "liveness-probe")).unwrap(),
        "!(request.namespace in ['legacy', 'sts-guard'] \
         || request.namespace + '/' + object.metadata.name in ['batch/worker', 'team/db'] \
         || (!(request.namespace in ['locked'])) && object.metadata.?annotations[?'sts-guard.io/exempt'].orValue('').split(',').exists(s, s.trim() in ['all', 'liveness-probe']))"
    );
    assert_eq!(
        match_condition(&of(&p, "readiness-probe")).unwrap(),
        "!(request.namespace in ['legacy'] \
         || (!(request.namespace in ['locked'])) && object.metadata.?annotations[?'sts-guard.io/exempt'].orValue('').split(',').exists(s, s.trim() in ['all', 'readiness-probe']))"
    );
}

/// What `policy vap` prints reads back as the objects it was made from.
#[test]
fn the_printed_stream_reads_back_as_the_objects() {
    let p = policy("mode: warn\nnamespaces: {prod: {mode: enforce}}\n");
    let path = std::env::temp_dir().join(format!("sts-guard-vap-{}.yaml", std::process::id()));
    // An empty policy file: the built-in default, which enforces liveness-probe.
    std::fs::write(&path, "").unwrap();
    let yaml = crate::commands::policy::vap(Some(&path), "sts-guard", now()).unwrap();
    assert!(yaml.contains("name: sts-guard-liveness-probe-deny\n"));
    std::fs::write(&path, "mode: warn\nnamespaces: {prod: {mode: enforce}}\n").unwrap();
    let yaml = crate::commands::policy::vap(Some(&path), "sts-guard", now()).unwrap();
    std::fs::remove_file(&path).unwrap();
    let docs: Vec<&str> = yaml.split("---\n").collect();
    let generated = generate(&p, "sts-guard", now());
    let mut i = 0;
    for rule in &generated {
        let read: ValidatingAdmissionPolicy = serde_saphyr::from_str(docs[i]).unwrap();
        assert_eq!(read, rule.policy);
        i += 1;
        for binding in &rule.bindings {
            let read: ValidatingAdmissionPolicyBinding = serde_saphyr::from_str(docs[i]).unwrap();
            assert_eq!(&read, binding);
            i += 1;
        }
    }
    assert_eq!(i, docs.len());
}
