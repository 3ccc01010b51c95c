//! Policy report objects for what `audit` found: one per StatefulSet, in
//! its namespace, in either of the two APIs report readers (Policy
//! Reporter and friends) consume: `openreports.io/v1alpha1` `Report` and
//! the older `wgpolicyk8s.io/v1alpha2` `PolicyReport`.
//!
//! This module builds them (pure: from a StatefulSet's review outcomes to
//! a report object) and describes their CRDs; `commands::audit` writes
//! them.
//!
//! What a report holds, and why:
//! - `metadata.name` is `sts-guard-<StatefulSet name>` ([`report_name`]):
//!   readable in `kubectl get reports`, one per StatefulSet so a rerun
//!   applies over it, and distinct from the reports Kyverno and Kubewarden
//!   name after the object's uid, so they never overwrite each other.
//! - `metadata.labels` carries [`MANAGED_BY`]: what `audit` prunes by.
//! - An owner reference to the StatefulSet, so the garbage collector
//!   removes the report with it (no `blockOwnerDeletion`: that would need
//!   `update` on `statefulsets/finalizers`).
//! - `scope` names the StatefulSet (apiVersion, kind, name, namespace, uid).
//! - One result per finding, and one `pass` result for each rule without
//!   one, so every rule appears: `fail` where the webhook would deny, `warn`
//!   where it would admit with a warning or in audit mode, `skip` where an
//!   exemption waived the finding (its reason in the message and in
//!   `properties.reason`).

mod crd;
mod openreports;
mod types;
mod wgpolicyk8s;

use std::collections::BTreeMap;
use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use crd::crd;
pub use openreports::Report;
pub use types::{
    LabelSelector, LabelSelectorRequirement, ObjectReference, PolicyResult, ReportResult,
    ReportSummary, Timestamp,
};
pub use wgpolicyk8s::PolicyReport;

use crate::review::{Action, Outcome};
use crate::rules::{RULES, Rule};

/// `source` of every report and result.
pub const SOURCE: &str = "sts-guard";

/// The label every report sts-guard writes carries, and the one `audit`
/// selects by when it deletes reports of StatefulSets that are gone.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "sts-guard");

/// Which report API to write (`audit --report`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// openreports.io/v1alpha1 Report.
    #[value(name = "openreports")]
    OpenReports,
    /// wgpolicyk8s.io/v1alpha2 PolicyReport.
    Wgpolicyk8s,
}

/// Group, version and names of a report API: what its CRD declares.
#[derive(Debug)]
pub struct ReportApi {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub short_name: &'static str,
}

impl ReportApi {
    /// `reports.openreports.io`
    pub fn crd_name(&self) -> String {
        format!("{}.{}", self.plural, self.group)
    }

    /// `openreports.io/v1alpha1`
    pub fn api_version(&self) -> String {
        format!("{}/{}", self.group, self.version)
    }
}

/// A report type: the API it belongs to, and how it is put together.
pub trait ReportKind:
    kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + schemars::JsonSchema
    + Serialize
    + DeserializeOwned
    + Clone
    + Debug
    + Send
    + Sync
    + 'static
{
    const API: ReportApi;

    fn assemble(
        metadata: ObjectMeta,
        scope: ObjectReference,
        summary: ReportSummary,
        results: Vec<ReportResult>,
    ) -> Self;
}

/// `kube::Resource` for a report type, from its [`ReportApi`].
macro_rules! report_resource {
    ($type:ty) => {
        impl kube::Resource for $type {
            type DynamicType = ();
            type Scope = k8s_openapi::NamespaceResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                <$type as $crate::reports::ReportKind>::API.kind.into()
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                <$type as $crate::reports::ReportKind>::API.group.into()
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                <$type as $crate::reports::ReportKind>::API.version.into()
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                <$type as $crate::reports::ReportKind>::API.plural.into()
            }
            fn meta(&self) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(
                &mut self,
            ) -> &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
use report_resource;

/// The schema of `metadata` in a CRD: the API server validates it itself.
fn metadata_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "type": "object" })
}

/// The StatefulSet a report is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
}

/// Longest object name the API accepts (a DNS subdomain).
const MAX_NAME: usize = 253;
const NAME_PREFIX: &str = "sts-guard-";

/// `sts-guard-<name>`; for a name too long to take the prefix, its first
/// characters and a hash of all of it, so distinct StatefulSets keep
/// distinct reports.
pub fn report_name(statefulset: &str) -> String {
    let name = format!("{NAME_PREFIX}{statefulset}");
    if name.len() <= MAX_NAME {
        return name;
    }
    let hash = format!("-{:016x}", fnv1a(statefulset.as_bytes()));
    let mut keep = MAX_NAME - NAME_PREFIX.len() - hash.len();
    // A DNS subdomain is ASCII; `is_char_boundary` only guards the slice.
    while !statefulset.is_char_boundary(keep) {
        keep -= 1;
    }
    let head = statefulset[..keep].trim_end_matches(['-', '.']);
    format!("{NAME_PREFIX}{head}{hash}")
}

/// FNV-1a, 64 bits: stable across builds and platforms, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The report for one audited StatefulSet, from its review's outcomes.
pub fn build<K: ReportKind>(outcomes: &[Outcome], owner: &Owner<'_>, at: Timestamp) -> K {
    let results = results(outcomes, at);
    let summary = ReportSummary::of(&results);
    let metadata = ObjectMeta {
        name: Some(report_name(owner.name)),
        namespace: Some(owner.namespace.to_string()),
        labels: Some(BTreeMap::from([(
            MANAGED_BY.0.to_string(),
            MANAGED_BY.1.to_string(),
        )])),
        owner_references: Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: "StatefulSet".into(),
            name: owner.name.to_string(),
            uid: owner.uid.to_string(),
            ..OwnerReference::default()
        }]),
        ..ObjectMeta::default()
    };
    let scope = ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("StatefulSet".into()),
        name: Some(owner.name.to_string()),
        namespace: Some(owner.namespace.to_string()),
        uid: Some(owner.uid.to_string()),
        ..ObjectReference::default()
    };
    K::assemble(metadata, scope, summary, results)
}

/// Every rule's results, in rule order: one per outcome, or `pass`.
pub fn results(outcomes: &[Outcome], at: Timestamp) -> Vec<ReportResult> {
    let mut results = Vec::new();
    for rule in RULES {
        let before = results.len();
        results.extend(
            outcomes
                .iter()
                .filter(|o| o.finding.rule == rule.id)
                .map(|o| finding_result(rule, o, at)),
        );
        if results.len() == before {
            results.push(ReportResult {
                result: Some(PolicyResult::Pass),
                message: Some(rule.summary.to_string()),
                ..result_of(rule, at)
            });
        }
    }
    results
}

/// What every result of `rule` says, whatever came of it.
fn result_of(rule: &Rule, at: Timestamp) -> ReportResult {
    ReportResult {
        source: SOURCE.to_string(),
        policy: rule.id.as_str().to_string(),
        rule: Some(rule.id.as_str().to_string()),
        timestamp: Some(at),
        ..ReportResult::default()
    }
}

/// Audit mode maps to `warn`, not `fail`: `fail` is kept for what the
/// webhook would deny, so a report's `fail` count and `audit`'s exit code
/// agree; `properties.action` still tells `audit` from `warn`.
fn finding_result(rule: &Rule, outcome: &Outcome, at: Timestamp) -> ReportResult {
    let finding = &outcome.finding;
    let result = match outcome.action {
        Action::Deny => PolicyResult::Fail,
        Action::Warn(_) | Action::Audit => PolicyResult::Warn,
        Action::Exempt(_) => PolicyResult::Skip,
    };
    let mut message = format!(
        "{} {}: {}",
        finding.location(),
        finding.problem,
        finding.fix
    );
    if let Action::Exempt(reason) = &outcome.action {
        message.push_str(&format!(" (exempt: {reason})"));
    }
    let mut properties = BTreeMap::from([
        ("path".to_string(), finding.path.to_string()),
        ("action".to_string(), outcome.action.label().to_string()),
    ]);
    if let Some(container) = &finding.container {
        properties.insert("container".into(), container.clone());
    }
    if let Some(reason) = outcome.action.reason() {
        properties.insert("reason".into(), reason);
    }
    ReportResult {
        result: Some(result),
        message: Some(message),
        properties: Some(properties),
        ..result_of(rule, at)
    }
}

#[cfg(test)]
mod tests;
