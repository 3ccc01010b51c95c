//! `serve --admission-policies` on a real API server: the generated
//! ValidatingAdmissionPolicies and bindings are applied, follow a policy
//! change within seconds, come back when deleted or edited, and keep the
//! field rules enforced while the webhook (registered with `failurePolicy:
//! Ignore`) is down.
//!
//! A control plane of its own: the generated objects are cluster-wide.

use std::time::{Duration, Instant};

use crate::support::control_plane::{ControlPlane, Output, random_suffix, repo_root, wait_for};
use crate::support::webhook::{Registration, Webhook};
use crate::{Sts, assert_has};

const MANAGED: &str = "app.kubernetes.io/managed-by=sts-guard";

fn names(cp: &ControlPlane, kind: &str) -> Vec<String> {
    let out = cp.kubectl(&["get", kind, "-l", MANAGED, "-o", "name"]);
    out.assert_exit(0);
    let mut names: Vec<String> = out.stdout.lines().map(str::to_string).collect();
    names.sort();
    names
}

fn apply(cp: &ControlPlane, ns: &str, yaml: &str) -> Output {
    cp.kubectl_with_input(&["apply", "-n", ns, "-f", "-"], yaml)
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn the_generated_policies_follow_the_policy_and_enforce_while_the_webhook_is_down() {
    let cp = ControlPlane::start().unwrap();
    let policy = cp.work().join("vap-policy.yaml");
    // Audit first: registering probes the webhook with a StatefulSet
    // without probes, which generated Deny bindings would refuse before
    // the webhook sees it (policies run before validating webhooks).
    std::fs::write(&policy, "mode: audit\n").unwrap();
    let webhook = Webhook::start_with_args(
        &cp,
        "sts-guard-vap",
        Some(&policy),
        None,
        &["--admission-policies"],
    )
    .unwrap();
    // As deploy/ registers it, but failing open: the generated policies
    // are what enforces the field rules while it is down.
    let shipped = std::fs::read_to_string(repo_root().join("deploy/base/webhooks.yaml")).unwrap();
    let open = shipped.replace("failurePolicy: Fail", "failurePolicy: Ignore");
    assert_ne!(open, shipped);
    webhook
        .register(&cp, &Registration::shipped().with_manifest(&open))
        .unwrap();

    // Applied: one policy per field rule, bindings for the modes in use.
    wait_for(
        "the generated policies",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let bindings = names(&cp, "validatingadmissionpolicybindings");
            Ok(names(&cp, "validatingadmissionpolicies").len() == 5
                && bindings.len() == 5
                && bindings.iter().all(|b| b.ends_with("-audit")))
        },
    )
    .unwrap();

    // A policy change (the file is re-read every 200 ms): enforce.
    std::fs::write(&policy, "mode: enforce\n").unwrap();
    let changed = Instant::now();
    wait_for(
        "the bindings to follow the policy",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let bindings = names(&cp, "validatingadmissionpolicybindings");
            Ok(bindings.len() == 5
                && bindings
                    .iter()
                    .any(|b| b.ends_with("sts-guard-readiness-probe-deny"))
                && !bindings.iter().any(|b| b.ends_with("-audit")))
        },
    )
    .unwrap();
    eprintln!(
        "bindings followed the policy file in {:?}",
        changed.elapsed()
    );

    // Deleted: put back. Edited: put back as generated.
    cp.kubectl(&[
        "delete",
        "validatingadmissionpolicy",
        "sts-guard-readiness-probe",
    ])
    .assert_exit(0);
    wait_for(
        "the deleted policy to come back",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok(names(&cp, "validatingadmissionpolicies").len() == 5),
    )
    .unwrap();
    cp.kubectl(&[
        "patch",
        "validatingadmissionpolicy",
        "sts-guard-liveness-probe",
        "--type=merge",
        "-p",
        r#"{"spec":{"failurePolicy":"Fail"}}"#,
    ])
    .assert_exit(0);
    wait_for(
        "the edited policy to be generated again",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let out = cp.kubectl(&[
                "get",
                "validatingadmissionpolicy",
                "sts-guard-liveness-probe",
                "-o",
                "jsonpath={.spec.failurePolicy}",
            ]);
            Ok(out.stdout == "Ignore")
        },
    )
    .unwrap();

    let ns = format!("vap-down-{}", random_suffix(5));
    cp.kubectl(&["create", "namespace", &ns]).assert_exit(0);

    // No double talk: in warn mode, the readiness finding is the API
    // server's warning alone; the Service, only the webhook's.
    std::fs::write(&policy, "mode: warn\n").unwrap();
    wait_for(
        "the warn bindings",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let bindings = names(&cp, "validatingadmissionpolicybindings");
            Ok(bindings.len() == 5 && bindings.iter().all(|b| b.ends_with("-warn")))
        },
    )
    .unwrap();
    // The API server takes new bindings up asynchronously.
    let mut out = None;
    wait_for(
        "the API server to warn instead of deny",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let dry_run = cp.kubectl_with_input(
                &["apply", "-n", &ns, "--dry-run=server", "-f", "-"],
                &Sts::new("once").no_readiness().yaml(),
            );
            let warned = dry_run.code == 0;
            out = Some(dry_run);
            Ok(warned)
        },
    )
    .unwrap();
    let out = out.unwrap();
    assert_eq!(
        out.stderr.matches("[readiness-probe]").count(),
        1,
        "{}",
        out.stderr
    );
    assert_has(
        &out.stderr,
        "ValidatingAdmissionPolicy 'sts-guard-readiness-probe'",
    );
    assert_has(&out.stderr, "[headless-service]");
    std::fs::write(&policy, "mode: enforce\n").unwrap();

    // The webhook down: the field rules still deny, the lookup rules do not.
    let missing_readiness = Sts::new("web").no_readiness().yaml();
    wait_for(
        "the generated policies to deny",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let out = cp.kubectl_with_input(
                &["apply", "-n", &ns, "--dry-run=server", "-f", "-"],
                &missing_readiness,
            );
            Ok(out.code == 1)
        },
    )
    .unwrap();
    for kind in [
        "validatingadmissionpolicies",
        "validatingadmissionpolicybindings",
    ] {
        let out = cp.kubectl(&["get", kind, "-l", MANAGED]);
        eprintln!("$ kubectl get {kind} -l {MANAGED}\n{}", out.stdout);
    }
    cp.stop_process(webhook.pid);
    let out = apply(&cp, &ns, &missing_readiness);
    eprintln!("$ kubectl apply (webhook down)\n{}", out.stderr);
    assert_eq!(out.code, 1, "{out}");
    assert_has(
        &out.stderr,
        r#"[readiness-probe] spec.template.spec.containers[0] "app" has no readinessProbe"#,
    );
    assert_has(
        &out.stderr,
        "ValidatingAdmissionPolicy 'sts-guard-readiness-probe'",
    );
    // Compliant but for its Service, which only the webhook looks up.
    let out = apply(&cp, &ns, &Sts::new("no-service").yaml());
    assert_eq!(out.code, 0, "{out}");
    cp.stop();
}
