//! The ceiling of `bench/run.sh`: the least a TLS HTTP/1.1 keep-alive server
//! on this machine can do per request. Same stack as `sts-guard serve`
//! (tokio multi-thread, rustls with ring, hyper 1), same certificate, same
//! TLS settings; it reads the whole request body and answers every POST
//! with the same fixed AdmissionReview response, deciding nothing.
//!
//! cargo run --release --example static_responder -- \
//!     --cert DIR/tls.crt --key DIR/tls.key --listen 127.0.0.1:8444 [--body FILE]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

/// What sts-guard answers for an allowed request, byte for byte in shape.
const DEFAULT_BODY: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"7f0b2a8e-3c1d-4f5e-9a6b-2c3d4e5f6a7b","allowed":true,"status":{"status":"Success","message":"","reason":"","code":200}}}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut cert = None;
    let mut key = None;
    let mut listen: SocketAddr = "127.0.0.1:8444".parse()?;
    let mut body = Bytes::from_static(DEFAULT_BODY.as_bytes());
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--cert" => cert = Some(value()?),
            "--key" => key = Some(value()?),
            "--listen" => listen = value()?.parse()?,
            "--body" => body = Bytes::from(std::fs::read(value()?)?),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let cert = cert.ok_or("--cert is required")?;
    let key = key.ok_or("--key is required")?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = CertificateDer::pem_file_iter(&cert)?.collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&key)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await?;
        eprintln!("static responder listening on {}", listener.local_addr()?);
        loop {
            let (tcp, _) = listener.accept().await?;
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let body = body.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let body = body.clone();
                    async move {
                        // Read the request as a real server must.
                        let _ = req.into_body().collect().await;
                        Ok::<_, Infallible>(
                            Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .expect("static response"),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    })
}
