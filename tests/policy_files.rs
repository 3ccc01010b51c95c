//! The policy files we ship and document must parse with the same parser
//! `serve` uses, or the first reload in a cluster would be refused.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use sts_guard::policy::{Exempting, Exemption, Mode, NamespacePolicy, Policy, PolicySpec};
use sts_guard::rules::RuleId;

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn the_shipped_configmap_policy_parses_and_starts_in_audit() {
    let configmap: serde_json::Value =
        serde_saphyr::from_str(&repo("deploy/base/policy-configmap.yaml")).unwrap();
    let text = configmap["data"]["policy.yaml"].as_str().unwrap();
    let policy = Policy::from_yaml(text, "policy-configmap.yaml").unwrap();
    for rule in [
        RuleId("liveness-probe"),
        RuleId("readiness-probe"),
        RuleId("headless-service"),
    ] {
        assert_eq!(policy.mode("any", rule), Mode::Audit, "safe start");
    }
}

#[test]
fn the_example_policy_parses_as_documented() {
    let policy = Policy::from_yaml(&repo("examples/policy.yaml"), "examples/policy.yaml").unwrap();
    assert_eq!(policy.mode("legacy", RuleId("liveness-probe")), Mode::Warn);
    assert_eq!(
        policy.mode("sandbox", RuleId("headless-service")),
        Mode::Audit
    );
    assert_eq!(
        policy.mode("shop", RuleId("headless-service")),
        Mode::Enforce
    );
    // The comments' claims on the newer rules.
    let startup = RuleId("startup-budget");
    assert_eq!(policy.mode("shop", startup), Mode::Enforce);
    assert_eq!(policy.mode("other", startup), Mode::Warn);
    assert_eq!(policy.mode("sandbox", startup), Mode::Audit);
    assert_eq!(policy.mode("other", RuleId("probe-port")), Mode::Enforce);
    assert_eq!(policy.mode("legacy", RuleId("probe-port")), Mode::Warn);
    assert!(policy.mutations("batch").startup_probe);
    assert!(matches!(
        policy.exemption(
            "batch",
            "queue-worker",
            RuleId("headless-service"),
            jiff::Timestamp::now()
        ),
        Some(Exempting::Honoured(_))
    ));
}

/// Every key path of `value`, map entries under `namespaces` and list items
/// written as `*`: `namespaces.*.mutations.parallel`, `exemptions.*.reason`.
fn key_paths(value: &Value, prefix: &str, paths: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let key = if prefix.ends_with("namespaces") || prefix.ends_with("rules") {
                    "*"
                } else {
                    key
                };
                let path = if prefix.is_empty() {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                paths.insert(path.clone());
                key_paths(child, &path, paths);
            }
        }
        Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{prefix}.*"), paths);
            }
        }
        _ => {}
    }
}

/// README says every key is shown in examples/policy.yaml: every key the
/// parser knows (a policy with every optional part present) is there.
#[test]
fn the_example_policy_shows_every_key() {
    let mut full = serde_json::to_value(PolicySpec::default()).unwrap();
    let rules = serde_json::json!({"liveness-probe": "warn"});
    full["rules"] = rules.clone();
    // Unset optional keys are not written; set them so they are known.
    full["mutations"]["startupTimeout"] = "2m".into();
    let mut namespace = serde_json::to_value(NamespacePolicy::default()).unwrap();
    namespace["rules"] = rules;
    namespace["mutations"]["startupTimeout"] = "2m".into();
    full["namespaces"] = serde_json::json!({ "shop": namespace });
    let exemption = Exemption {
        namespace: "shop".into(),
        name: Some("web".into()),
        rules: vec![RuleId("headless-service")],
        reason: "why".into(),
    };
    full["exemptions"] = serde_json::json!([exemption]);
    let mut known = BTreeSet::new();
    key_paths(&full, "", &mut known);

    let example: Value = serde_saphyr::from_str(&repo("examples/policy.yaml")).unwrap();
    let mut shown = BTreeSet::new();
    key_paths(&example, "", &mut shown);
    let missing: Vec<&String> = known.difference(&shown).collect();
    assert!(missing.is_empty(), "examples/policy.yaml lacks {missing:?}");
    assert!(
        known.contains("namespaces.*.startupBudget.minSeconds"),
        "{known:?}"
    );
}
