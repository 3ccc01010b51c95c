//! `serve --tls-secret NS/NAME --webhook-configuration NAME`: sts-guard
//! makes, serves, injects and renews its own certificates. What to write
//! is decided by [`crate::certs::managed::plan`] (pure, unit-tested); this
//! is the I/O around it, run by every replica:
//!
//! - read the Secret; if absent, **create** it (the API's create decides
//!   races between replicas: one create wins, the others get
//!   AlreadyExists, read the winner's Secret and adopt it, so exactly one
//!   CA results); renewals **replace** it with the resourceVersion read, so
//!   of two replicas renewing at once one wins and the other re-reads;
//! - keep `caBundle` of every webhook in the Validating- and
//!   MutatingWebhookConfiguration NAME equal to the Secret's `ca.crt`
//!   (put back if someone changes it);
//! - serve the Secret's pair on new connections (an atomic swap in
//!   [`ReloadingCert`]), and report ready only once the configurations'
//!   bundle trusts the served certificate.
//!
//! It runs on every change of the Secret or the configurations (watches
//! limited to those names) and every [`TICK`], for the time-based steps.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::utils::Backoff as _;
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client};
use tokio::sync::Notify;

use thiserror::Error;

use super::metrics::Metrics;
use super::tls::{ReloadingCert, TlsError, certified_key};
use crate::certs::managed::{self, Settings, Step, Stored, Why};
use crate::certs::{Expiry, PkiError};
use crate::kube_errors::describe;
use crate::tasks::{Spawner, retry_backoff};

/// The `what` label of the reload metrics for the served certificate.
const CERTIFICATE: &str = "certificate";

/// How often the time-based steps are looked at, besides every change.
pub const TICK: Duration = Duration::from_secs(5);

/// Why a pass of managed certificates failed. Each message names what was
/// being done; [`ManagedError::in_words`] adds the cause, in words, where
/// it is reported.
#[derive(Debug, Error)]
pub enum ManagedError {
    #[error("reading {what}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("writing {what}")]
    Write {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("making certificates")]
    Pki(#[source] PkiError),
    #[error("{what} kept changing under this replica (another one writing it); retrying")]
    Unsettled { what: String },
    #[error("the certificate and key to serve do not load")]
    Serve(#[source] TlsError),
}

impl ManagedError {
    /// The sentence a log line or an operator reads: what was being done,
    /// then why it failed (an API server's answer in words).
    pub fn in_words(&self) -> String {
        match std::error::Error::source(self) {
            Some(cause) => format!("{self}: {}", describe(cause)),
            None => self.to_string(),
        }
    }
}

/// `--tls-secret` is not NAMESPACE/NAME.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("--tls-secret {value:?}: expected NAMESPACE/NAME")]
pub struct SecretFlagError {
    pub value: String,
}

/// From the flags.
#[derive(Debug, Clone)]
pub struct ManagedConfig {
    pub namespace: String,
    pub secret: String,
    pub webhook_configuration: String,
    pub settings: Settings,
}

impl ManagedConfig {
    /// `NAMESPACE/NAME` of `--tls-secret`.
    pub fn parse_secret(value: &str) -> Result<(String, String), SecretFlagError> {
        match value.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok((ns.to_string(), name.to_string()))
            }
            _ => Err(SecretFlagError {
                value: value.to_string(),
            }),
        }
    }
}

/// A self-signed placeholder served until the Secret is read (never
/// trusted: `/readyz` stays false meanwhile).
pub fn placeholder(settings: &Settings) -> Result<Arc<ReloadingCert>, ManagedError> {
    let now = time::OffsetDateTime::now_utc();
    let ca = crate::certs::new_ca(now, time::Duration::hours(1)).map_err(ManagedError::Pki)?;
    let leaf = crate::certs::issue_leaf(
        &ca,
        &settings.dns,
        &settings.ips,
        now,
        time::Duration::hours(1),
    )
    .map_err(ManagedError::Pki)?;
    let key = certified_key(
        leaf.cert.as_bytes(),
        leaf.key.as_bytes(),
        "placeholder",
        "placeholder",
    )
    .map_err(ManagedError::Serve)?;
    Ok(ReloadingCert::from_key(
        key,
        "Secret tls.crt",
        "Secret tls.key",
    ))
}

/// Runs forever: the watches (spawned by `tasks`, so one that ends is
/// noticed), the tick and the reconciliation, retried with the one
/// backoff after a failure.
pub async fn run(
    client: Client,
    config: ManagedConfig,
    cert: Arc<ReloadingCert>,
    trusted: Arc<AtomicBool>,
    tasks: Spawner,
    metrics: Arc<Metrics>,
) {
    let poke = Arc::new(Notify::new());
    let by_name = format!("metadata.name={}", config.secret);
    spawn_watch(
        &tasks,
        "managed certificates: watch Secret",
        Api::<Secret>::namespaced(client.clone(), &config.namespace),
        by_name,
        poke.clone(),
    );
    let by_name = format!("metadata.name={}", config.webhook_configuration);
    spawn_watch(
        &tasks,
        "managed certificates: watch ValidatingWebhookConfiguration",
        Api::<ValidatingWebhookConfiguration>::all(client.clone()),
        by_name.clone(),
        poke.clone(),
    );
    spawn_watch(
        &tasks,
        "managed certificates: watch MutatingWebhookConfiguration",
        Api::<MutatingWebhookConfiguration>::all(client.clone()),
        by_name,
        poke.clone(),
    );
    let mut served: Option<String> = None;
    let mut backoff = retry_backoff();
    loop {
        match reconcile(&client, &config, &cert, &mut served).await {
            Ok((ready, swapped)) => {
                backoff.reset();
                // Counted as a reload when the served pair changed; every
                // good pass says the certificate is current.
                match swapped {
                    Some(expiry) => {
                        metrics.reload(CERTIFICATE, true);
                        if let Some(expiry) = expiry {
                            metrics.certificate_expiry(&expiry);
                        }
                    }
                    None => metrics.reload_state(CERTIFICATE, true),
                }
                if ready != trusted.swap(ready, Ordering::AcqRel) {
                    tracing::info!(
                        ready,
                        "managed certificates: readiness changed (ready: the webhook configurations trust the served certificate)"
                    );
                }
            }
            Err(e) => {
                // Keep serving what we serve; readiness stays as it was
                // (an API outage does not make the served pair untrusted).
                metrics.reload(CERTIFICATE, false);
                let delay = backoff.next().unwrap_or(TICK);
                tracing::warn!(error = e.in_words(), retry_in = ?delay, "managed certificates: reconcile failed; retrying");
                tokio::time::sleep(delay).await;
                continue;
            }
        }
        tokio::select! {
            _ = poke.notified() => {
                // Let a burst of events (ours included) settle.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            _ = tokio::time::sleep(TICK) => {}
        }
    }
}

/// Pokes the reconciliation on every event of the watch of `api` limited
/// to `fields`; errors are retried by the watcher with the one backoff.
fn spawn_watch<K>(
    tasks: &Spawner,
    name: &'static str,
    api: Api<K>,
    fields: String,
    poke: Arc<Notify>,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    tasks.spawn(name, async move {
        let config = watcher::Config::default().fields(&fields);
        let mut stream = watcher(api, config).backoff(retry_backoff()).boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(_) => poke.notify_one(),
                Err(e) => {
                    tracing::debug!(task = name, error = %e, "managed certificates: watch error (retrying)");
                }
            }
        }
    });
}

/// One pass: whether the served certificate is trusted by every webhook's
/// `caBundle`, and, when this pass swapped the served pair, the new pair's
/// expiry (None inside when it does not parse).
async fn reconcile(
    client: &Client,
    config: &ManagedConfig,
    cert: &ReloadingCert,
    served: &mut Option<String>,
) -> Result<(bool, Option<Option<Expiry>>), ManagedError> {
    let secrets = Api::<Secret>::namespaced(client.clone(), &config.namespace);
    let validating = Api::<ValidatingWebhookConfiguration>::all(client.clone());
    let mutating = Api::<MutatingWebhookConfiguration>::all(client.clone());
    let shown = format!("Secret {}/{}", config.namespace, config.secret);
    let vwc_name = &config.webhook_configuration;

    // A few rounds: create or adopt, then a renewal step or two.
    let mut stored = None;
    for _ in 0..4 {
        let secret =
            secrets
                .get_opt(&config.secret)
                .await
                .map_err(|source| ManagedError::Read {
                    what: shown.clone(),
                    source,
                })?;
        let parsed = secret.as_ref().and_then(|s| {
            let data = s.data.as_ref()?;
            let data = data.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect();
            Stored::from_data(&data)
        });
        let injected = match &parsed {
            Some(p) => {
                let bundle = p.bundle.as_bytes();
                let v = read(&validating, vwc_name).await?;
                let m = read(&mutating, vwc_name).await?;
                v.is_some_and(|v| carries(&v, bundle)) && m.is_some_and(|m| carries(&m, bundle))
            }
            None => false,
        };
        let now = time::OffsetDateTime::now_utc();
        let step = managed::plan(parsed.as_ref(), injected, &config.settings, now)
            .map_err(ManagedError::Pki)?;
        match step {
            Step::Keep => {
                stored = parsed;
                break;
            }
            Step::Write(next, why) => {
                let why = match (&secret, why) {
                    (Some(_), Why::Created) => Why::Replaced,
                    (_, why) => why,
                };
                let data = next
                    .to_data()
                    .into_iter()
                    .map(|(k, v)| (k, ByteString(v)))
                    .collect();
                let result = match secret {
                    None => {
                        let new = Secret {
                            metadata: ObjectMeta {
                                name: Some(config.secret.clone()),
                                namespace: Some(config.namespace.clone()),
                                labels: Some(
                                    [(
                                        "app.kubernetes.io/managed-by".to_string(),
                                        "sts-guard".to_string(),
                                    )]
                                    .into(),
                                ),
                                ..Default::default()
                            },
                            type_: Some("kubernetes.io/tls".into()),
                            data: Some(data),
                            ..Default::default()
                        };
                        secrets
                            .create(&PostParams::default(), &new)
                            .await
                            .map(|_| ())
                    }
                    Some(mut old) => {
                        // The resourceVersion read: a concurrent write by
                        // another replica makes this one fail (409).
                        old.data = Some(data);
                        old.string_data = None;
                        secrets
                            .replace(&config.secret, &PostParams::default(), &old)
                            .await
                            .map(|_| ())
                    }
                };
                match result {
                    Ok(()) => {
                        tracing::info!(secret = %shown, step = why.as_str(), "managed certificates: Secret written");
                        stored = Some(*next);
                    }
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        // Another replica was first: read what it wrote.
                        tracing::info!(secret = %shown, "managed certificates: another replica wrote the Secret first; adopting it");
                        continue;
                    }
                    Err(source) => {
                        return Err(ManagedError::Write {
                            what: shown,
                            source,
                        });
                    }
                }
            }
        }
    }
    let Some(stored) = stored else {
        return Err(ManagedError::Unsettled { what: shown });
    };

    // The bundle into every webhook.
    let bundle = ByteString(stored.bundle.as_bytes().to_vec());
    let injected = inject(&validating, vwc_name, &bundle).await?
        & inject(&mutating, vwc_name, &bundle).await?;

    // Serve the Secret's pair.
    let mut swapped = None;
    if served.as_deref() != Some(stored.leaf.cert.as_str()) {
        let key = certified_key(
            stored.leaf.cert.as_bytes(),
            stored.leaf.key.as_bytes(),
            "Secret tls.crt",
            "Secret tls.key",
        )
        .map_err(ManagedError::Serve)?;
        cert.swap(key);
        *served = Some(stored.leaf.cert.clone());
        swapped = Some(Expiry::of_pem(&stored.leaf.cert, Some(&stored.bundle)));
        tracing::info!(secret = %shown, "managed certificates: serving the Secret's certificate");
    }
    let trusted = injected && managed::bundle_trusts(&stored.bundle, &stored.leaf.cert);
    Ok((trusted, swapped))
}

/// What managed mode reads and writes of a webhook configuration: both
/// kinds hold webhooks with a `clientConfig.caBundle`.
trait WebhookConfiguration:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::Serialize
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
    const KIND: &'static str;
    /// The caBundle of each webhook.
    fn bundles(&self) -> Vec<Option<&ByteString>>;
    fn set_bundle(&mut self, bundle: &ByteString);
}

/// Both kinds, whose webhooks are of different types with the same
/// `client_config`.
macro_rules! webhook_configuration {
    ($kind:ident) => {
        impl WebhookConfiguration for $kind {
            const KIND: &'static str = stringify!($kind);
            fn bundles(&self) -> Vec<Option<&ByteString>> {
                let hooks = self.webhooks.iter().flatten();
                hooks.map(|w| w.client_config.ca_bundle.as_ref()).collect()
            }
            fn set_bundle(&mut self, bundle: &ByteString) {
                for w in self.webhooks.iter_mut().flatten() {
                    w.client_config.ca_bundle = Some(bundle.clone());
                }
            }
        }
    };
}

webhook_configuration!(ValidatingWebhookConfiguration);
webhook_configuration!(MutatingWebhookConfiguration);

async fn read<K: WebhookConfiguration>(
    api: &Api<K>,
    name: &str,
) -> Result<Option<K>, ManagedError> {
    api.get_opt(name)
        .await
        .map_err(|source| ManagedError::Read {
            what: format!("{} {name}", K::KIND),
            source,
        })
}

/// True when every webhook of `config` (and there is one) trusts `bundle`.
fn carries<K: WebhookConfiguration>(config: &K, bundle: &[u8]) -> bool {
    let bundles = config.bundles();
    !bundles.is_empty()
        && bundles
            .iter()
            .all(|b| b.map(|b| b.0.as_slice()) == Some(bundle))
}

/// Puts `bundle` into every webhook of configuration `name`. Ok(false): the
/// configuration is missing or changed meanwhile (409); the next pass reads
/// it again.
async fn inject<K: WebhookConfiguration>(
    api: &Api<K>,
    name: &str,
    bundle: &ByteString,
) -> Result<bool, ManagedError> {
    let Some(mut config) = read(api, name).await? else {
        tracing::warn!(
            name,
            kind = K::KIND,
            "managed certificates: no webhook configuration of that name"
        );
        return Ok(false);
    };
    if carries(&config, &bundle.0) {
        return Ok(true);
    }
    config.set_bundle(bundle);
    match api.replace(name, &PostParams::default(), &config).await {
        Ok(_) => {
            tracing::info!(
                kind = K::KIND,
                name,
                "managed certificates: caBundle set to the Secret's ca.crt"
            );
            Ok(true)
        }
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(source) => Err(ManagedError::Write {
            what: format!("{} {name}", K::KIND),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_secret_is_namespace_slash_name() {
        assert_eq!(
            ManagedConfig::parse_secret("sts-guard/sts-guard-tls"),
            Ok(("sts-guard".into(), "sts-guard-tls".into()))
        );
        for bad in ["sts-guard", "/x", "x/", "a/b/c"] {
            let e = ManagedConfig::parse_secret(bad).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("--tls-secret {bad:?}: expected NAMESPACE/NAME")
            );
        }
    }

    /// The sentence names what was done and the API server's answer, once.
    #[test]
    fn errors_read_as_one_sentence_with_their_cause() {
        let status =
            kube::core::Status::failure("secrets \"x\" is forbidden", "Forbidden").with_code(403);
        let e = ManagedError::Write {
            what: "Secret sts-guard/sts-guard-tls".into(),
            source: kube::Error::Api(Box::new(status)),
        };
        assert_eq!(
            e.in_words(),
            "writing Secret sts-guard/sts-guard-tls: the API server answered 403 Forbidden: secrets \"x\" is forbidden"
        );
        assert!(std::error::Error::source(&e).is_some(), "the cause is kept");
        let unsettled = ManagedError::Unsettled {
            what: "Secret a/b".into(),
        };
        assert_eq!(
            unsettled.in_words(),
            "Secret a/b kept changing under this replica (another one writing it); retrying"
        );
    }
}
