//! UPDATEs: a rule the old object already broke never blocks an update
//! (warn instead), a compliant object cannot be broken, and a Service
//! deleted after creation never blocks one (serviceName is immutable).

use std::time::Duration;

use crate::support::control_plane::wait_for;
use crate::{Ns, Sts, Svc, accepts, assert_has, denied, file, kubectl, note};

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn update_of_a_statefulset_that_already_broke_a_rule_is_allowed_with_a_warning() {
    // Stored before sts-guard looked at this namespace.
    let ns = Ns::ignored("update-legacy").await;
    accepts(&ns, &Svc::new("legacy").yaml());
    accepts(&ns, &Sts::new("legacy").no_readiness().yaml());
    ns.stop_ignoring().await;

    let out = kubectl(&["label", "sts", "-n", &ns.name, "legacy", "tier=backend"]);
    out.assert_exit(0);
    // ... with a warning saying it already broke the rule.
    assert_has(&out.stderr, "Warning: [readiness-probe]");
    assert_has(&out.stderr, note::ALREADY_BROKEN);
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn update_removing_a_probe_from_a_compliant_statefulset_is_denied() {
    let ns = Ns::fresh("update-good").await;
    accepts(
        &ns,
        &file(&[Svc::new("good").yaml(), Sts::new("good").yaml()]),
    );
    let out = kubectl(&[
        "patch",
        "sts",
        "-n",
        &ns.name,
        "good",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/spec/template/spec/containers/0/livenessProbe"}]"#,
    ]);
    assert_has(&denied(&out), "[liveness-probe]");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn service_deleted_after_creation_never_blocks_an_update() {
    let ns = Ns::fresh("update-svc-gone").await;
    accepts(
        &ns,
        &file(&[Svc::new("good").yaml(), Sts::new("good").yaml()]),
    );
    kubectl(&["delete", "svc", "-n", &ns.name, "good"]).assert_exit(0);
    // sts-guard reads Services from a watch cache: wait until it has seen
    // the deletion (a dry-run of the same update mentions the Service).
    wait_for(
        "the webhook's cache to drop the Service",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let out = kubectl(&[
                "label",
                "sts",
                "-n",
                &ns.name,
                "good",
                "tier=frontend",
                "--dry-run=server",
            ]);
            Ok(out.stderr.contains("[headless-service]"))
        },
    )
    .unwrap();
    let out = kubectl(&["label", "sts", "-n", &ns.name, "good", "tier=frontend"]);
    out.assert_exit(0);
    assert_has(&out.stderr, note::SERVICE_GONE_ON_UPDATE);
}
