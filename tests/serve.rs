//! The `sts-guard serve` process itself: readiness, metrics port, policy
//! reload through a ConfigMap-style `..data` symlink swap, certificate
//! reload, and SIGTERM.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::*;

struct Serve {
    child: Child,
    port: u16,
    metrics_port: u16,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, config: &Path) -> Serve {
    let port = free_port();
    let metrics_port = free_port();
    let services =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission/services.yaml");
    let child = Command::new(env!("CARGO_BIN_EXE_sts-guard"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .arg("--cert")
        .arg(dir.join("tls.crt"))
        .arg("--key")
        .arg(dir.join("tls.key"))
        .arg("--config")
        .arg(config)
        .arg("--services-from")
        .arg(services)
        .args(["--reload-interval", "100ms", "--shutdown-delay", "200ms"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Serve {
        child,
        port,
        metrics_port,
    }
}

async fn connect(serve: &Serve, ca: &Path) -> Option<Client> {
    Client::connect(format!("127.0.0.1:{}", serve.port).parse().unwrap(), ca)
        .await
        .ok()
}

async fn ready(serve: &Serve, ca: &Path) -> bool {
    match connect(serve, ca).await {
        Some(mut c) => matches!(c.request("GET", "/readyz", Vec::new()).await, Ok((200, _))),
        None => false,
    }
}

/// Lays out a folder the way kubelet mounts a ConfigMap: `policy.yaml` ->
/// `..data/policy.yaml`, `..data` -> `..<version>`.
fn configmap_version(root: &Path, version: &str, policy: &str) {
    let dir = root.join(format!("..{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("policy.yaml"), policy).unwrap();
    let tmp = root.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, root.join("..data")).unwrap();
    let link = root.join("policy.yaml");
    if std::fs::symlink_metadata(&link).is_err() {
        std::os::unix::fs::symlink("..data/policy.yaml", &link).unwrap();
    }
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
    let serve = start(certs.path(), &config.path().join("policy.yaml"));
    assert!(
        wait_until(Duration::from_secs(10), || ready(&serve, &ca)).await,
        "never ready"
    );

    let mut bad = fixture();
    bad["request"]["object"]["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("livenessProbe");
    assert!(!allowed(&serve, &ca, &bad).await, "enforce denies");

    // A broken file keeps the last good policy.
    configmap_version(config.path(), "v2", "mode: [unclosed\n");
    // Then a good one in warn mode is picked up without restart.
    configmap_version(config.path(), "v3", "mode: warn\n");
    assert!(
        wait_until(Duration::from_secs(10), || allowed(&serve, &ca, &bad)).await,
        "warn mode never took effect"
    );

    let metrics_url = format!("127.0.0.1:{}", serve.metrics_port);
    let metrics = http_get(&metrics_url, "/metrics").await;
    assert!(
        metrics.contains("sts_guard_admission_requests_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"sts_guard_reloads_total{what="policy",result="ok"}"#),
        "{metrics}"
    );

    // SIGTERM: not ready at once, exit 0 after the drain.
    let mut serve = serve;
    let mut keep_alive = connect(&serve, &ca).await.unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &serve.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (code, _) = keep_alive
        .request("GET", "/readyz", Vec::new())
        .await
        .unwrap();
    assert_eq!(code, 503, "ready after SIGTERM");
    let exited = wait_until(Duration::from_secs(10), || {
        let done = serve.child.try_wait().unwrap().is_some();
        async move { done }
    })
    .await;
    assert!(exited, "did not exit");
    assert_eq!(serve.child.wait().unwrap().code(), Some(0));
}

#[tokio::test]
async fn serve_picks_up_a_rotated_certificate_from_a_secret_symlink_swap() {
    let root = tempfile::tempdir().unwrap();
    let v1 = root.path().join("..v1");
    make_certs(&v1);
    std::os::unix::fs::symlink("..v1", root.path().join("..data")).unwrap();
    for f in ["tls.crt", "tls.key"] {
        std::os::unix::fs::symlink(format!("..data/{f}"), root.path().join(f)).unwrap();
    }
    let config = tempfile::tempdir().unwrap();
    std::fs::write(config.path().join("p.yaml"), "").unwrap();
    let serve = start(root.path(), &config.path().join("p.yaml"));
    let ca1 = v1.join("ca.crt");
    assert!(wait_until(Duration::from_secs(10), || ready(&serve, &ca1)).await);

    let v2 = root.path().join("..v2");
    make_certs(&v2);
    let tmp = root.path().join("..data_tmp");
    std::os::unix::fs::symlink("..v2", &tmp).unwrap();
    std::fs::rename(&tmp, root.path().join("..data")).unwrap();
    let ca2 = v2.join("ca.crt");
    assert!(
        wait_until(Duration::from_secs(10), || ready(&serve, &ca2)).await,
        "new certificate never served"
    );
    // Connections made with the old CA now fail: the old pair is gone.
    assert!(connect(&serve, &ca1).await.is_none());
}

/// Plain HTTP GET on the metrics port.
async fn http_get(addr: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    out
}
