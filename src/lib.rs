//! sts-guard: an admission webhook that keeps StatefulSets healthy by
//! construction. One rule engine behind three front doors: `serve`
//! (admission webhook), `check` (offline manifests) and `audit` (live cluster).

pub mod admission;
pub mod cli;
pub mod lookup;
pub mod manifest;
pub mod policy;
pub mod reload;
pub mod rules;
pub mod server;
