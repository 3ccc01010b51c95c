//! The policy files we ship and document must parse with the same parser
//! `serve` uses, or the first reload in a cluster would be refused.

use std::path::Path;

use sts_guard::policy::{Mode, Policy};
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
    assert!(policy.mutations("batch").startup_probe);
    assert!(
        policy
            .exemption("batch", "queue-worker", RuleId("headless-service"))
            .is_some()
    );
}
