//! TLS with a certificate that can be swapped while serving: new connections
//! get the new pair as soon as it is loaded; a bad pair is never swapped in.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("{path} holds no usable PEM private key: {message}")]
    BadKey { path: String, message: String },
    #[error("certificate and key do not belong together: {0}")]
    Mismatch(String),
    #[error("client CA {path}: {message}")]
    ClientCa { path: String, message: String },
    #[error("TLS setup: {0}")]
    Config(#[from] rustls::Error),
}

/// The process-wide crypto provider ([`crate::install_crypto_provider`]).
fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Parses and checks a certificate chain and key given as PEM bytes.
pub fn certified_key(
    cert_pem: &[u8],
    key_pem: &[u8],
    cert_path: &str,
    key_path: &str,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate {
            path: cert_path.into(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_path.into(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey {
        path: key_path.into(),
        message: e.to_string(),
    })?;
    let signing = provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::BadKey {
            path: key_path.into(),
            message: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    Ok(certified)
}

pub fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

/// Hands out whatever pair is current; swapped by the reloader.
#[derive(Debug)]
pub struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl ReloadingCert {
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Arc<Self>, TlsError> {
        let key = certified_key(
            &read(cert_path)?,
            &read(key_path)?,
            &cert_path.display().to_string(),
            &key_path.display().to_string(),
        )?;
        Ok(Arc::new(ReloadingCert {
            current: ArcSwap::from_pointee(key),
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
        }))
    }

    /// A pair held in memory (managed certificates); the labels name its
    /// origin in errors.
    pub fn from_key(key: CertifiedKey, cert_label: &str, key_label: &str) -> Arc<Self> {
        Arc::new(ReloadingCert {
            current: ArcSwap::from_pointee(key),
            cert_path: PathBuf::from(cert_label),
            key_path: PathBuf::from(key_label),
        })
    }

    /// Parses `[cert, key]` file contents; used by the file watcher.
    pub fn parse(&self, files: &[Vec<u8>]) -> Result<CertifiedKey, TlsError> {
        certified_key(
            &files[0],
            &files[1],
            &self.cert_path.display().to_string(),
            &self.key_path.display().to_string(),
        )
    }

    pub fn swap(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// TLS 1.2 and 1.3 with rustls' default (modern, AEAD-only) suites; HTTP/1.1
/// only, which is all the API server's webhook client speaks. With a client
/// CA, only clients presenting a certificate it signed are served.
pub fn server_config(
    cert: Arc<ReloadingCert>,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let shown = path.display().to_string();
            let pem = read(path)?;
            let mut roots = rustls::RootCertStore::empty();
            for der in CertificateDer::pem_slice_iter(&pem) {
                let der = der.map_err(|e| TlsError::ClientCa {
                    path: shown.clone(),
                    message: e.to_string(),
                })?;
                roots.add(der).map_err(|e| TlsError::ClientCa {
                    path: shown.clone(),
                    message: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: shown,
                    message: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
