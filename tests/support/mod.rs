//! Shared helpers for the HTTP tests: a real TLS server on loopback built
//! from the library's own pieces, and a keep-alive HTTP/1.1 TLS client.
//! `control_plane` and `webhook`: a real kube-apiserver + etcd with
//! sts-guard registered, for the end-to-end and live-cluster tests.
#![allow(dead_code)]

pub mod control_plane;
pub mod webhook;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use sts_guard::lookup::{ManifestServices, ServiceSource};
use sts_guard::policy::Policy;
use sts_guard::webhook::metrics::Metrics;
use sts_guard::webhook::routes::{App, router};
use sts_guard::webhook::{Limits, accept_loop, tls};

pub const CREATE_WEB: &str = include_str!("../fixtures/admission/create-web.json");
pub const UID: &str = "7f0b2a8e-3c1d-4f5e-9a6b-2c3d4e5f6a7b";

pub fn fixture() -> Value {
    serde_json::from_str(CREATE_WEB).unwrap()
}

/// Services from tests/fixtures/admission/services.yaml.
pub fn services() -> ManifestServices {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission/services.yaml");
    ManifestServices::read(&[path]).unwrap()
}

/// Writes a CA and a serving certificate for localhost/127.0.0.1.
pub fn make_certs(dir: &Path) {
    sts_guard::commands::certs::run(
        dir,
        &["localhost".to_string()],
        &["127.0.0.1".parse().unwrap()],
    )
    .unwrap();
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub app: Arc<App>,
    pub metrics: Arc<Metrics>,
    pub cert: Arc<tls::ReloadingCert>,
    stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(policy: Policy, limits: Limits) -> TestServer {
        sts_guard::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        make_certs(dir.path());
        let metrics = Metrics::new();
        let app = App::new(
            policy,
            ServiceSource::Static(Arc::new(services())),
            metrics.clone(),
        );
        let cert =
            tls::ReloadingCert::load(&dir.path().join("tls.crt"), &dir.path().join("tls.key"))
                .unwrap();
        let config = tls::server_config(cert.clone(), None).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(accept_loop(
            listener,
            TlsAcceptor::from(Arc::new(config)),
            router(app.clone()),
            limits,
            stop_rx,
            Duration::from_secs(5),
        ));
        TestServer {
            addr,
            dir,
            app,
            metrics,
            cert,
            stop,
            task,
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Stops accepting and drains, as SIGTERM does after the delay.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.addr, &self.ca()).await.unwrap()
    }
}

pub fn tls_connector(ca: &Path) -> TlsConnector {
    sts_guard::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// One keep-alive HTTP/1.1 connection over TLS, like the API server's.
pub struct Client {
    pub sender: SendRequest<Full<Bytes>>,
    pub conn: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    /// DER of the certificate the server presented.
    pub peer_cert: Vec<u8>,
}

impl Client {
    pub async fn connect(addr: SocketAddr, ca: &Path) -> std::io::Result<Client> {
        Client::connect_with(addr, &tls_connector(ca)).await
    }

    /// One keep-alive TLS connection through `connector` (its trust roots,
    /// client certificate, resumption settings).
    pub async fn connect_with(
        addr: SocketAddr,
        connector: &TlsConnector,
    ) -> std::io::Result<Client> {
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        let peer_cert = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        let conn = tokio::spawn(conn);
        Ok(Client {
            sender,
            conn,
            peer_cert,
        })
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>), hyper::Error> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        self.sender.ready().await?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes().to_vec();
        Ok((status, body))
    }

    pub async fn review(&mut self, path: &str, review: &Value) -> (u16, Value) {
        let (status, body) = self
            .request("POST", path, serde_json::to_vec(review).unwrap())
            .await
            .unwrap();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, json)
    }
}

/// A loopback port free a moment ago (for a server started by port number).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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
