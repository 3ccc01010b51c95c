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
//! - `vap` (the policy compiled to ValidatingAdmissionPolicies);
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
pub mod vap;
pub mod view;
pub mod webhook;

/// rustls 0.23 needs one process-wide crypto provider (for the webhook's
/// TLS and for kube's client); installing it explicitly at start-up beats a
/// panic on the first handshake. It is ring's, as it comes: kube's client
/// takes a kubeconfig's X.509 v1 client certificate through
/// [`lookup::connect`], not through this provider. Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
