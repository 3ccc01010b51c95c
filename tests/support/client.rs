//! The client side of the HTTP tests: TLS connectors, the one keep-alive
//! HTTP/1.1 [`Client`] (the API server's kind of connection), and raw TLS
//! streams for writing requests byte by byte.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// The certificates of the PEM file `ca` (one CA or a bundle) as trust roots.
pub fn root_store(ca: &Path) -> rustls::RootCertStore {
    sts_guard::install_crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

/// A connector trusting `ca`, without a client certificate.
pub fn tls_connector(ca: &Path) -> TlsConnector {
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(root_store(ca))
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A TLS connection to `addr` for the name `localhost`.
pub async fn tls_connect(
    addr: SocketAddr,
    connector: &TlsConnector,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The head of `POST /validate` over HTTP/1.1 announcing `len` body bytes;
/// `extra` is more header lines, each ending in `\r\n`.
pub fn post_head(len: usize, extra: &str) -> String {
    format!(
        "POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n{extra}\r\n"
    )
}

/// Reads until the server closes the connection; panics if it is still
/// open after `within`. What was read, lossily as text.
pub async fn read_to_close<S: AsyncRead + Unpin>(stream: &mut S, within: Duration) -> String {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut buf)).await;
    assert!(
        read.is_ok(),
        "connection still open after {within:?}: {:?}",
        String::from_utf8_lossy(&buf)
    );
    String::from_utf8_lossy(&buf).into_owned()
}

/// GET /readyz on a new connection through `connector`: true on a 200
/// within 2 s.
pub async fn is_ready(addr: SocketAddr, connector: &TlsConnector) -> bool {
    let Ok(mut client) = Client::connect_with(addr, connector).await else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), client.get("/readyz")).await,
        Ok(Ok((200, _)))
    )
}

/// One keep-alive HTTP/1.1 connection over TLS, like the API server's.
pub struct Client {
    pub sender: SendRequest<Full<Bytes>>,
    pub conn: tokio::task::JoinHandle<Result<(), hyper::Error>>,
    /// DER of the certificate the server presented.
    pub peer_cert: Vec<u8>,
    /// What the handshake settled on.
    pub protocol_version: Option<rustls::ProtocolVersion>,
    pub cipher_suite: Option<rustls::CipherSuite>,
}

/// Why a request got no answer.
#[derive(Debug)]
pub enum SendError {
    /// Never written: the connection was already closing (the keep-alive
    /// race every client meets) or closed. A client sends it again.
    NotSent(String),
    /// Written, and no (whole) answer came back.
    NoAnswer(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::NotSent(why) => write!(f, "not sent: {why}"),
            SendError::NoAnswer(why) => write!(f, "sent, no answer: {why}"),
        }
    }
}

impl Client {
    /// A connection trusting `ca`.
    pub async fn connect(addr: SocketAddr, ca: &Path) -> std::io::Result<Client> {
        Client::connect_with(addr, &tls_connector(ca)).await
    }

    /// A connection through `connector` (its trust roots, client
    /// certificate, protocol versions, resumption settings).
    pub async fn connect_with(
        addr: SocketAddr,
        connector: &TlsConnector,
    ) -> std::io::Result<Client> {
        let tls = tls_connect(addr, connector).await?;
        let session = tls.get_ref().1;
        let peer_cert = session.peer_certificates().unwrap()[0].to_vec();
        let protocol_version = session.protocol_version();
        let cipher_suite = session.negotiated_cipher_suite().map(|s| s.suite());
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(std::io::Error::other)?;
        let conn = tokio::spawn(conn);
        Ok(Client {
            sender,
            conn,
            peer_cert,
            protocol_version,
            cipher_suite,
        })
    }

    /// One request (`Host: localhost`, `Content-Type: application/json`):
    /// status and body.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: impl Into<Bytes>,
    ) -> Result<(u16, Vec<u8>), SendError> {
        self.sender
            .ready()
            .await
            .map_err(|e| SendError::NotSent(format!("connection closed: {e}")))?;
        let req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(Full::new(body.into()))
            .unwrap();
        let resp = match self.sender.try_send_request(req).await {
            Ok(resp) => resp,
            Err(mut e) => {
                return Err(match e.take_message() {
                    Some(_) => SendError::NotSent(e.error().to_string()),
                    None => SendError::NoAnswer(e.error().to_string()),
                });
            }
        };
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| SendError::NoAnswer(format!("reading the answer: {e}")))?;
        Ok((status, body.to_bytes().to_vec()))
    }

    pub async fn get(&mut self, path: &str) -> Result<(u16, Vec<u8>), SendError> {
        self.request("GET", path, Bytes::new()).await
    }

    /// POSTs `review` to `path`: status and the answer as JSON (`Null` when
    /// it is not JSON).
    pub async fn review(&mut self, path: &str, review: &Value) -> (u16, Value) {
        let (status, body) = self
            .request("POST", path, serde_json::to_vec(review).unwrap())
            .await
            .unwrap();
        let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, json)
    }
}
