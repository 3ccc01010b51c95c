//! `serve --admission-policies`: keeps the ValidatingAdmissionPolicies and
//! bindings [`crate::vap`] generates for the policy in effect applied in
//! the API server, so the field rules are enforced there even while the
//! webhook is down.
//!
//! - Server-side apply with one field manager (`sts-guard`, forced: the
//!   generated objects are sts-guard's alone), so every replica applies the
//!   same objects and an unchanged one is not written at all.
//! - Generated objects it no longer wants (a rule whose mode went, a
//!   binding whose mode no namespace has) are deleted: they carry
//!   `app.kubernetes.io/managed-by: sts-guard`.
//! - It syncs again when the policy in effect changes (checked every
//!   second: a pointer comparison), when a generated object is deleted or
//!   edited (a watch of that label), when an exemption compiled in expires
//!   (CEL has no clock), and once a minute regardless.
//! - An API server that does not serve `admissionregistration.k8s.io/v1`
//!   ValidatingAdmissionPolicy: a log line, and nothing else happens.
//! - Once applied, the webhook leaves those rules' findings out of its
//!   answers (still logged and counted): a user sees each finding once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};

use super::routes::App;
use crate::policy::Policy;

/// The field manager of the generated objects.
const FIELD_MANAGER: &str = "sts-guard";

/// A full sync at least this often, whatever happened.
const RESYNC: Duration = Duration::from_secs(60);

/// Runs until the task is dropped.
pub async fn run(client: kube::Client, app: Arc<App>, platform_namespace: String) {
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    if let Err(kube::Error::Api(status)) = policies.list(&ListParams::default().limit(1)).await
        && status.code == 404
    {
        tracing::warn!(
            "the API server does not serve admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy; --admission-policies does nothing"
        );
        return std::future::pending().await;
    }
    let (key, value) = crate::vap::MANAGED_BY;
    let selector = format!("{key}={value}");
    let config = watcher::Config::default().labels(&selector);
    // Any change to a generated object: sync again (our own applies come
    // back too, and find nothing to do).
    let mut touched = futures::stream::select(
        watcher(policies.clone(), config.clone())
            .default_backoff()
            .map(|_| ())
            .boxed(),
        watcher(bindings.clone(), config)
            .default_backoff()
            .map(|_| ())
            .boxed(),
    );
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut synced: Option<(Arc<Policy>, tokio::time::Instant)> = None;
    let mut next_expiry: Option<jiff::Timestamp> = None;
    let mut failures: u32 = 0;
    loop {
        let event = tokio::select! {
            _ = ticker.tick() => false,
            Some(()) = touched.next() => true,
        };
        let policy = app.policy.load_full();
        let now = jiff::Timestamp::now();
        let due = match &synced {
            None => true,
            Some((last, at)) => {
                event
                    || !Arc::ptr_eq(last, &policy)
                    || at.elapsed() >= RESYNC
                    || next_expiry.is_some_and(|e| e <= now)
            }
        };
        if !due {
            continue;
        }
        match sync(
            &policies,
            &bindings,
            &policy,
            &platform_namespace,
            now,
            &selector,
        )
        .await
        {
            Ok(()) => {
                failures = 0;
                // The API server takes new policies up within about a
                // second of their write; the webhook stops reporting those
                // findings now, so that window reports them nowhere.
                if !app.field_rules_in_api_server.swap(true, Ordering::AcqRel) {
                    tracing::info!(
                        "ValidatingAdmissionPolicies applied; the API server reports the field rules' findings from now on"
                    );
                }
                synced = Some((policy.clone(), tokio::time::Instant::now()));
                next_expiry = policy.exemption_objects().next_expiry(now);
            }
            Err(e) => {
                // 1 s, 2 s, 4 s ... at most a minute between tries (a
                // missing RBAC grant fails every time).
                let wait = Duration::from_secs(1 << failures.min(6)).min(RESYNC);
                failures += 1;
                tracing::warn!(error = %e, retry_in = ?wait, "cannot sync the ValidatingAdmissionPolicies");
                synced = None;
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Applies what `policy` generates at `now` and deletes the generated
/// objects it does not.
async fn sync(
    policies: &Api<ValidatingAdmissionPolicy>,
    bindings: &Api<ValidatingAdmissionPolicyBinding>,
    policy: &Policy,
    platform_namespace: &str,
    now: jiff::Timestamp,
    selector: &str,
) -> Result<(), kube::Error> {
    let apply = PatchParams::apply(FIELD_MANAGER).force();
    let generated = crate::vap::generate(policy, platform_namespace, now);
    let mut wanted_policies = Vec::new();
    let mut wanted_bindings = Vec::new();
    for rule in &generated {
        let name = rule.policy.metadata.name.clone().unwrap_or_default();
        policies
            .patch(&name, &apply, &Patch::Apply(&rule.policy))
            .await?;
        wanted_policies.push(name);
        for binding in &rule.bindings {
            let name = binding.metadata.name.clone().unwrap_or_default();
            bindings
                .patch(&name, &apply, &Patch::Apply(binding))
                .await?;
            wanted_bindings.push(name);
        }
    }
    let listed = ListParams::default().labels(selector);
    for stale in bindings.list_metadata(&listed).await? {
        let name = stale.metadata.name.unwrap_or_default();
        if !wanted_bindings.contains(&name) {
            bindings.delete(&name, &DeleteParams::default()).await?;
            tracing::info!(binding = %name, "deleted a ValidatingAdmissionPolicyBinding the policy no longer asks for");
        }
    }
    for stale in policies.list_metadata(&listed).await? {
        let name = stale.metadata.name.unwrap_or_default();
        if !wanted_policies.contains(&name) {
            policies.delete(&name, &DeleteParams::default()).await?;
            tracing::info!(policy = %name, "deleted a ValidatingAdmissionPolicy the policy no longer asks for");
        }
    }
    tracing::debug!(
        policies = wanted_policies.len(),
        bindings = wanted_bindings.len(),
        "ValidatingAdmissionPolicies in sync"
    );
    Ok(())
}
