//! The parts `openreports.io/v1alpha1` `Report` and
//! `wgpolicyk8s.io/v1alpha2` `PolicyReport` share: field for field the Go
//! types of openreports/reports-api (`apis/openreports.io/v1alpha1`) and
//! kubernetes-sigs/wg-policy-prototypes
//! (`policy-report/apis/wgpolicyk8s.io/v1alpha2`), which are the same
//! below the root.
//!
//! A field the Go type marks `+optional` (or gives `omitempty`) has
//! `#[serde(default)]` here, so the generated schema requires exactly what
//! the published one requires; the test in `crd.rs` holds both to it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `corev1.ObjectReference`: what `scope` and `results[].resources` name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// `metav1.LabelSelector` (`scopeSelector`, `results[].resourceSelector`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_expressions: Option<Vec<LabelSelectorRequirement>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub match_labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<String>>,
}

/// `ReportSummary` / `PolicyReportSummary`: how many results of each kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct ReportSummary {
    pub pass: i64,
    pub fail: i64,
    pub warn: i64,
    pub error: i64,
    pub skip: i64,
}

impl ReportSummary {
    pub fn of(results: &[ReportResult]) -> ReportSummary {
        let mut s = ReportSummary::default();
        for r in results {
            match r.result {
                Some(PolicyResult::Pass) => s.pass += 1,
                Some(PolicyResult::Fail) => s.fail += 1,
                Some(PolicyResult::Warn) => s.warn += 1,
                Some(PolicyResult::Error) => s.error += 1,
                Some(PolicyResult::Skip) => s.skip += 1,
                None => {}
            }
        }
        s
    }
}

/// `Result` / `PolicyResult`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PolicyResult {
    /// The requirements are met.
    Pass,
    /// Not met; sts-guard would deny the StatefulSet.
    Fail,
    /// Not met; sts-guard admits it (warn or audit mode).
    Warn,
    /// Could not be evaluated.
    Error,
    /// Not applied: an exemption covers it.
    Skip,
}

/// `metav1.Timestamp`: seconds and nanoseconds since the Unix epoch (the
/// protobuf form, not RFC 3339).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Timestamp {
    pub seconds: i64,
    pub nanos: i32,
}

impl Timestamp {
    pub fn now() -> Timestamp {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            seconds: i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX),
            // Below 1e9 by construction.
            nanos: i32::try_from(since_epoch.subsec_nanos()).unwrap_or(0),
        }
    }
}

/// `ReportResult` / `PolicyReportResult`: one check of one rule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReportResult {
    #[serde(default)]
    pub source: String,
    pub policy: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// An enum upstream whose values differ between the two APIs
    /// (`critical` and `info` are OpenReports' only); sts-guard sets none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<PolicyResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scored: Option<bool>,
    /// `Subjects` in Go; `resources` on the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<ObjectReference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_selector: Option<LabelSelector>,
    /// `Description` in Go; `message` on the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<BTreeMap<String, String>>,
}
