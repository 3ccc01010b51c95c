//! The probe-quality rules through kubectl: each warns where the policy
//! does not name it, and denies where it does.

use crate::{Ns, Svc, apply, assert_has, assert_lacks, budget, file, rejects, warns};

/// Three replicas of a pod whose probes exist but would crash-loop: the
/// same check twice, a port name the container does not declare, 30 s
/// before the first restart, and no PodDisruptionBudget.
fn crash_looping(name: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
spec:
  serviceName: {name}
  replicas: 3
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: db
          image: postgres:17
          ports: [{{name: pg, containerPort: 5432}}]
          livenessProbe:
            tcpSocket: {{port: pg}}
          readinessProbe:
            tcpSocket: {{port: pg}}
          startupProbe:
            tcpSocket: {{port: postgres}}
            failureThreshold: 30
        - name: exporter
          image: prometheuscommunity/postgres-exporter:v0.15.0
          livenessProbe:
            httpGet: {{path: /, port: 9187}}
          readinessProbe:
            httpGet: {{path: /metrics, port: 9187}}
"
    )
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn probe_quality_rules_warn_where_the_policy_does_not_name_them() {
    let ns = Ns::fresh("quality").await;
    let err = warns(&ns, &file(&[Svc::new("pg").yaml(), crash_looping("pg")]));
    assert!(ns.statefulset("pg").await.is_some(), "not stored");
    for expected in [
        r#"Warning: [identical-probes] spec.template.spec.containers[0] "db" runs one check for liveness and readiness (tcpSocket port 5432)"#,
        r#"Warning: [probe-port] spec.template.spec.containers[0] "db" startupProbe names port "postgres", which the container does not declare"#,
        r#"Warning: [startup-budget] spec.template.spec.containers[1] "exporter" livenessProbe allows 30 s before the first restart; the policy asks 60 s"#,
        "Warning: [disruption-budget] spec.replicas is 3 and no PodDisruptionBudget selects the pods",
    ] {
        assert_has(&err, expected);
    }
    // The db container has a startupProbe: its budget is not at stake.
    assert_lacks(&err, r#"[startup-budget] spec.template.spec.containers[0]"#);
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn probe_quality_rules_deny_where_the_policy_names_them() {
    let ns = Ns::from_policy("strict").await;
    let denial = rejects(&ns, &file(&[Svc::new("pg").yaml(), crash_looping("pg")]));
    for rule in [
        "identical-probes",
        "probe-port",
        "startup-budget",
        "disruption-budget",
    ] {
        assert_has(&denial, &format!("- [{rule}] "));
    }
    assert!(
        ns.statefulset("pg").await.is_none(),
        "stored although denied"
    );

    // With its budget in the same file (created first) only the others deny.
    let denial = rejects(
        &ns,
        &file(&[Svc::new("pg").yaml(), budget("pg"), crash_looping("pg")]),
    );
    assert_lacks(&denial, "[disruption-budget]");
    assert_has(&denial, "- [identical-probes] ");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn a_budget_in_the_same_dry_run_apply_is_not_stored_so_its_absence_only_warns() {
    let ns = Ns::from_policy("strict-dry").await;
    let out = apply(
        &ns,
        &file(&[budget("solo"), crash_looping("solo")]),
        &["--dry-run=server"],
    );
    let err = out.stderr.clone();
    // Enforced here, so the other rules deny even on dry-run; the missing
    // budget is only a warning (it is in the same apply).
    assert_has(
        &err,
        "[disruption-budget] spec.replicas is 3 and no PodDisruptionBudget selects the pods (allowed on dry-run: the same apply may create it)",
    );
    assert_has(&err, "- [identical-probes] ");
    assert_eq!(out.code, 1, "{out}");
}
