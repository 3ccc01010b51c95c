//! What `serve` checks of its own registration when it knows it
//! (`--webhook-configuration`): that the API server waits long enough for
//! an answer. A review waits at most `--lookup-timeout` for its lookups;
//! an API server that gives up first (`timeoutSeconds`) refuses the write
//! under `failurePolicy: Fail`, the outage sts-guard exists to avoid.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use kube::{Api, Client};

/// What the answer needs beside the lookups: decoding, the review,
/// encoding and the hop back, with room for a loaded node.
pub const HEADROOM: Duration = Duration::from_secs(1);

/// The API server's default when a webhook sets no `timeoutSeconds`.
const DEFAULT_TIMEOUT_SECONDS: i32 = 10;

#[derive(Debug, thiserror::Error)]
#[error(
    "--lookup-timeout {} leaves less than {} of timeoutSeconds: {timeout_seconds} of webhook {webhook:?} in ValidatingWebhookConfiguration {configuration:?}; lower --lookup-timeout to {} or less, or raise timeoutSeconds",
    humantime::format_duration(*.lookup),
    humantime::format_duration(HEADROOM),
    humantime::format_duration(*.fits)
)]
pub struct TimeoutTooShort {
    lookup: Duration,
    fits: Duration,
    timeout_seconds: i32,
    webhook: String,
    configuration: String,
}

/// Refuses a `lookup_timeout` that does not leave [`HEADROOM`] inside the
/// shortest `timeoutSeconds` of `configuration`'s webhooks.
pub fn check_timeout(
    lookup_timeout: Duration,
    configuration: &ValidatingWebhookConfiguration,
) -> Result<(), TimeoutTooShort> {
    let shortest = configuration
        .webhooks
        .iter()
        .flatten()
        .map(|w| {
            (
                w.timeout_seconds.unwrap_or(DEFAULT_TIMEOUT_SECONDS),
                &w.name,
            )
        })
        .min();
    let Some((timeout_seconds, webhook)) = shortest else {
        return Ok(());
    };
    let allowed = Duration::from_secs(timeout_seconds.max(0) as u64);
    if lookup_timeout + HEADROOM <= allowed {
        return Ok(());
    }
    Err(TimeoutTooShort {
        lookup: lookup_timeout,
        fits: allowed.saturating_sub(HEADROOM),
        timeout_seconds,
        webhook: webhook.clone(),
        configuration: configuration.metadata.name.clone().unwrap_or_default(),
    })
}

/// Reads the ValidatingWebhookConfiguration `name` and checks it. One
/// that cannot be read is not a reason to refuse to start (the managed
/// certificates report it, and keep trying): only a registration that is
/// known to time out first is.
pub async fn verify(
    client: &Client,
    name: &str,
    lookup_timeout: Duration,
) -> Result<(), TimeoutTooShort> {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    match tokio::time::timeout(Duration::from_secs(5), api.get_opt(name)).await {
        Ok(Ok(Some(configuration))) => check_timeout(lookup_timeout, &configuration),
        Ok(Ok(None)) => {
            tracing::warn!(
                configuration = name,
                "ValidatingWebhookConfiguration not found; its timeoutSeconds is not checked"
            );
            Ok(())
        }
        Ok(Err(e)) => {
            tracing::warn!(configuration = name, error = %crate::kube_errors::describe(&e), "cannot read the ValidatingWebhookConfiguration; its timeoutSeconds is not checked");
            Ok(())
        }
        Err(_) => {
            tracing::warn!(
                configuration = name,
                "reading the ValidatingWebhookConfiguration timed out; its timeoutSeconds is not checked"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use serde_json::json;

    fn configuration(timeouts: &[Option<i32>]) -> ValidatingWebhookConfiguration {
        let webhooks: Vec<_> = timeouts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                json!({"name": format!("w{i}.sts-guard.io"), "timeoutSeconds": t,
                       "clientConfig": {}, "sideEffects": "None", "admissionReviewVersions": ["v1"]})
            })
            .collect();
        serde_json::from_value(json!({"metadata": {"name": "sts-guard"}, "webhooks": webhooks}))
            .unwrap()
    }

    #[rstest]
    #[case::shipped(2, &[Some(5)], true)]
    #[case::one_second_left(4, &[Some(5)], true)]
    #[case::too_long(5, &[Some(5)], false)]
    #[case::default_ten(9, &[None], true)]
    #[case::default_ten_too_long(10, &[None], false)]
    #[case::the_shortest_counts(3, &[Some(10), Some(3)], false)]
    #[case::no_webhooks(30, &[], true)]
    fn the_lookup_timeout_fits_inside_timeout_seconds(
        #[case] lookup_seconds: u64,
        #[case] timeouts: &[Option<i32>],
        #[case] fits: bool,
    ) {
        let result = check_timeout(
            Duration::from_secs(lookup_seconds),
            &configuration(timeouts),
        );
        assert_eq!(result.is_ok(), fits, "{result:?}");
    }

    #[test]
    fn the_refusal_names_both_values_and_the_fix() {
        let e = check_timeout(Duration::from_secs(5), &configuration(&[Some(5)])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--lookup-timeout 5s leaves less than 1s of timeoutSeconds: 5 of webhook \"w0.sts-guard.io\" in ValidatingWebhookConfiguration \"sts-guard\"; lower --lookup-timeout to 4s or less, or raise timeoutSeconds"
        );
    }

    /// The documents of a multi-document YAML file of the repository.
    fn documents(text: &str) -> Vec<serde_json::Value> {
        serde_saphyr::from_multiple(text).unwrap()
    }

    #[test]
    fn deploy_and_the_chart_leave_a_second_of_timeout_seconds() {
        let configuration = documents(include_str!("../../deploy/base/webhooks.yaml"))
            .into_iter()
            .find(|d| d["kind"] == "ValidatingWebhookConfiguration")
            .unwrap();
        let configuration: ValidatingWebhookConfiguration =
            serde_json::from_value(configuration).unwrap();
        let deployment = documents(include_str!("../../deploy/base/deployment.yaml"))
            .into_iter()
            .find(|d| d["kind"] == "Deployment")
            .unwrap();
        let env = &deployment["spec"]["template"]["spec"]["containers"][0]["env"];
        let lookup = env
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "STS_GUARD_LOOKUP_TIMEOUT")
            .and_then(|e| e["value"].as_str())
            .expect("deploy/ sets STS_GUARD_LOOKUP_TIMEOUT");
        let lookup = humantime::parse_duration(lookup).unwrap();
        check_timeout(lookup, &configuration).unwrap();

        let values: serde_json::Value =
            serde_saphyr::from_str(include_str!("../../charts/sts-guard/values.yaml")).unwrap();
        let chart_lookup = values["lookupTimeoutSeconds"].as_u64().unwrap();
        let chart_timeout = values["webhooks"]["validate"]["timeoutSeconds"]
            .as_u64()
            .unwrap();
        assert_eq!(
            Duration::from_secs(chart_lookup),
            lookup,
            "chart and deploy/ agree"
        );
        assert!(Duration::from_secs(chart_lookup) + HEADROOM <= Duration::from_secs(chart_timeout));
    }
}
