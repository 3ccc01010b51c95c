//! `sts-guard policy convert -f FILE`: a policy file as the API objects
//! that say the same; `sts-guard policy crds`: the CustomResourceDefinitions
//! of those objects, as `deploy/` and the chart ship them; `sts-guard
//! policy vap`: the policy as ValidatingAdmissionPolicies and their
//! bindings (`crate::vap`).

use std::collections::BTreeSet;
use std::path::Path;

use kube::api::ObjectMeta;
use serde::Serialize;
use thiserror::Error;

use crate::policy::objects::{self, ExemptionSpec, StatefulSetExemption, StatefulSetPolicy};
use crate::policy::{Exemption, Policy, PolicyError};
use crate::rules::RULES;

#[derive(Debug, Error)]
pub enum ConvertError {
    #[error(transparent)]
    Policy(#[from] PolicyError),
    #[error("{0} (or pass the policy with --config FILE)")]
    Cluster(super::audit::AuditError),
    #[error("cannot write YAML: {0}")]
    Yaml(#[from] serde_saphyr::ser::Error),
}

/// The ValidatingAdmissionPolicies and bindings for the policy file at
/// `config` (else the cluster's policy and exemption objects, as `audit`
/// reads them) at `now`, as one YAML stream: per rule, its policy then its
/// bindings.
pub fn vap(
    config: Option<&Path>,
    platform_namespace: &str,
    now: jiff::Timestamp,
) -> Result<String, ConvertError> {
    let policy = match config {
        Some(path) => Policy::load(path)?,
        None => cluster_policy(platform_namespace)?,
    };
    let mut out = String::new();
    for rule in crate::vap::generate(&policy, platform_namespace, now) {
        if !out.is_empty() {
            out.push_str("---\n");
        }
        out.push_str(&serde_saphyr::to_string(&rule.policy)?);
        for binding in &rule.bindings {
            out.push_str("---\n");
            out.push_str(&serde_saphyr::to_string(binding)?);
        }
    }
    Ok(out)
}

/// The cluster's policy and exemption objects, as `audit` reads them (no
/// `StatefulSetPolicy/default`: the built-in default).
fn cluster_policy(platform_namespace: &str) -> Result<Policy, ConvertError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ConvertError::Cluster(super::audit::AuditError::Runtime(e)))?;
    runtime
        .block_on(async {
            let client = crate::lookup::connect()
                .await
                .map_err(super::audit::AuditError::Config)?;
            super::audit::cluster_policy(&client, None, None, platform_namespace).await
        })
        .map_err(ConvertError::Cluster)
}

/// Both CRDs as one YAML stream.
pub fn crds_yaml() -> Result<String, ConvertError> {
    yaml_stream(&objects::crds())
}

/// The `default` StatefulSetPolicy for the policy file at `path`, and a
/// StatefulSetExemption for each of its exemptions whose namespace the
/// policy lets own exemption objects (`allowExemptionObjects`); the others
/// stay in the policy's `exemptions`, owned by whoever edits the policy.
/// Either way every StatefulSet is judged as before.
pub fn convert(path: &Path) -> Result<String, ConvertError> {
    let policy = Policy::load(path)?;
    let mut spec = policy.spec.clone();
    let (owned, kept): (Vec<Exemption>, Vec<Exemption>) = std::mem::take(&mut spec.exemptions)
        .into_iter()
        .partition(|e| policy.exemption_objects_allowed(&e.namespace));
    spec.exemptions = kept;
    let mut out = yaml_stream(&[StatefulSetPolicy::new(objects::POLICY_NAME, spec)])?;
    let mut names = BTreeSet::new();
    let exemptions: Vec<StatefulSetExemption> = owned
        .into_iter()
        .map(|e| as_object(e, &mut names))
        .collect();
    if !exemptions.is_empty() {
        out.push_str("---\n");
        out.push_str(&yaml_stream(&exemptions)?);
    }
    Ok(out)
}

fn as_object(e: Exemption, taken: &mut BTreeSet<(String, String)>) -> StatefulSetExemption {
    let base = e.name.clone().unwrap_or_else(|| "all".into());
    let mut name = format!("{base}-exemption");
    let mut n = 1;
    while !taken.insert((e.namespace.clone(), name.clone())) {
        n += 1;
        name = format!("{base}-exemption-{n}");
    }
    // A file exemption without rules covers them all; an object names them.
    let rules = if e.rules.is_empty() {
        RULES.iter().map(|r| r.id).collect()
    } else {
        e.rules
    };
    StatefulSetExemption {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(e.namespace),
            ..ObjectMeta::default()
        },
        spec: ExemptionSpec {
            stateful_set: e.name.unwrap_or_else(|| "*".into()),
            rules,
            reason: e.reason,
            ..ExemptionSpec::default()
        },
        status: None,
    }
}

fn yaml_stream<T: Serialize>(objects: &[T]) -> Result<String, ConvertError> {
    let mut out = String::new();
    for (i, object) in objects.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_saphyr::to_string(object)?);
    }
    Ok(out)
}
