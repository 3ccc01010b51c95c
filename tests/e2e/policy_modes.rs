//! The policy file's modes and exemptions, per namespace.

use crate::{Ns, Sts, accepts, assert_has, assert_lacks, cluster, warns};

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn warn_namespace_allows_with_a_warning_per_problem() {
    let ns = Ns::from_policy("warn").await;
    let err = warns(&ns, &Sts::new("web").no_liveness().yaml());
    assert!(ns.statefulset("web").await.is_some(), "not stored");
    assert_has(
        &err,
        r#"Warning: [liveness-probe] spec.template.spec.containers[0] "app" has no livenessProbe"#,
    );
    assert_has(&err, "Warning: [headless-service]");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn audit_namespace_allows_silently_and_counts_in_metrics() {
    let ns = Ns::from_policy("audit").await;
    let out = accepts(&ns, &Sts::new("web").no_readiness().yaml());
    assert!(ns.statefulset("web").await.is_some(), "not stored");
    assert_lacks(&out.stderr, "Warning");
    let namespace = format!("namespace=\"{}\"", ns.name);
    let counted = cluster().webhook.metric(
        "sts_guard_rule_findings_total",
        &[
            r#"endpoint="validate""#,
            r#"rule="readiness-probe""#,
            r#"action="audit""#,
            &namespace,
        ],
    );
    assert_eq!(counted, 1.0, "{}", cluster().webhook.metrics());
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn policy_exemption_by_name_allows_a_missing_service() {
    let ns = Ns::from_policy("exempt").await;
    accepts(&ns, &Sts::new("no-service").yaml());
    assert!(ns.statefulset("no-service").await.is_some(), "not stored");
}
