//! What production does to a webhook, tested on the real `sts-guard serve`
//! process where it matters:
//! - certificate rotation (kubelet's `..data` symlink swap, in-place
//!   rewrites, half-written and mismatched pairs) under steady load;
//! - SIGTERM under steady load;
//! - the API server hanging, then down, then back (through a proxy the
//!   test pauses), for the Service lookup and its watch cache;
//! - TLS versions and suites, `--client-ca`, what reaches the log, and a
//!   read-only filesystem.
//!
//! Figures (requests served, failures, times) are printed; run with
//! `cargo test --test reliability -- --nocapture` to see them.

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use sts_guard::lookup::{ClusterCache, LookupPath, LookupSource, ServiceState, Services};
use sts_guard::policy::Policy;
use sts_guard::webhook::Limits;
use sts_guard::webhook::metrics::Metrics;
use sts_guard::webhook::routes::App;
use support::proxy::{Network, Proxy};
use support::*;

// ---------------------------------------------------------------------------
// A load client that tells "never sent" from "sent and failed"

/// A connector trusting `ca` that presents the client certificate
/// `cert` (with `key`), as the API server does with `--client-ca`.
fn client_auth_connector(ca: &Path, cert: &Path, key: &Path) -> TlsConnector {
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(root_store(ca))
        .with_client_auth_cert(
            CertificateDer::pem_file_iter(cert)
                .unwrap()
                .map(Result::unwrap)
                .collect(),
            PrivateKeyDer::from_pem_file(key).unwrap(),
        )
        .unwrap();
    TlsConnector::from(Arc::new(config))
}

/// Without session resumption: a resumed TLS session carries the
/// certificate of the session it resumes, so only a full handshake shows
/// which certificate the server presents now.
fn probe_connector(bundle: &Path) -> TlsConnector {
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(root_store(bundle))
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    TlsConnector::from(Arc::new(config))
}

/// What became of one request.
#[derive(Debug)]
enum Outcome {
    /// 200 with the request's uid.
    Ok,
    /// Never written: the connection was already closing (keep-alive race)
    /// or could not be opened. A client sends it again; not a failure.
    NotSent(String),
    /// Written, and no right answer came back.
    Failed(String),
}

/// POSTs a review whose uid is `uid` over `client`.
async fn review(client: &mut Client, body: Bytes, uid: &str) -> Outcome {
    match client.request("POST", "/validate", body).await {
        Ok((status, b)) => {
            let v: Value = serde_json::from_slice(&b).unwrap_or(Value::Null);
            if status == 200 && v["response"]["uid"] == uid {
                Outcome::Ok
            } else {
                Outcome::Failed(format!(
                    "status {status}: {:.200}",
                    String::from_utf8_lossy(&b)
                ))
            }
        }
        Err(e @ SendError::NotSent(_)) => Outcome::NotSent(e.to_string()),
        Err(e @ SendError::NoAnswer(_)) => Outcome::Failed(e.to_string()),
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    not_sent: AtomicU64,
    failed: AtomicU64,
    /// New connections that could not be opened (refused, handshake failed).
    connect_failed: AtomicU64,
    failures: Mutex<Vec<String>>,
    not_sent_why: Mutex<BTreeMap<String, u64>>,
    stop: AtomicBool,
}

impl Tally {
    fn record(&self, outcome: Outcome) -> bool {
        match outcome {
            Outcome::Ok => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                true
            }
            Outcome::NotSent(why) => {
                self.not_sent.fetch_add(1, Ordering::Relaxed);
                *self.not_sent_why.lock().unwrap().entry(why).or_default() += 1;
                false
            }
            Outcome::Failed(why) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.failures.lock().unwrap().push(why);
                false
            }
        }
    }

    fn summary(&self) -> String {
        format!(
            "{} ok, {} failed, {} not sent (connection closing: {:?}), {} connections not opened",
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.not_sent.load(Ordering::Relaxed),
            self.not_sent_why.lock().unwrap(),
            self.connect_failed.load(Ordering::Relaxed),
        )
    }
}

fn review_body(uid: &str) -> Bytes {
    let mut r = fixture();
    r["request"]["uid"] = json!(uid);
    Bytes::from(serde_json::to_vec(&r).unwrap())
}

/// Reviews over one keep-alive connection (reopened when the server closes
/// it), one every `pause`, until told to stop or the server is gone.
async fn keep_alive_worker(
    id: usize,
    addr: SocketAddr,
    connector: TlsConnector,
    tally: Arc<Tally>,
    pause: Duration,
) {
    let mut conn: Option<Client> = None;
    let mut n = 0u64;
    while !tally.stop.load(Ordering::Relaxed) {
        if conn.is_none() {
            match Client::connect_with(addr, &connector).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    tally.connect_failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            }
        }
        n += 1;
        let uid = format!("ka-{id}-{n}");
        let outcome = review(conn.as_mut().unwrap(), review_body(&uid), &uid).await;
        if !tally.record(outcome) {
            conn = None;
        }
        tokio::time::sleep(pause).await;
    }
}

/// One review per new connection, one every `pause`.
async fn new_connection_worker(
    id: usize,
    addr: SocketAddr,
    connector: TlsConnector,
    tally: Arc<Tally>,
    pause: Duration,
) {
    let mut n = 0u64;
    while !tally.stop.load(Ordering::Relaxed) {
        n += 1;
        let uid = format!("new-{id}-{n}");
        match Client::connect_with(addr, &connector).await {
            Ok(mut c) => {
                tally.record(review(&mut c, review_body(&uid), &uid).await);
            }
            Err(_) => {
                tally.connect_failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(pause).await;
    }
}

fn start_load(
    addr: SocketAddr,
    connector: &TlsConnector,
    keep_alive: usize,
    new_conns: usize,
) -> (Arc<Tally>, Vec<tokio::task::JoinHandle<()>>) {
    let tally = Arc::new(Tally::default());
    let pause = Duration::from_millis(10);
    let mut tasks = Vec::new();
    for i in 0..keep_alive {
        tasks.push(tokio::spawn(keep_alive_worker(
            i,
            addr,
            connector.clone(),
            tally.clone(),
            pause,
        )));
    }
    for i in 0..new_conns {
        tasks.push(tokio::spawn(new_connection_worker(
            i,
            addr,
            connector.clone(),
            tally.clone(),
            pause,
        )));
    }
    (tally, tasks)
}

async fn stop_load(tally: &Tally, tasks: Vec<tokio::task::JoinHandle<()>>) {
    tally.stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("load worker stopped")
            .unwrap();
    }
}

// ---------------------------------------------------------------------------
// Certificate rotation under load

fn der_of(cert_pem: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(cert_pem)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

/// How long until a new connection is served `want`; panics after 10 s.
async fn new_connections_get(serve: &Serve, connector: &TlsConnector, want: &[u8]) -> Duration {
    let addr = serve.addr;
    let started = Instant::now();
    loop {
        if let Ok(c) = Client::connect_with(addr, connector).await
            && c.peer_cert == want
        {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "new certificate not served after 10 s; log:\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts new connections keep getting `want` for `period`.
async fn new_connections_keep(
    addr: SocketAddr,
    connector: &TlsConnector,
    want: &[u8],
    period: Duration,
) {
    let started = Instant::now();
    while started.elapsed() < period {
        let c = Client::connect_with(addr, connector)
            .await
            .expect("connects");
        assert!(c.peer_cert == want, "a bad pair was swapped in");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotation_under_steady_load_fails_no_request() {
    // Three generations of CA and serving pair; clients trust all three CAs,
    // as an API server's caBundle does while a CA rotates.
    let staging = tempfile::tempdir().unwrap();
    let mut bundle = String::new();
    for v in ["v1", "v2", "v3"] {
        make_certs(&staging.path().join(v));
        bundle.push_str(&std::fs::read_to_string(staging.path().join(v).join("ca.crt")).unwrap());
    }
    let bundle_path = staging.path().join("bundle.crt");
    std::fs::write(&bundle_path, bundle).unwrap();
    let version_file = |v: &str, f: &str| staging.path().join(v).join(f);
    let pair = |v: &str| ["tls.crt", "tls.key"].map(|f| std::fs::read(version_file(v, f)).unwrap());
    // The load resumes TLS sessions, as Go's client does; the probes that
    // look at the served certificate do full handshakes.
    let connector = tls_connector(&bundle_path);
    let probe = probe_connector(&bundle_path);

    // A mounted Secret: tls.crt -> ..data/tls.crt, ..data -> ..v1.
    let root = tempfile::tempdir().unwrap();
    let mount = root.path();
    let [cert, key] = pair("v1");
    mount_version(mount, "v1", &[("tls.crt", &cert), ("tls.key", &key)]);

    let serve = Serve::start(mount, &[]);
    serve.wait_ready(&connector).await;
    let (tally, tasks) = start_load(serve.addr, &connector, 4, 2);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();

    // 1. kubelet's atomic symlink swap.
    let [cert, key] = pair("v2");
    mount_version(mount, "v2", &[("tls.crt", &cert), ("tls.key", &key)]);
    let swap_took =
        new_connections_get(&serve, &probe, &der_of(&version_file("v2", "tls.crt"))).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 2. A half-written certificate keeps the last good pair.
    let v2 = der_of(&version_file("v2", "tls.crt"));
    let v3_cert = std::fs::read(version_file("v3", "tls.crt")).unwrap();
    let v3_key = std::fs::read(version_file("v3", "tls.key")).unwrap();
    std::fs::write(mount.join("tls.crt"), &v3_cert[..v3_cert.len() / 2]).unwrap();
    new_connections_keep(serve.addr, &probe, &v2, Duration::from_millis(700)).await;
    // 3. A complete certificate with the old key (a mismatched pair) too.
    std::fs::write(mount.join("tls.crt"), &v3_cert).unwrap();
    new_connections_keep(serve.addr, &probe, &v2, Duration::from_millis(700)).await;
    // 4. Then the key, rewritten in place: the pair is whole again.
    std::fs::write(mount.join("tls.key"), &v3_key).unwrap();
    let in_place_took =
        new_connections_get(&serve, &probe, &der_of(&version_file("v3", "tls.crt"))).await;

    // Some more load on the new pair.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rotation = started.elapsed();
    stop_load(&tally, tasks).await;

    let log = serve.log();
    println!(
        "rotation under load ({rotation:.1?}): {}; symlink swap served after {swap_took:.2?}, in-place rewrite after {in_place_took:.2?}",
        tally.summary()
    );
    let failures = tally.failures.lock().unwrap().clone();
    assert_eq!(tally.failed.load(Ordering::Relaxed), 0, "{failures:#?}");
    assert_eq!(
        tally.connect_failed.load(Ordering::Relaxed),
        0,
        "new connections failed during rotation"
    );
    assert!(
        tally.ok.load(Ordering::Relaxed) > 200,
        "{}",
        tally.summary()
    );
    assert!(swap_took < Duration::from_secs(3), "{swap_took:?}");
    assert!(in_place_took < Duration::from_secs(3), "{in_place_took:?}");
    // The log says why each bad state was refused.
    assert!(
        log.contains("holds no PEM certificate") || log.contains("no usable PEM"),
        "{log}"
    );
    assert!(log.contains("do not belong together"), "{log}");
    assert!(log.contains("keeping the last good one"), "{log}");
    assert!(log.matches(r#""what":"certificate""#).count() >= 4, "{log}");
}

// ---------------------------------------------------------------------------
// SIGTERM under load

/// A review whose head is sent at once and whose body trickles in: `pieces`
/// pieces, `gap` apart. The raw answer.
async fn trickled_review(
    addr: SocketAddr,
    connector: TlsConnector,
    uid: String,
    pieces: usize,
    gap: Duration,
) -> Result<String, String> {
    let mut tls = tls_connect(addr, &connector)
        .await
        .map_err(|e| e.to_string())?;
    let body = review_body(&uid);
    tls.write_all(post_head(body.len(), "").as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    tls.flush().await.map_err(|e| e.to_string())?;
    for piece in body.chunks(body.len().div_ceil(pieces)) {
        tokio::time::sleep(gap).await;
        tls.write_all(piece)
            .await
            .map_err(|e| format!("writing body: {e}"))?;
        tls.flush().await.map_err(|e| e.to_string())?;
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(15), tls.read_to_end(&mut answer))
        .await
        .map_err(|_| "no answer in 15 s".to_string())?
        .map_err(|e| format!("reading answer: {e}"))?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_completes_every_sent_request_and_exits_0() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let connector = tls_connector(&certs.path().join("ca.crt"));
    let delay = Duration::from_secs(1);
    let grace = Duration::from_secs(10);
    let mut serve = Serve::start(
        certs.path(),
        &["--shutdown-delay", "1s", "--shutdown-timeout", "10s"],
    );
    serve.wait_ready(&connector).await;
    let (tally, tasks) = start_load(serve.addr, &connector, 4, 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = tally.ok.load(Ordering::Relaxed);

    let term_at = Instant::now();
    serve.sigterm();
    // Not ready at once (the load keeps being served meanwhile).
    let mut probe = Client::connect_with(serve.addr, &connector).await.unwrap();
    assert_eq!(probe.get("/readyz").await.unwrap().0, 503);
    let not_ready_after = term_at.elapsed();

    // Reviews in flight when the listener closes (at `delay`): heads sent
    // 0.3 s after SIGTERM, bodies trickling in until ~1.8 s.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let in_flight: Vec<_> = (0..3)
        .map(|i| {
            tokio::spawn(trickled_review(
                serve.addr,
                connector.clone(),
                format!("in-flight-{i}"),
                6,
                Duration::from_millis(250),
            ))
        })
        .collect();

    let code = serve
        .exited_within(delay + grace + Duration::from_secs(5))
        .await
        .and_then(|status| status.code());
    let shutdown_took = term_at.elapsed();
    let after_term = tally.ok.load(Ordering::Relaxed) - before;
    stop_load(&tally, tasks).await;

    let mut in_flight_ok = 0;
    for (i, t) in in_flight.into_iter().enumerate() {
        let answer = t
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("in-flight-{i}: {e}"));
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "in-flight-{i}: {answer}"
        );
        assert!(answer.contains(&format!("in-flight-{i}")), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "drain answers close the connection: {answer}"
        );
        in_flight_ok += 1;
    }
    println!(
        "shutdown under load: not ready {not_ready_after:.2?} after SIGTERM, exited {code:?} after {shutdown_took:.2?} \
         (delay {delay:?}); {after_term} reviews served after SIGTERM, {in_flight_ok} trickled reviews spanning the close answered; {}",
        tally.summary()
    );
    assert_eq!(code, Some(0), "exit code; log:\n{}", serve.log());
    assert!(shutdown_took < delay + grace, "{shutdown_took:?}");
    assert!(
        shutdown_took >= delay,
        "stopped before the delay: {shutdown_took:?}"
    );
    let failures = tally.failures.lock().unwrap().clone();
    assert_eq!(
        tally.failed.load(Ordering::Relaxed),
        0,
        "sent requests failed: {failures:#?}"
    );
    assert!(after_term > 20, "load served during the drain delay");
    let log = serve.log();
    assert!(log.contains("shutdown: not ready; draining"), "{log}");
    assert!(log.contains("shutdown complete"), "{log}");
}

// ---------------------------------------------------------------------------
// API server trouble: a fake API server behind a proxy the test controls

type ApiBody = BoxBody<Bytes, Infallible>;

#[derive(Default)]
struct FakeApi {
    /// (namespace, name) -> Service JSON
    services: BTreeMap<(String, String), Value>,
    resource_version: u64,
    /// (resourceVersion, watch event line)
    events: Vec<(u64, Bytes)>,
    watchers: Vec<futures::channel::mpsc::UnboundedSender<Result<Frame<Bytes>, Infallible>>>,
}

fn headless_service(namespace: &str, name: &str, rv: u64) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "resourceVersion": rv.to_string(), "uid": format!("svc-{name}")},
        "spec": {"clusterIP": "None", "selector": {"app.kubernetes.io/name": "web"}, "ports": [{"port": 80}]}
    })
}

impl FakeApi {
    fn add(&mut self, namespace: &str, name: &str) {
        self.resource_version += 1;
        let rv = self.resource_version;
        let svc = headless_service(namespace, name, rv);
        let mut line = serde_json::to_vec(&json!({"type": "ADDED", "object": svc})).unwrap();
        line.push(b'\n');
        let line = Bytes::from(line);
        self.events.push((rv, line.clone()));
        self.watchers
            .retain(|w| w.unbounded_send(Ok(Frame::data(line.clone()))).is_ok());
        self.services
            .insert((namespace.to_string(), name.to_string()), svc);
    }

    fn answer(&mut self, req: &hyper::Request<hyper::body::Incoming>) -> hyper::Response<ApiBody> {
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let json_response = |status: u16, v: Value| {
            hyper::Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(serde_json::to_vec(&v).unwrap())).boxed())
                .unwrap()
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        match parts.as_slice() {
            ["api", "v1", "services"]
                if query.contains("watch=true") || query.contains("watch=1") =>
            {
                let since: u64 = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("resourceVersion="))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let (tx, rx) = futures::channel::mpsc::unbounded();
                for (rv, line) in &self.events {
                    if *rv > since {
                        let _ = tx.unbounded_send(Ok(Frame::data(line.clone())));
                    }
                }
                self.watchers.push(tx);
                hyper::Response::builder()
                    .header("content-type", "application/json")
                    .body(StreamBody::new(rx).boxed())
                    .unwrap()
            }
            ["api", "v1", "services"] => json_response(
                200,
                json!({
                    "apiVersion": "v1", "kind": "ServiceList",
                    "metadata": {"resourceVersion": self.resource_version.to_string()},
                    "items": self.services.values().collect::<Vec<_>>(),
                }),
            ),
            ["api", "v1", "namespaces", ns, "services", name] => {
                match self.services.get(&(ns.to_string(), name.to_string())) {
                    Some(svc) => json_response(200, svc.clone()),
                    None => json_response(
                        404,
                        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                               "reason": "NotFound", "code": 404,
                               "message": format!("services \"{name}\" not found")}),
                    ),
                }
            }
            // One PodDisruptionBudget (the fixture's pods), and a watch that
            // stays open with nothing more to say: cached, so budgets cost
            // no API call while the API server is in trouble.
            ["apis", "policy", "v1", "poddisruptionbudgets"]
                if query.contains("watch=true") || query.contains("watch=1") =>
            {
                let (tx, rx) = futures::channel::mpsc::unbounded();
                self.watchers.push(tx);
                hyper::Response::builder()
                    .header("content-type", "application/json")
                    .body(StreamBody::new(rx).boxed())
                    .unwrap()
            }
            ["apis", "policy", "v1", "poddisruptionbudgets"] => json_response(
                200,
                json!({
                    "apiVersion": "policy/v1", "kind": "PodDisruptionBudgetList",
                    "metadata": {"resourceVersion": self.resource_version.to_string()},
                    "items": [{
                        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                        "metadata": {"name": "web", "namespace": "shop", "resourceVersion": "1"},
                        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "web"}}},
                    }],
                }),
            ),
            _ => json_response(404, json!({"kind": "Status", "code": 404})),
        }
    }
}

async fn start_fake_api(api: Arc<Mutex<FakeApi>>) -> SocketAddr {
    serve_tcp(move |tcp| {
        let api = api.clone();
        async move {
            let service = hyper::service::service_fn(move |req| {
                let response = api.lock().unwrap().answer(&req);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        }
    })
    .await
}

fn statefulset_review(service_name: &str) -> Value {
    let mut r = fixture();
    r["request"]["object"]["spec"]["serviceName"] = json!(service_name);
    r
}

async fn validate(app: &Arc<App>, review: Value) -> Value {
    router_review(app, "/validate", &review).await.1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_trouble_gets_bounded_lookups_and_the_cache_recovers_by_itself() {
    sts_guard::install_crypto_provider();
    let api = Arc::new(Mutex::new(FakeApi::default()));
    api.lock().unwrap().add("shop", "web");
    let api_addr = start_fake_api(api.clone()).await;
    let network = Proxy::start(api_addr);
    let proxy = network.addr;

    let mut config = kube::Config::new(format!("http://{proxy}").parse().unwrap());
    config.connect_timeout = Some(Duration::from_secs(1));
    let client = kube::Client::try_from(config).unwrap();
    let deadline = Duration::from_millis(300);
    let services = ClusterCache::start(client, deadline);
    assert!(
        wait_until(Duration::from_secs(15), || {
            let s = services.clone();
            async move { s.is_synced() }
        })
        .await,
        "watch cache never synced"
    );
    let app = App::new(
        Policy::default(),
        LookupSource::Cluster(services.clone()),
        Metrics::new(),
    );

    // Healthy: the cache answers, a miss costs one GET.
    let (state, path) = services
        .look_up::<Services>(&("shop".into(), "web".into()))
        .await;
    assert!(matches!(state, ServiceState::Found(_)) && path == LookupPath::Cache);
    let (state, path) = services
        .look_up::<Services>(&("shop".into(), "nothing".into()))
        .await;
    assert!(matches!(state, ServiceState::NotFound) && path == LookupPath::ApiGet);

    // The API server hangs.
    network.set(Network::Hang);
    let t = Instant::now();
    let (state, path) = services
        .look_up::<Services>(&("shop".into(), "web".into()))
        .await;
    let cached_in = t.elapsed();
    assert!(matches!(state, ServiceState::Found(_)) && path == LookupPath::Cache);
    assert!(cached_in < Duration::from_millis(50), "{cached_in:?}");

    let t = Instant::now();
    let (state, path) = services
        .look_up::<Services>(&("shop".into(), "other".into()))
        .await;
    let hung_in = t.elapsed();
    assert!(matches!(state, ServiceState::Unknown(_)), "{state:?}");
    assert_eq!(path, LookupPath::ApiError);
    assert!(
        hung_in >= deadline && hung_in < deadline + Duration::from_millis(700),
        "lookup with the API hanging took {hung_in:?}"
    );

    // The decision: a StatefulSet whose Service cannot be looked up is
    // allowed with a warning (never denied, never a webhook timeout).
    let t = Instant::now();
    let review = validate(&app, statefulset_review("other")).await;
    let review_in = t.elapsed();
    assert_eq!(review["response"]["allowed"], true, "{review}");
    let warnings = review["response"]["warnings"].to_string();
    assert!(
        warnings.contains("allowed: Service lookup failed"),
        "{warnings}"
    );
    assert!(
        review_in < deadline + Duration::from_millis(700),
        "{review_in:?}"
    );
    // One whose Service is cached is reviewed as usual.
    let review = validate(&app, statefulset_review("web")).await;
    assert_eq!(review["response"]["allowed"], true);
    assert!(review["response"].get("warnings").is_none(), "{review}");

    // The API server goes down; a Service is created meanwhile.
    network.set(Network::Down);
    let t = Instant::now();
    let (state, _) = services
        .look_up::<Services>(&("shop".into(), "other".into()))
        .await;
    let down_in = t.elapsed();
    assert!(matches!(state, ServiceState::Unknown(_)), "{state:?}");
    assert!(
        down_in < deadline + Duration::from_millis(700),
        "{down_in:?}"
    );
    api.lock().unwrap().add("shop", "late");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Back up: the watch resumes by itself and the cache catches up.
    network.set(Network::Up);
    let t = Instant::now();
    let recovered = wait_until(Duration::from_secs(30), || {
        let s = services.clone();
        async move {
            matches!(
                s.look_up::<Services>(&("shop".into(), "late".into())).await,
                (ServiceState::Found(_), LookupPath::Cache)
            )
        }
    })
    .await;
    let recovered_in = t.elapsed();
    assert!(recovered, "watch cache did not recover");
    assert!(services.is_synced());
    println!(
        "API trouble: cache hit {cached_in:.2?} with the API hung; miss answered Unknown in {hung_in:.2?} (hung) and {down_in:.2?} (down), deadline {deadline:?}; review with lookup failing {review_in:.2?}; cache recovered {recovered_in:.2?} after the API returned"
    );
}

// ---------------------------------------------------------------------------
// Security

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl (apt-get install openssl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls_1_2_and_1_3_with_aead_forward_secret_suites_are_offered() {
    let server = TestServer::start(Policy::default(), Limits::default()).await;
    let connect = format!("127.0.0.1:{}", server.addr.port());
    let probe = |args: Vec<String>| {
        let connect = connect.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut all = vec!["s_client", "-connect", &connect, "-servername", "localhost"]
                    .into_iter()
                    .map(String::from)
                    .collect::<Vec<_>>();
                all.extend(args);
                let refs: Vec<&str> = all.iter().map(String::as_str).collect();
                openssl(&refs)
            })
            .await
            .unwrap()
        }
    };
    // TLS 1.0 and 1.1 are refused by the server, not by openssl: the client
    // may use them (SECLEVEL=0), sends its hello and gets an alert back.
    for old in ["-tls1", "-tls1_1"] {
        let (ok, out) = probe(vec![old.into(), "-cipher".into(), "ALL:@SECLEVEL=0".into()]).await;
        assert!(!ok, "{old} accepted:\n{out}");
        assert!(
            out.contains("alert handshake failure") || out.contains("alert protocol version"),
            "{old}: not refused by the server:\n{out}"
        );
    }
    // TLS 1.2: try every suite this openssl knows; the server takes only
    // ECDHE with AEAD.
    let (_, list) = openssl(&["ciphers", "-v", "ALL:COMPLEMENTOFALL:@SECLEVEL=0"]);
    let mut accepted = Vec::new();
    let mut tried = 0;
    for line in list.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() < 6 || cols[1] == "TLSv1.3" {
            continue;
        }
        tried += 1;
        let (ok, _) = probe(vec![
            "-tls1_2".into(),
            "-cipher".into(),
            format!("{}:@SECLEVEL=0", cols[0]),
        ])
        .await;
        if ok {
            accepted.push(line.to_string());
        }
    }
    println!(
        "TLS 1.2: {} of {tried} suites accepted:\n{}",
        accepted.len(),
        accepted.join("\n")
    );
    assert!(tried > 20, "openssl listed few suites:\n{list}");
    assert!(!accepted.is_empty(), "no TLS 1.2 suite accepted");
    for suite in &accepted {
        assert!(
            suite.contains("Mac=AEAD"),
            "non-AEAD suite accepted: {suite}"
        );
        assert!(
            suite.contains("Kx=ECDH"),
            "suite without ECDHE accepted: {suite}"
        );
    }
    // TLS 1.3 works.
    let (ok, out) = probe(vec!["-tls1_3".into()]).await;
    assert!(ok && out.contains("TLSv1.3"), "{out}");
    server.stop();
}

#[tokio::test]
async fn a_tls_1_2_only_client_is_served() {
    let server = TestServer::start(Policy::default(), Limits::default()).await;
    let config = rustls::ClientConfig::builder_with_protocol_versions(&[&rustls::version::TLS12])
        .with_root_certificates(root_store(&server.ca()))
        .with_no_client_auth();
    let connector = TlsConnector::from(Arc::new(config));
    let mut client = Client::connect_with(server.addr, &connector).await.unwrap();
    assert_eq!(
        client.protocol_version,
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let suite = format!("{:?}", client.cipher_suite.unwrap());
    assert!(suite.starts_with("TLS_ECDHE_"), "{suite}");
    assert!(
        suite.contains("GCM") || suite.contains("CHACHA20_POLY1305"),
        "{suite}"
    );
    let (status, _) = client
        .request("POST", "/validate", serde_json::to_vec(&fixture()).unwrap())
        .await
        .unwrap();
    assert_eq!(status, 200);
    server.stop();
}

/// A CA and, signed by it, a client certificate (like the API server's).
fn client_pki(dir: &Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, "client CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("client.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("client.key"), key.serialize_pem()).unwrap();
}

async fn review_as(addr: SocketAddr, connector: &TlsConnector) -> Result<u16, String> {
    let mut c = Client::connect_with(addr, connector)
        .await
        .map_err(|e| e.to_string())?;
    match review(&mut c, review_body(UID), UID).await {
        Outcome::Ok => Ok(200),
        other => Err(format!("{other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_client_ca_only_clients_with_a_certificate_it_signed_are_served() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let pki = tempfile::tempdir().unwrap();
    client_pki(&pki.path().join("good"));
    client_pki(&pki.path().join("other"));
    let serve = Serve::start(
        certs.path(),
        &[
            "--client-ca",
            pki.path().join("good/ca.crt").to_str().unwrap(),
        ],
    );
    let ca = certs.path().join("ca.crt");
    let good = client_auth_connector(
        &ca,
        &pki.path().join("good/client.crt"),
        &pki.path().join("good/client.key"),
    );
    serve.wait_ready(&good).await;
    assert_eq!(review_as(serve.addr, &good).await, Ok(200));

    let anonymous = tls_connector(&ca);
    let refused = review_as(serve.addr, &anonymous).await;
    assert!(refused.is_err(), "client without a certificate served");
    let stranger = client_auth_connector(
        &ca,
        &pki.path().join("other/client.crt"),
        &pki.path().join("other/client.key"),
    );
    let refused = review_as(serve.addr, &stranger).await;
    assert!(
        refused.is_err(),
        "client with a certificate of another CA served"
    );
    // And the server is still fine.
    assert_eq!(review_as(serve.addr, &good).await, Ok(200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_contents_never_reach_the_log_at_the_default_level() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let connector = tls_connector(&certs.path().join("ca.crt"));
    let serve = Serve::start(certs.path(), &[]);
    serve.wait_ready(&connector).await;
    let secrets = [
        "s3cr3t-annotation-value-91",
        "s3cr3t-env-value-92",
        "s3cr3t-probe-period-93",
        "s3cr3t-body-94",
        "s3cr3t-apiversion-95",
        "s3cr3t-label-96",
    ];
    let mut c = Client::connect_with(serve.addr, &connector).await.unwrap();
    let mut send = async |uid: &str, body: Vec<u8>| {
        let (status, text) = c.request("POST", "/validate", body).await.unwrap();
        (
            status,
            uid.to_string(),
            String::from_utf8_lossy(&text).into_owned(),
        )
    };
    let with = |uid: &str, edit: &dyn Fn(&mut Value)| {
        let mut r = fixture();
        r["request"]["uid"] = json!(uid);
        edit(&mut r);
        serde_json::to_vec(&r).unwrap()
    };
    // Denied (logged at info with its findings), carrying secrets.
    let denied = with("uid-denied", &|r| {
        let o = &mut r["request"]["object"];
        o["metadata"]["annotations"]["example.com/token"] = json!(secrets[0]);
        o["metadata"]["labels"]["example.com/tier"] = json!(secrets[5]);
        let c = &mut o["spec"]["template"]["spec"]["containers"][0];
        c["env"] = json!([{"name": "PASSWORD", "value": secrets[1]}]);
        c.as_object_mut().unwrap().remove("livenessProbe");
    });
    let (status, _, answer) = send("uid-denied", denied).await;
    assert!(
        status == 200 && answer.contains(r#""allowed":false"#),
        "{answer}"
    );
    // An object that does not decode: the error quotes the value.
    let invalid = with("uid-invalid", &|r| {
        r["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["periodSeconds"] =
            json!(secrets[2]);
    });
    let (_, _, answer) = send("uid-invalid", invalid).await;
    assert!(answer.contains(secrets[2]), "the caller is told: {answer}");
    // Not an AdmissionReview at all.
    let (status, _, answer) = send("-", serde_json::to_vec(&json!(secrets[3])).unwrap()).await;
    assert!(status == 400 && answer.contains(secrets[3]), "{answer}");
    let envelope = with("uid-envelope", &|r| r["apiVersion"] = json!(secrets[4]));
    let (status, _, _) = send("uid-envelope", envelope).await;
    assert_eq!(status, 400);

    let log = wait_for_log(&serve, "uid-invalid").await;
    for uid in ["uid-denied", "uid-invalid"] {
        assert!(log.contains(uid), "{uid} not logged:\n{log}");
    }
    assert!(log.matches("bad request").count() >= 2, "{log}");
    for secret in secrets {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

async fn wait_for_log(serve: &Serve, text: &str) -> String {
    let found = wait_until(Duration::from_secs(5), || async {
        serve.log().contains(text)
    })
    .await;
    assert!(found, "{text} never logged:\n{}", serve.log());
    tokio::time::sleep(Duration::from_millis(200)).await;
    serve.log()
}

/// `serve` writes nothing to disk: run with the whole filesystem mounted
/// read-only (a private mount namespace), it serves, reloads its policy
/// from a `..data` swap made outside, and exits 0. Needs CAP_SYS_ADMIN
/// (root here and in CI); says so and returns where it is missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_needs_no_write_access_to_its_filesystem() {
    let probe = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount --bind / / && mount -o remount,bind,ro / && ! touch /.sts-guard-rw-probe 2>/dev/null"])
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        println!(
            "SKIPPED: cannot mount the filesystem read-only here (unshare -m needs CAP_SYS_ADMIN)"
        );
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let config = tempfile::tempdir().unwrap();
    let policy = config.path().join("policy.yaml");
    std::fs::write(&policy, "mode: enforce\n").unwrap();
    let connector = tls_connector(&certs.path().join("ca.crt"));
    let mut serve = Serve::start_with(
        &[
            "unshare",
            "-m",
            "sh",
            "-c",
            r#"mount --bind / / && mount -o remount,bind,ro / && cd / && exec "$@""#,
            "sh",
        ],
        certs.path(),
        &[
            "--config",
            policy.to_str().unwrap(),
            "--shutdown-delay",
            "100ms",
        ],
    );
    serve.wait_ready(&connector).await;
    let bad = Bytes::from(serde_json::to_vec(&fixture_without_liveness()).unwrap());
    let allowed = |body: Bytes| {
        let connector = connector.clone();
        let addr = serve.addr;
        async move {
            let mut c = Client::connect_with(addr, &connector).await.unwrap();
            let (_, b) = c.request("POST", "/validate", body).await.unwrap();
            String::from_utf8_lossy(&b).contains(r#""allowed":true"#)
        }
    };
    assert!(!allowed(bad.clone()).await, "enforce denies");
    // The file is changed from outside the read-only view.
    std::fs::write(&policy, "mode: warn\n").unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || allowed(bad.clone())).await,
        "policy not reloaded; log:\n{}",
        serve.log()
    );
    serve.sigterm();
    assert_eq!(
        serve
            .exited_within(Duration::from_secs(10))
            .await
            .and_then(|status| status.code()),
        Some(0),
        "{}",
        serve.log()
    );
    let log = serve.log();
    assert!(!log.to_lowercase().contains("read-only"), "{log}");
}
