//! `kubectl apply --dry-run=server`: reports what would be denied, stores
//! nothing, and does not deny for a Service that the same apply would
//! have created.

use crate::{Ns, Sts, Svc, apply, assert_has, denied, file, note};

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn dry_run_of_a_bad_statefulset_is_denied_and_stores_nothing() {
    let ns = Ns::fresh("dry").await;
    let out = apply(
        &ns,
        &Sts::new("bad").no_liveness().yaml(),
        &["--dry-run=server"],
    );
    assert_has(&denied(&out), "[liveness-probe]");
    assert!(ns.statefulset("bad").await.is_none(), "dry-run stored it");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn dry_run_missing_service_warns() {
    let ns = Ns::fresh("dry-both").await;
    // The Service comes first in the file, but a dry-run stores nothing,
    // so sts-guard cannot find it.
    let both = file(&[Svc::new("both").yaml(), Sts::new("both").yaml()]);
    let out = apply(&ns, &both, &["--dry-run=server"]);
    out.assert_exit(0);
    assert_has(
        &out.stderr,
        r#"Warning: [headless-service] spec.serviceName "both" names no Service"#,
    );
    assert_has(&out.stderr, note::DRY_RUN);
    assert!(ns.statefulset("both").await.is_none(), "StatefulSet stored");
    assert!(ns.service("both").await.is_none(), "Service stored");
}
