//! sts-guard: an admission webhook that keeps StatefulSets healthy by
//! construction. One rule engine behind three front doors: `serve`
//! (admission webhook), `check` (offline manifests) and `audit` (live
//! cluster).
//!
//! Layers, each importing only those below it:
//! - `webhook` (the HTTP edge) and `commands` (`check`, `audit`, `certs`);
//! - `certs` (the webhook's own PKI and managed certificates);
//! - `lookup` (what rules look up: watch cache, manifests, listings) and
//!   `manifest` (reading YAML and JSON as kubectl does);
//! - `reports` (the policy report objects `audit --report` writes);
//! - `review` (the pure core: modes, exemptions, ratcheting, mutations);
//! - `rules` (one file per rule) and `policy`;
//! - `tasks` (supervised background tasks and the one retry backoff), used
//!   by `webhook` and `lookup`;
//! - `view` (the typed views every layer reads);
//! - `log_writer` (where `serve`'s log lines go: batched off the request's
//!   path), used by the binary only.

pub mod certs;
pub mod commands;
pub mod kube_errors;
pub mod log_writer;
pub mod lookup;
pub mod manifest;
pub mod policy;
pub mod reload;
pub mod reports;
pub mod review;
pub mod rules;
pub mod tasks;
pub mod view;
pub mod webhook;

/// rustls 0.23 needs one process-wide crypto provider (for the webhook's
/// TLS and for kube's client); installing it explicitly at start-up beats a
/// panic on the first handshake. Idempotent.
///
/// It is ring's, with one change: private keys loaded through it do not
/// report their public key. kube builds its client configuration on this
/// provider, and rustls checks a client certificate against its key by
/// parsing the certificate with webpki, which refuses X.509 v1 certificates
/// (`openssl x509 -req` without extensions makes them; kubectl and Go accept
/// them). A key without a known public key skips that check (rustls treats
/// the consistency as unknown, not as an error); the API server still
/// verifies the certificate and the key's signature in the handshake. The
/// webhook's own serving pair is checked with ring's provider directly
/// ([`webhook::tls::certified_key`]), so a mismatched pair is still refused
/// before it is served.
pub fn install_crypto_provider() {
    let provider = rustls::crypto::CryptoProvider {
        key_provider: &client_keys::KEYS,
        ..rustls::crypto::ring::default_provider()
    };
    let _ = provider.install_default();
}

mod client_keys {
    use std::sync::Arc;

    use rustls::pki_types::PrivateKeyDer;
    use rustls::sign::{Signer, SigningKey};
    use rustls::{SignatureAlgorithm, SignatureScheme};

    pub static KEYS: Keys = Keys;

    /// ring's key loading, each key wrapped in [`WithoutPublicKey`].
    #[derive(Debug)]
    pub struct Keys;

    impl rustls::crypto::KeyProvider for Keys {
        fn load_private_key(
            &self,
            key_der: PrivateKeyDer<'static>,
        ) -> Result<Arc<dyn SigningKey>, rustls::Error> {
            let key = rustls::crypto::ring::default_provider()
                .key_provider
                .load_private_key(key_der)?;
            Ok(Arc::new(WithoutPublicKey(key)))
        }
    }

    /// Signs as the key it wraps; `public_key()` keeps its default (none).
    #[derive(Debug)]
    struct WithoutPublicKey(Arc<dyn SigningKey>);

    impl SigningKey for WithoutPublicKey {
        fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
            self.0.choose_scheme(offered)
        }

        fn algorithm(&self) -> SignatureAlgorithm {
            self.0.algorithm()
        }
    }
}
