//! `sts-guard audit`. Without a cluster: the exit code and message when
//! none can be reached. With one: the end-to-end control plane
//! (tests/support/control_plane.rs: a real kube-apiserver and etcd on
//! loopback), holding a known mix of compliant and non-compliant
//! StatefulSets. That test is ignored by default because it needs the
//! control plane binaries (built once by tests/e2e/build-control-plane.sh,
//! ~6 minutes):
//!
//!   cargo test --test cli_audit -- --ignored

mod support;

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use support::control_plane::{ControlPlane, Output, free_ports, repo_root};

fn audit(kubeconfig: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_sts-guard"))
        .arg("audit")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("STS_GUARD_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run sts-guard audit")
}

#[test]
fn audit_without_cluster_configuration_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let out = audit(&dir.path().join("no-such-kubeconfig"), &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: cannot configure a cluster client"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn audit_of_an_unreachable_cluster_exits_2() {
    // A port nothing listens on: connection refused at once.
    let port = free_ports(1)[0];
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: gone
  cluster: {{server: 'https://127.0.0.1:{port}', insecure-skip-tls-verify: true}}
users:
- name: nobody
  user: {{token: nothing}}
contexts:
- name: gone
  context: {{cluster: gone, user: nobody}}
current-context: gone
"
        ),
    )
    .unwrap();
    let out = audit(&kubeconfig, &["-o", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: cannot list Services: "), "{err}");
    assert!(out.stdout.is_empty(), "no partial report");
}

#[test]
fn exit_zero_still_exits_2_on_an_error() {
    // --exit-zero forgives findings, never a cluster that cannot be read.
    let dir = tempfile::tempdir().unwrap();
    let out = audit(&dir.path().join("no-such-kubeconfig"), &["--exit-zero"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: cannot configure a cluster client"),
        "{err}"
    );
}

/// What one `sts-guard audit` printed, and its exit code.
fn audit_run(kubeconfig: &Path, args: &[&str]) -> Output {
    Output::from_std(audit(kubeconfig, args))
}

#[test]
#[ignore = "needs the e2e control plane: cargo test --test cli_audit -- --ignored"]
fn audit_reviews_a_live_cluster() {
    // A control plane of its own (no webhook: the fixtures are stored as
    // they are, compliant or not), stopped before the last audit.
    let cp = ControlPlane::start().unwrap();
    for ns in ["shop", "data", "staging", "legacy", "batch"] {
        cp.kubectl(&["create", "namespace", ns]).assert_exit(0);
    }
    let f = repo_root().join("tests/fixtures/check");
    let fixtures = [
        "compliant",
        "policy/manifests",
        "mixed/base",
        "mixed/apps/backend/queue.yml",
        "list/list.yaml",
    ]
    .map(|p| f.join(p).display().to_string());
    let mut args = vec!["apply"];
    for path in &fixtures {
        args.extend(["-f", path]);
    }
    cp.kubectl(&args).assert_exit(0);
    let policy_file = f.join("policy/policy.yaml").display().to_string();
    let kubeconfig = &cp.kubeconfig;
    let all = audit_run(kubeconfig, &["--chunk-size", "2", "-o", "json"]);
    let text = audit_run(kubeconfig, &[]);
    let staging = audit_run(kubeconfig, &["-n", "staging", "--config", &policy_file]);
    let policy = audit_run(kubeconfig, &["--config", &policy_file, "-o", "json"]);
    let sarif = audit_run(kubeconfig, &["-o", "sarif"]);
    let exit_zero = audit_run(
        kubeconfig,
        &["--chunk-size", "2", "-o", "json", "--exit-zero"],
    );
    // The servers gone, the kubeconfig still there.
    cp.stop_processes();
    let stopped = audit_run(kubeconfig, &[]);
    let stopped_exit_zero = audit_run(kubeconfig, &["--exit-zero"]);
    drop(cp);

    // Every namespace, listed two at a time: all 8 StatefulSets, sorted.
    assert_eq!(all.code, 1, "{}", all.stderr);
    let report: Value = serde_json::from_str(&all.stdout).unwrap();
    assert_eq!(report["schemaVersion"], 1);
    assert_eq!(report["command"], "audit");
    let verdicts: Vec<(String, &str)> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            assert_eq!(o["source"]["type"], "cluster");
            (
                format!(
                    "{}/{}",
                    o["namespace"].as_str().unwrap(),
                    o["name"].as_str().unwrap()
                ),
                o["verdict"].as_str().unwrap(),
            )
        })
        .collect();
    let expected = [
        ("batch/queue-worker", "denied"),
        ("data/kafka", "ok"),
        ("data/zookeeper", "denied"),
        ("legacy/ledger", "denied"),
        ("shop/postgres", "ok"),
        ("shop/queue", "denied"),
        ("shop/web", "ok"),
        ("staging/web", "denied"),
    ];
    let expected: Vec<(String, &str)> = expected.iter().map(|(n, v)| (n.to_string(), *v)).collect();
    assert_eq!(verdicts, expected);

    // --exit-zero: the same report (5 would be denied), exit 0.
    assert_eq!(exit_zero.code, 0, "{}", exit_zero.stderr);
    assert_eq!(exit_zero.stdout, all.stdout);
    assert!(exit_zero.stderr.is_empty(), "{}", exit_zero.stderr);

    assert_eq!(text.code, 1);
    assert!(
        text.stdout
            .contains("shop/queue StatefulSet, cluster: would be denied"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains(
            r#"denied   [liveness-probe] spec.template.spec.containers[0] "rabbitmq" has no livenessProbe"#
        ),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .ends_with("8 StatefulSets checked: 5 would be denied, 0 warned, 3 ok\n"),
        "{}",
        text.stdout
    );
    // stderr is not a terminal here: no progress counter.
    assert!(text.stderr.is_empty(), "{}", text.stderr);

    assert_eq!(staging.code, 0, "warn mode: {}", staging.stdout);
    assert!(staging.stdout.contains("(warn mode)"), "{}", staging.stdout);
    assert!(
        staging
            .stdout
            .ends_with("1 StatefulSet checked: 0 would be denied, 1 warned, 0 ok\n")
    );

    // The policy turns staging to warnings, legacy's liveness rule to audit
    // and exempts batch/queue-worker from the Service rule.
    assert_eq!(policy.code, 1, "data and shop are still enforced");
    let report: Value = serde_json::from_str(&policy.stdout).unwrap();
    let action_of = |ns: &str, name: &str| -> Vec<String> {
        report["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["namespace"] == ns && o["name"] == name)
            .unwrap()["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                format!(
                    "{}:{}",
                    f["rule"].as_str().unwrap(),
                    f["action"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        action_of("batch", "queue-worker"),
        vec!["headless-service:exempt"]
    );
    assert_eq!(action_of("legacy", "ledger"), vec!["liveness-probe:audit"]);
    // staging's liveness probe allows 30 s (API defaults): startup-budget
    // warns too, as every rule does in a warn namespace.
    assert_eq!(
        action_of("staging", "web"),
        vec!["readiness-probe:warn", "startup-budget:warn"]
    );
    assert_eq!(report["summary"]["denied"], 2);

    let sarif: Value = serde_json::from_str(&sarif.stdout).unwrap();
    let result = &sarif["runs"][0]["results"][0];
    assert!(result["locations"][0].get("physicalLocation").is_none());
    assert_eq!(
        result["locations"][0]["logicalLocations"][0]["fullyQualifiedName"],
        "batch/queue-worker"
    );

    assert_eq!(stopped.code, 2, "{}", stopped.stderr);
    assert!(
        stopped.stderr.starts_with("error: cannot list Services: "),
        "{}",
        stopped.stderr
    );
    assert_eq!(stopped_exit_zero.code, 2, "{}", stopped_exit_zero.stderr);
    assert_eq!(stopped_exit_zero.stderr, stopped.stderr);
}
