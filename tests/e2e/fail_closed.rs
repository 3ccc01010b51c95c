//! Fail closed: with sts-guard down, the validating webhook's
//! `failurePolicy: Fail` refuses StatefulSet writes, except in the
//! namespaces deploy/ excludes.

use crate::support::control_plane::random_suffix;
use crate::support::webhook::{Registration, WEBHOOK_LABEL, Webhook};
use crate::{Ns, Sts, Svc, accepts, apply, assert_has, cluster};

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn webhook_down_fails_closed_but_never_in_kube_system() {
    // The shared webhook must keep serving the other tests: stop one of
    // this test's own, registered like the shared one (deploy/'s
    // configurations) for the StatefulSets labelled here.
    let cp = &cluster().cp;
    let tag = format!("down-{}", random_suffix(5));
    let webhook = Webhook::start(cp, &tag, None).unwrap();
    let registration = Registration::only_labelled(&tag);
    webhook.register(cp, &registration).unwrap();
    cp.stop_process(webhook.pid);

    let ns = Ns::fresh("down").await;
    // Compliant, Service stored: the shared webhook allows it, so the
    // error can only be the stopped one's.
    accepts(&ns, &Svc::new("down").yaml());
    let down = Sts::new("down").label(WEBHOOK_LABEL, &tag);
    let out = apply(&ns, &down.yaml(), &[]);
    out.assert_exit(1);
    assert_has(
        &out.stderr,
        r#"failed calling webhook "validate.sts-guard.io""#,
    );

    let kube_system = Ns::existing("kube-system").await;
    let name = format!("sys-{tag}");
    let sys = Sts::new(&name).no_liveness().label(WEBHOOK_LABEL, &tag);
    apply(&kube_system, &sys.yaml(), &[]).assert_exit(0);
    assert!(kube_system.statefulset(&name).await.is_some(), "not stored");

    let names = registration.names();
    cp.kubectl(&["delete", &names[0], &names[1]]).assert_exit(0);
}
