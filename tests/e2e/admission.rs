//! Validation on CREATE: probes and the headless Service.

use crate::{Ns, Sts, Svc, accepts, assert_has, assert_lacks, file, rejects};

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn compliant_statefulset_with_its_headless_service_is_created() {
    let ns = Ns::fresh("ok").await;
    // One file, Service first, as users write it.
    accepts(
        &ns,
        &file(&[Svc::new("web").yaml(), Sts::new("web").yaml()]),
    );
    assert!(ns.statefulset("web").await.is_some(), "not stored");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn missing_probes_are_denied_naming_each_rule_and_container() {
    let ns = Ns::fresh("probes").await;
    let err = rejects(&ns, &Sts::new("web").no_liveness().no_readiness().yaml());
    assert_has(
        &err,
        &format!(
            r#"admission webhook "validate.sts-guard.io" denied the request: statefulset {}/web has 3 problems:"#,
            ns.name
        ),
    );
    // Each rule id and container, with its fix.
    assert_has(
        &err,
        r#"[liveness-probe] spec.template.spec.containers[0] "app" has no livenessProbe: add a livenessProbe"#,
    );
    assert_has(
        &err,
        r#"[readiness-probe] spec.template.spec.containers[0] "app" has no readinessProbe"#,
    );
    assert_has(
        &err,
        r#"[headless-service] spec.serviceName "web" names no Service"#,
    );
    // The sidecar has both probes: not named.
    assert_lacks(&err, r#""sidecar""#);
    assert!(ns.statefulset("web").await.is_none(), "stored anyway");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn service_name_naming_a_cluster_ip_service_is_denied() {
    let ns = Ns::fresh("svc-clusterip").await;
    accepts(&ns, &Svc::new("clusterip").cluster_ip().yaml());
    let err = rejects(&ns, &Sts::new("clusterip").yaml());
    assert_has(&err, "[headless-service]");
    assert_has(&err, "is not headless (clusterIP: 10.");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn service_name_naming_a_service_whose_selector_misses_the_pods_is_denied() {
    let ns = Ns::fresh("svc-selector").await;
    accepts(&ns, &Svc::new("mismatch").selector("app", "other").yaml());
    let err = rejects(&ns, &Sts::new("mismatch").yaml());
    assert_has(
        &err,
        "selects app=other which the pod template does not carry",
    );
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn service_name_naming_no_service_is_denied() {
    let ns = Ns::fresh("svc-none").await;
    let err = rejects(&ns, &Sts::new("lonely").yaml());
    assert_has(
        &err,
        &format!(r#""lonely" names no Service in namespace "{}""#, ns.name),
    );
}
