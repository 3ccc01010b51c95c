//! The harness itself (tests/support/control_plane.rs): the API server
//! stores, defaults and dry-runs StatefulSets like a real cluster's, and
//! the controllers, the scheduler and kwok's fake nodes act on them, with
//! no sts-guard involved (the namespace is one deploy/'s namespaceSelector
//! excludes); nothing is sent off the machine.
//!
//! The webhook wiring (a loopback webhook called by URL + caBundle, its
//! denial shown by kubectl, `dryRun: true` sent on `--dry-run=server`,
//! warnings printed as `Warning:`) is proved by sts-guard's own scenarios:
//! `admission::missing_probes_are_denied_naming_each_rule_and_container`
//! and `dry_run::dry_run_missing_service_warns` (whose note is written only
//! when the request says `dryRun: true`).

use crate::support::control_plane::POD_CIDR;
use crate::{Ns, Sts, Svc, accepts, apply, assert_has, file, kubectl};

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn harness_stores_defaults_and_dry_runs_and_runs_pods_like_a_real_cluster() {
    let out = kubectl(&["get", "--raw", "/version"]);
    out.assert_exit(0);
    let version: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let git_version = version["gitVersion"].as_str().unwrap_or_default();
    assert!(
        git_version.starts_with("v1."),
        "unexpected server version {git_version:?}\n{out}"
    );

    let ns = Ns::ignored("harness").await;
    // Sts leaves podManagementPolicy out: the server must default it.
    let web = |name: &str| file(&[Svc::new(name).yaml(), Sts::new(name).yaml()]);
    accepts(&ns, &web("web"));
    let stored = ns.statefulset("web").await.expect("web stored");
    assert_eq!(
        stored.spec.unwrap().pod_management_policy.as_deref(),
        Some("OrderedReady"),
        "podManagementPolicy not defaulted"
    );

    // Server-side dry run: admitted and defaulted by the server, never
    // stored (kubectl prints the applied objects as one List).
    let out = apply(
        &ns,
        &web("web2"),
        &[
            "--dry-run=server",
            "-o",
            "jsonpath={range .items[*]}{.kind}/{.metadata.name}={.spec.podManagementPolicy};{end}",
        ],
    );
    out.assert_exit(0);
    assert_has(&out.stdout, "StatefulSet/web2=OrderedReady;");
    let names = kubectl(&["get", "sts,svc", "-n", &ns.name, "-o", "name"]);
    names.assert_exit(0);
    let mut names: Vec<&str> = names.stdout.lines().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["service/web", "statefulset.apps/web"],
        "after the dry-run, stored objects differ"
    );

    // The StatefulSet controller makes its pod, the scheduler puts it on a
    // fake node, kwok starts it and reports it ready, with an address of
    // the simulated pod network.
    kubectl(&[
        "wait",
        "-n",
        &ns.name,
        "--for=condition=Ready",
        "pod/web-0",
        "--timeout=90s",
    ])
    .assert_exit(0);
    let out = kubectl(&[
        "get",
        "pod",
        "-n",
        &ns.name,
        "web-0",
        "-o",
        "jsonpath={.spec.nodeName} {.status.podIP} {.spec.serviceAccountName}",
    ]);
    out.assert_exit(0);
    let fields: Vec<&str> = out.stdout.split(' ').collect();
    assert!(fields[0].starts_with("kwok-node-"), "{out}");
    let prefix = POD_CIDR.split('.').take(2).collect::<Vec<_>>().join(".");
    assert!(fields[1].starts_with(&format!("{prefix}.")), "{out}");
    assert_eq!(fields[2], "default", "{out}");

    // Nothing leaves the machine: the API server will not proxy to a pod
    // (as `kubectl port-forward` and logs do) at a loopback address; were
    // one not loopback, the egress selector would end the connection at a
    // socket nobody listens on.
    let out = kubectl(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/{}/pods/web-0:8000/proxy/", ns.name),
    ]);
    assert_ne!(out.code, 0, "{out}");
    assert_has(&out.stderr, "address not allowed");

    // The namespace controller empties and removes a deleted namespace.
    kubectl(&["delete", "namespace", &ns.name, "--wait", "--timeout=90s"]).assert_exit(0);
}
