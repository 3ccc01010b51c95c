//! The `sts-guard serve` process itself: readiness, metrics port, policy
//! reload through a ConfigMap-style `..data` symlink swap, certificate
//! reload, and SIGTERM.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use support::control_plane::http_get;
use support::*;

/// `serve` with the certificates in `certs` and the policy file `config`.
fn start(certs: &Path, config: &Path) -> Serve {
    Serve::start(
        certs,
        &[
            "--config",
            config.to_str().unwrap(),
            "--shutdown-delay",
            "200ms",
        ],
    )
}

async fn connect(serve: &Serve, ca: &Path) -> Option<Client> {
    Client::connect(serve.addr, ca).await.ok()
}

/// Ready, asked through a new connector trusting `ca` (no session to resume).
async fn ready(serve: &Serve, ca: &Path) -> bool {
    serve.ready(&tls_connector(ca)).await
}

/// The policy as kubelet mounts a ConfigMap: `policy.yaml` ->
/// `..data/policy.yaml`, `..data` -> `..<version>`.
fn configmap_version(root: &Path, version: &str, policy: &str) {
    mount_version(root, version, &[("policy.yaml", policy.as_bytes())]);
}

/// A serving pair of its own, as kubelet mounts a Secret: `tls.crt` ->
/// `..data/tls.crt`, `..data` -> `..<version>`; the CA that signed it.
fn secret_version(root: &Path, version: &str) -> tempfile::TempDir {
    let issued = tempfile::tempdir().unwrap();
    make_certs(issued.path());
    let read = |f: &str| std::fs::read(issued.path().join(f)).unwrap();
    let (cert, key) = (read("tls.crt"), read("tls.key"));
    mount_version(root, version, &[("tls.crt", &cert), ("tls.key", &key)]);
    issued
}

async fn allowed(serve: &Serve, ca: &Path, review: &serde_json::Value) -> bool {
    let mut c = connect(serve, ca).await.unwrap();
    let (_, body) = c.review("/validate", review).await;
    body["response"]["allowed"] == json!(true)
}

#[tokio::test]
async fn serve_reloads_policy_from_a_configmap_symlink_swap_and_exits_0_on_sigterm() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let ca = certs.path().join("ca.crt");
    let config = tempfile::tempdir().unwrap();
    configmap_version(config.path(), "v1", "mode: enforce\n");
    let mut serve = start(certs.path(), &config.path().join("policy.yaml"));
    assert!(
        wait_until(Duration::from_secs(10), || ready(&serve, &ca)).await,
        "never ready"
    );

    let bad = fixture_without_liveness();
    assert!(!allowed(&serve, &ca, &bad).await, "enforce denies");

    // A broken file keeps the last good policy.
    configmap_version(config.path(), "v2", "mode: [unclosed\n");
    // Then a good one in warn mode is picked up without restart.
    configmap_version(config.path(), "v3", "mode: warn\n");
    assert!(
        wait_until(Duration::from_secs(10), || allowed(&serve, &ca, &bad)).await,
        "warn mode never took effect"
    );

    let (_, metrics) = http_get(serve.metrics_addr, "/metrics").unwrap();
    assert!(
        metrics.contains("sts_guard_admission_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sts_guard_reloads_total{what="policy",result="ok"}"#),
        "{metrics}"
    );

    // SIGTERM: not ready at once, exit 0 after the drain.
    let mut keep_alive = connect(&serve, &ca).await.unwrap();
    serve.sigterm();
    // The signal reaches the server's handler asynchronously: readiness
    // must drop within a moment, on the same keep-alive connection.
    let deadline = std::time::Instant::now() + Duration::from_secs(1);
    let code = loop {
        let (code, _) = keep_alive.get("/readyz").await.unwrap();
        if code == 503 || std::time::Instant::now() >= deadline {
            break code;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(code, 503, "ready after SIGTERM");
    let exited = serve.exited_within(Duration::from_secs(10)).await;
    assert!(exited.is_some(), "did not exit");
    assert_eq!(exited.unwrap().code(), Some(0), "{}", serve.log());
}

#[tokio::test]
async fn serve_picks_up_a_rotated_certificate_from_a_secret_symlink_swap() {
    let root = tempfile::tempdir().unwrap();
    let v1 = secret_version(root.path(), "v1");
    let config = tempfile::tempdir().unwrap();
    std::fs::write(config.path().join("p.yaml"), "").unwrap();
    let serve = start(root.path(), &config.path().join("p.yaml"));
    let ca1 = v1.path().join("ca.crt");
    assert!(wait_until(Duration::from_secs(10), || ready(&serve, &ca1)).await);

    let v2 = secret_version(root.path(), "v2");
    let ca2 = v2.path().join("ca.crt");
    assert!(
        wait_until(Duration::from_secs(10), || ready(&serve, &ca2)).await,
        "new certificate never served"
    );
    // Connections made with the old CA now fail: the old pair is gone.
    assert!(connect(&serve, &ca1).await.is_none());
}
