//! Mutations, as minimal RFC 6902 patches.
//!
//! Each mutation looks at the object as the API server sent it and adds only
//! what is missing, so a second call on the patched object (reinvocation,
//! re-apply) returns no patch, and dry-run gets the same patch as a real
//! request.

use std::time::Duration;

use json_patch::jsonptr::PointerBuf;
use json_patch::{AddOperation, Patch, PatchOperation};
use k8s_openapi::api::core::v1::Probe;
use serde_json::Value;

use super::{Operation, Request};
use crate::policy::{EffectiveMutations, Policy};
use crate::rules::is_restartable_sidecar;
use crate::view::{Container, StatefulSet};

pub const PARALLEL_ANNOTATION: &str = "sts-guard.io/parallel";
pub const STARTUP_PROBE_ANNOTATION: &str = "sts-guard.io/startup-probe";
pub const STARTUP_TIMEOUT_ANNOTATION: &str = "sts-guard.io/startup-timeout";

/// Kubernetes' default probe period, used when the copied probe has none.
const DEFAULT_PERIOD_SECONDS: i32 = 10;

/// What the mutating side would change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Mutation {
    /// RFC 6902 patch; `None` when nothing changes.
    pub patch: Option<Patch>,
    /// Names of the mutations the patch applies (`parallel`, `startup-probe`).
    pub mutations: Vec<&'static str>,
    /// Notes on the object's `sts-guard.io/` annotations (a value ignored,
    /// a mutation that cannot apply on UPDATE).
    pub notes: Vec<String>,
}

/// Builds the patch for the mutations the policy and annotations ask for.
pub fn mutate(request: &Request<'_>, policy: &Policy) -> Mutation {
    let mut notes = Vec::new();
    let wanted = requested_mutations(
        request.sts,
        policy.mutations(request.object.namespace),
        &mut notes,
    );
    let mut ops = Vec::new();
    let mut mutations = Vec::new();

    // No spec, nothing to patch into (`/spec/podManagementPolicy` would not
    // apply); the API server never sends a StatefulSet without one.
    if let (true, Some(spec)) = (wanted.parallel, request.sts.spec.as_ref()) {
        let current = spec.pod_management_policy.as_deref();
        if current != Some("Parallel") {
            if request.operation == Operation::Create {
                ops.push(add(
                    &["spec", "podManagementPolicy"],
                    Value::from("Parallel"),
                ));
                mutations.push("parallel");
            } else {
                // The field is immutable: patching it would fail every update.
                notes.push(format!(
                    "{PARALLEL_ANNOTATION}: podManagementPolicy cannot change after creation; recreate the StatefulSet to make it Parallel"
                ));
            }
        }
    }

    if wanted.startup_probe {
        let before = ops.len();
        ops.extend(startup_probe_ops(request.sts, wanted.startup_timeout));
        if ops.len() > before {
            mutations.push("startup-probe");
        }
    }

    Mutation {
        patch: (!ops.is_empty()).then_some(Patch(ops)),
        mutations,
        notes,
    }
}

/// Namespace defaults, overridden by the StatefulSet's own annotations.
fn requested_mutations(
    sts: &StatefulSet,
    defaults: EffectiveMutations,
    notes: &mut Vec<String>,
) -> EffectiveMutations {
    let get = |key: &str| sts.annotation(key);
    let mut flag = |key: &str, default: bool| match get(key) {
        None => default,
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                notes.push(format!(
                    "{key}: {v:?} is not \"true\" or \"false\"; ignored"
                ));
                default
            }
        },
    };
    let parallel = flag(PARALLEL_ANNOTATION, defaults.parallel);
    let startup_probe = flag(STARTUP_PROBE_ANNOTATION, defaults.startup_probe);
    let startup_timeout = match get(STARTUP_TIMEOUT_ANNOTATION) {
        None => defaults.startup_timeout,
        Some(v) => match humantime::parse_duration(v.trim()) {
            Ok(d) if !d.is_zero() => d,
            _ => {
                notes.push(format!(
                    "{STARTUP_TIMEOUT_ANNOTATION}: {v:?} is not a duration such as 5m; using {}",
                    humantime::format_duration(defaults.startup_timeout)
                ));
                defaults.startup_timeout
            }
        },
    };
    EffectiveMutations {
        parallel,
        startup_probe,
        startup_timeout,
    }
}

/// One `add` per container (and restartable sidecar) that has a liveness or
/// readiness probe to copy but no startup probe.
fn startup_probe_ops(sts: &StatefulSet, timeout: Duration) -> Vec<PatchOperation> {
    let Some(pod) = sts.pod() else {
        return Vec::new();
    };
    let regular = pod
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| ("containers", i, c));
    let sidecars = pod
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, c)| is_restartable_sidecar(c))
        .map(|(i, c)| ("initContainers", i, c));
    regular
        .chain(sidecars)
        .filter_map(|(list, i, c)| {
            let probe = startup_probe_for(c, timeout)?;
            let index = i.to_string();
            let value = serde_json::to_value(probe).ok()?;
            Some(add(
                &["spec", "template", "spec", list, &index, "startupProbe"],
                value,
            ))
        })
        .collect()
}

/// A startup probe with the same check as the liveness (else readiness)
/// probe, allowing `timeout` before the kubelet gives up and restarts.
pub fn startup_probe_for(container: &Container, timeout: Duration) -> Option<Probe> {
    if container.startup_probe.is_some() {
        return None;
    }
    let source = container
        .liveness_probe
        .as_ref()
        .or(container.readiness_probe.as_ref())?;
    let period = source
        .period_seconds
        .filter(|p| *p > 0)
        .unwrap_or(DEFAULT_PERIOD_SECONDS);
    let failure_threshold = timeout.as_secs().div_ceil(period as u64).max(1);
    Some(Probe {
        exec: source.exec.as_ref().map(Into::into),
        http_get: source.http_get.as_ref().map(Into::into),
        tcp_socket: source.tcp_socket.as_ref().map(Into::into),
        grpc: source.grpc.as_ref().map(Into::into),
        timeout_seconds: source.timeout_seconds,
        period_seconds: Some(period),
        failure_threshold: Some(i32::try_from(failure_threshold).unwrap_or(i32::MAX)),
        // The API requires 1 for startup probes.
        success_threshold: Some(1),
        ..Probe::default()
    })
}

/// `add` at a path given as unescaped segments; escaping `~` and `/` is the
/// pointer type's job.
fn add(segments: &[&str], value: Value) -> PatchOperation {
    PatchOperation::Add(AddOperation {
        path: PointerBuf::from_tokens(segments.iter().copied()),
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pointers_escape_tilde_and_slash() {
        let op = add(&["metadata", "annotations", "sts-guard.io/a~b"], json!("x"));
        let PatchOperation::Add(a) = op else { panic!() };
        assert_eq!(a.path.as_str(), "/metadata/annotations/sts-guard.io~1a~0b");
    }

    #[test]
    fn startup_probe_covers_the_timeout() {
        let c: Container = serde_json::from_value(json!({
            "name": "app",
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 7, "timeoutSeconds": 2}
        }))
        .unwrap();
        let p = startup_probe_for(&c, Duration::from_secs(300)).unwrap();
        assert_eq!(p.http_get.unwrap().path.as_deref(), Some("/healthz"));
        assert_eq!(p.period_seconds, Some(7));
        assert_eq!(p.failure_threshold, Some(43)); // 43 * 7 s >= 300 s
        assert_eq!(p.timeout_seconds, Some(2));
        assert_eq!(p.success_threshold, Some(1));
    }

    #[test]
    fn startup_probe_falls_back_to_readiness_and_skips_existing() {
        let c: Container = serde_json::from_value(json!({
            "name": "db", "readinessProbe": {"exec": {"command": ["pg_isready"]}}
        }))
        .unwrap();
        let p = startup_probe_for(&c, Duration::from_secs(60)).unwrap();
        assert!(p.exec.is_some());
        assert_eq!(p.failure_threshold, Some(6));
        let mut has = c.clone();
        has.startup_probe = Some(crate::view::Probe::default());
        assert!(startup_probe_for(&has, Duration::from_secs(60)).is_none());
        let bare: Container = serde_json::from_value(json!({"name": "x"})).unwrap();
        assert!(startup_probe_for(&bare, Duration::from_secs(60)).is_none());
    }
}
