//! kube's client, able to use an X.509 v1 client certificate from a
//! kubeconfig (`openssl x509 -req` without extensions makes them; kubectl
//! and Go accept them).
//!
//! rustls checks a client certificate against its key when the pair is
//! loaded (`ConfigBuilder::with_client_auth_cert`), parsing the certificate
//! with webpki, which refuses v1. kube 5.0 loads the kubeconfig's pair that
//! way inside `Config::rustls_client_config`, on the process-wide provider;
//! it takes no provider, key or resolver of ours, and `ClientBuilder`'s
//! stack cannot be given another connector. So, for a kubeconfig holding a
//! certificate and key, the client is built here: kube's
//! `rustls_client_config` without the pair (the same roots, verifier,
//! CA-file reloading and `insecure-skip-tls-verify`), the pair set as its
//! resolver, loaded with ring and checked unless its certificate does not
//! parse (the API server verifies it and the key's signature in the
//! handshake anyway), then the stack of kube's `make_generic_builder` in
//! this build (no proxy, gzip or socks5 features) with tower-http's
//! default trace layer for kube's own (spans and the error line on a
//! failure read differently).
//!
//! Everything else goes to `kube::Client::try_from` as it is: no client
//! certificate (tokens, in-cluster), an exec plugin (its certificate is
//! kube's private business: a v1 one is refused there), a proxy (kube
//! refuses it in this build and says so), or a pair this module cannot
//! read (kube reports why, in its words).

use std::sync::Arc;

use base64::Engine as _;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use kube::client::{ClientBuilder, ConfigExt as _};
use kube::config::AuthInfo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use secrecy::ExposeSecret as _;
use tower::ServiceBuilder;

/// A client from the usual configuration (in-cluster, or `KUBECONFIG`).
pub async fn connect() -> Result<kube::Client, kube::Error> {
    crate::install_crypto_provider();
    client(
        kube::Config::infer()
            .await
            .map_err(kube::Error::InferConfig)?,
    )
}

/// A client for `config`: kube's own, or built here for a kubeconfig's
/// client certificate (see the module documentation).
pub fn client(config: kube::Config) -> Result<kube::Client, kube::Error> {
    let own = config.proxy_url.is_none() && config.auth_info.exec.is_none();
    let (Some(pair), true) = (pair(&config.auth_info), own) else {
        return kube::Client::try_from(config);
    };
    let mut without_pair = config.clone();
    let auth = &mut without_pair.auth_info;
    (auth.client_certificate, auth.client_certificate_data) = (None, None);
    (auth.client_key, auth.client_key_data) = (None, None);
    let mut tls = without_pair.rustls_client_config()?;
    tls.client_auth_cert_resolver = Arc::new(SingleCertAndKey::from(pair));
    let mut https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let Ok(name) = ServerName::try_from(name.clone()) else {
            return kube::Client::try_from(config);
        };
        https = https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let mut connector =
        hyper_timeout::TimeoutConnector::new(https.enable_http1().wrap_connector(http));
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let http_client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build::<_, kube::client::Body>(connector);
    let retry = config
        .default_retry
        .then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .map_err(tower::BoxError::from)
        .service(http_client);
    Ok(ClientBuilder::new(service, config.default_namespace).build())
}

/// The kubeconfig's certificate and key (data before file, as kube reads
/// them), if both load. A pair whose key does not match its certificate
/// is `None` too, so kube refuses it in its words; one whose certificate
/// webpki cannot parse (X.509 v1) is kept.
fn pair(auth: &AuthInfo) -> Option<CertifiedKey> {
    let load = |data: Option<&str>, file: Option<&String>| match (data, file) {
        (Some(data), _) => base64::engine::general_purpose::STANDARD.decode(data).ok(),
        (None, Some(path)) => std::fs::read(path).ok(),
        (None, None) => None,
    };
    let cert = load(
        auth.client_certificate_data.as_deref(),
        auth.client_certificate.as_ref(),
    )?;
    let key = load(
        auth.client_key_data.as_ref().map(|k| k.expose_secret()),
        auth.client_key.as_ref(),
    )?;
    let chain = CertificateDer::pem_slice_iter(&cert)
        .collect::<Result<Vec<_>, _>>()
        .ok()
        .filter(|chain| !chain.is_empty())?;
    let key = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(PrivateKeyDer::from_pem_slice(&key).ok()?)
        .ok()?;
    let pair = CertifiedKey::new(chain, key);
    match pair.keys_match() {
        Ok(()) | Err(rustls::Error::InvalidCertificate(_)) => Some(pair),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use base64::Engine as _;
    use rustls::client::danger::HandshakeSignatureValid;
    use rustls::crypto::{WebPkiSupportedAlgorithms, ring};
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, SubjectPublicKeyInfoDer, UnixTime};
    use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
    use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// `openssl x509 -req -signkey` without extensions: X.509 v1
    /// (tests/fixtures/tls/README.md).
    const V1_CERT: &str = include_str!("../../tests/fixtures/tls/v1-client.crt");
    const V1_KEY: &str = include_str!("../../tests/fixtures/tls/v1-client.key");

    type Cert<'a> = CertificateDer<'a>;
    type Dss = DigitallySignedStruct;
    type Signed = Result<HandshakeSignatureValid, Error>;

    fn algorithms() -> WebPkiSupportedAlgorithms {
        ring::default_provider().signature_verification_algorithms
    }

    /// Takes any client certificate (webpki would refuse a v1 one), keeps
    /// it, and checks the client's handshake signature against its key.
    #[derive(Debug, Default)]
    struct Presented(Mutex<Option<Vec<u8>>>);

    impl ClientCertVerifier for Presented {
        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            &[]
        }

        fn verify_client_cert(
            &self,
            end_entity: &Cert,
            _: &[Cert],
            _: UnixTime,
        ) -> Result<ClientCertVerified, Error> {
            *self.0.lock().unwrap() = Some(end_entity.to_vec());
            Ok(ClientCertVerified::assertion())
        }

        fn verify_tls12_signature(&self, _: &[u8], _: &Cert, _: &Dss) -> Signed {
            Err(Error::General("TLS 1.3 only".into()))
        }

        fn verify_tls13_signature(&self, message: &[u8], cert: &Cert, dss: &Dss) -> Signed {
            let (_, parsed) = x509_parser::parse_x509_certificate(cert)
                .map_err(|e| Error::General(e.to_string()))?;
            let spki = SubjectPublicKeyInfoDer::from(parsed.public_key().raw);
            rustls::crypto::verify_tls13_signature_with_raw_key(message, &spki, dss, &algorithms())
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            algorithms().supported_schemes()
        }
    }

    /// An API server on 127.0.0.1 asking for a client certificate: the
    /// kubeconfig for it with `cert` and `key`, and what it was shown.
    async fn api_server(cert: &str, key: &str) -> (kube::Config, Arc<Presented>) {
        crate::install_crypto_provider();
        let served = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
        let presented = Arc::new(Presented::default());
        let tls = rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_client_cert_verifier(presented.clone())
            .with_single_cert(
                vec![served.cert.der().clone()],
                PrivateKeyDer::from_pem_slice(served.signing_key.serialize_pem().as_bytes())
                    .unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let mut request = Vec::new();
                let mut buf = [0; 1024];
                while !request.ends_with(b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            }
        });
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: c\n\
             clusters: [{{name: c, cluster: {{server: 'https://{addr}', certificate-authority-data: {}}}}}]\n\
             users: [{{name: c, user: {{client-certificate-data: {}, client-key-data: {}}}}}]\n\
             contexts: [{{name: c, context: {{cluster: c, user: c}}}}]\n",
            b64(&served.cert.pem()),
            b64(cert),
            b64(key),
        );
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        (config, presented)
    }

    #[tokio::test]
    async fn an_x509_v1_client_certificate_is_presented_and_signed_for() {
        let (config, presented) = api_server(V1_CERT, V1_KEY).await;
        // What this module is for: kube's own client refuses the pair.
        assert!(kube::Client::try_from(config.clone()).is_err());

        let client = super::client(config).unwrap();
        let answer = client
            .request_text(hyper::Request::get("/version").body(Vec::new()).unwrap())
            .await
            .unwrap();
        assert_eq!(answer, "ok");
        let v1 = CertificateDer::from_pem_slice(V1_CERT.as_bytes()).unwrap();
        assert_eq!(presented.0.lock().unwrap().as_deref(), Some(&v1[..]));
    }

    /// A key that is not the certificate's is refused when the client is
    /// built, in kube's words, as before.
    #[tokio::test]
    async fn a_key_that_does_not_match_its_certificate_is_refused() {
        let other = rcgen::generate_simple_self_signed(vec!["other".into()]).unwrap();
        let (config, _) = api_server(&other.cert.pem(), V1_KEY).await;
        let Err(e) = super::client(config) else {
            panic!("a mismatched pair was taken")
        };
        assert!(e.to_string().contains("private key"), "{e}");
    }
}
