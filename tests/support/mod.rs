//! What the tests share, in one place: the admission fixture, the router
//! without a socket ([`router_post`] and friends), kubelet's `..data`
//! symlink swap, and polling; `client` ([`Client`], the one keep-alive TLS
//! client, connectors, raw streams) and `server` ([`TestServer`] in-process,
//! [`Serve`] the `sts-guard serve` binary). `control_plane` and `webhook`: a
//! real kube-apiserver + etcd with sts-guard registered, for the end-to-end
//! and live-cluster tests; `demo`, the `--keep` demo's walkthrough.
//!
//! Each test binary includes this with `mod support;` and uses a part of
//! it, hence `dead_code` allowed (and unused re-exports below).
#![allow(dead_code)]

pub mod client;
pub mod control_plane;
pub mod demo;
pub mod proxy;
pub mod server;
pub mod webhook;

#[allow(unused_imports)]
pub use client::{
    Client, SendError, is_ready, post_head, read_to_close, root_store, tls_connect, tls_connector,
};
#[allow(unused_imports)]
pub use server::{Serve, TestServer};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use base64::Engine as _;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use sts_guard::lookup::{LookupSource, Objects};
use sts_guard::policy::Policy;
use sts_guard::webhook::metrics::Metrics;
use sts_guard::webhook::routes::{App, router};

pub const CREATE_WEB: &str = include_str!("../fixtures/admission/create-web.json");
pub const UID: &str = "7f0b2a8e-3c1d-4f5e-9a6b-2c3d4e5f6a7b";

/// The JSON patch of an AdmissionReview `response`, from its base64 (as
/// the API server encodes a `[]byte`).
pub fn patch_of(response: &Value) -> Vec<u8> {
    let base64 = response["patch"].as_str().expect("a base64 patch");
    base64::engine::general_purpose::STANDARD
        .decode(base64)
        .expect("base64")
}

/// tests/fixtures/admission/create-web.json: the CREATE of shop/web, which
/// every rule allows.
pub fn fixture() -> Value {
    serde_json::from_str(CREATE_WEB).unwrap()
}

/// The fixture with the first container's livenessProbe removed: denied
/// in enforce mode, allowed with a warning in warn mode.
pub fn fixture_without_liveness() -> Value {
    let mut review = fixture();
    review["request"]["object"]["spec"]["template"]["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("livenessProbe");
    review
}

/// tests/fixtures/admission/services.yaml: the Services the fixture's
/// StatefulSet is checked against.
pub fn services_yaml() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission/services.yaml")
}

pub fn services() -> Objects {
    sts_guard::manifest::read_lookups(&[services_yaml()]).unwrap()
}

/// Writes a CA and a serving certificate for localhost/127.0.0.1.
pub fn make_certs(dir: &Path) {
    sts_guard::commands::certs::run(
        dir,
        &["localhost".to_string()],
        &["127.0.0.1".parse().unwrap()],
        None,
    )
    .unwrap();
}

/// The webhook's routes under `policy` (YAML; "" is the default, enforce),
/// Services from [`services`], metrics of their own.
pub fn app(policy: &str) -> Arc<App> {
    App::new(
        Policy::from_yaml(policy, "test").unwrap(),
        LookupSource::Static(Arc::new(services())),
        Metrics::new(),
    )
}

/// One request through the router, no socket: status and body.
pub async fn router_send(app: &Arc<App>, request: Request<Body>) -> (u16, Vec<u8>) {
    let response = router(app.clone()).oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body.to_vec())
}

/// POSTs `body` as JSON, as the API server does: status and body.
pub async fn router_post(app: &Arc<App>, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap();
    router_send(app, request).await
}

pub async fn router_get(app: &Arc<App>, path: &str) -> (u16, Vec<u8>) {
    router_send(app, Request::get(path).body(Body::empty()).unwrap()).await
}

/// POSTs `review`: status and the answer, which must be JSON.
pub async fn router_review(app: &Arc<App>, path: &str, review: &Value) -> (u16, Value) {
    let (status, body) = router_post(app, path, serde_json::to_vec(review).unwrap()).await;
    let answer = serde_json::from_slice(&body).unwrap_or_else(|e| {
        panic!(
            "{path}: {status}, not JSON ({e}): {:.500}",
            String::from_utf8_lossy(&body)
        )
    });
    (status, answer)
}

/// A TCP server on a free loopback port: `serve` runs, in a task of its
/// own, for each connection accepted. Its address.
pub async fn serve_tcp<F, Fut>(serve: F) -> std::net::SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            if let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(serve(tcp));
            }
        }
    });
    addr
}

/// Points `root/..data` at `root/..<version>` the way kubelet does: a new
/// symlink renamed over the old one.
pub fn swap_symlink(root: &Path, version: &str) {
    let tmp = root.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).unwrap();
    std::fs::rename(&tmp, root.join("..data")).unwrap();
}

/// Mounts `files` at `root` the way kubelet mounts (and updates) a
/// ConfigMap or Secret: written into `..<version>`, `..data` swapped to it
/// ([`swap_symlink`]), and `<name> -> ..data/<name>` for each.
pub fn mount_version(root: &Path, version: &str, files: &[(&str, &[u8])]) {
    let dir = root.join(format!("..{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    swap_symlink(root, version);
    for (name, _) in files {
        let link = root.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
}

/// Polls `check` every 20 ms until it holds or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
