//! The mutating webhook: `sts-guard.io/parallel` and
//! `sts-guard.io/startup-probe`, stored as asked, idempotent, and never in
//! the way of later updates (podManagementPolicy is immutable).

use crate::{Ns, Sts, Svc, accepts, apply, assert_has, file, kubectl};

/// A headless Service and a StatefulSet asking for both mutations.
fn mutated(replicas: u32) -> String {
    file(&[
        Svc::new("queue").yaml(),
        Sts::new("queue")
            .annotate("sts-guard.io/parallel", "true")
            .annotate("sts-guard.io/startup-probe", "true")
            .annotate("sts-guard.io/startup-timeout", "2m")
            .replicas(replicas)
            .yaml(),
    ])
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn parallel_and_startup_probe_annotations_are_applied() {
    let ns = Ns::fresh("mutate").await;
    accepts(&ns, &mutated(1));
    let sts = ns.statefulset("queue").await.expect("stored");
    let spec = sts.spec.unwrap();
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    // Each container got a startup probe copying its liveness check,
    // allowing 2m (12 x the 10 s period) before a restart.
    let containers = spec.template.spec.unwrap().containers;
    let app = containers[0]
        .startup_probe
        .as_ref()
        .expect("app startupProbe");
    assert_eq!(
        app.http_get.as_ref().and_then(|h| h.path.as_deref()),
        Some("/healthz"),
        "{app:?}"
    );
    assert_eq!(app.failure_threshold, Some(12), "{app:?}");
    let sidecar = containers[1]
        .startup_probe
        .as_ref()
        .expect("sidecar startupProbe");
    assert_eq!(
        sidecar.exec.as_ref().and_then(|e| e.command.clone()),
        Some(vec!["cat".to_string(), "/tmp/ok".to_string()]),
        "{sidecar:?}"
    );
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn reapplying_a_mutated_statefulset_changes_nothing() {
    let ns = Ns::fresh("mutate-again").await;
    accepts(&ns, &mutated(1));
    let generation = |sts: Option<k8s_openapi::api::apps::v1::StatefulSet>| {
        sts.expect("stored").metadata.generation
    };
    let before = generation(ns.statefulset("queue").await);
    let out = accepts(&ns, &mutated(1));
    assert_has(&out.stdout, "statefulset.apps/queue unchanged");
    assert_eq!(generation(ns.statefulset("queue").await), before);
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn mutated_statefulset_can_be_scaled_and_updated() {
    let ns = Ns::fresh("mutate-update").await;
    accepts(&ns, &mutated(1));
    kubectl(&["scale", "sts", "-n", &ns.name, "queue", "--replicas=3"]).assert_exit(0);
    let replicas = ns
        .statefulset("queue")
        .await
        .unwrap()
        .spec
        .unwrap()
        .replicas;
    assert_eq!(replicas, Some(3));
    // An UPDATE of the annotated StatefulSet: not broken by the mutation
    // of the immutable podManagementPolicy.
    apply(&ns, &mutated(2), &[]).assert_exit(0);
}
