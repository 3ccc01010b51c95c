//! `openreports.io/v1alpha1` `Report`, as openreports/reports-api
//! (`apis/openreports.io/v1alpha1/report_types.go`) defines it.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::types::{LabelSelector, ObjectReference, PolicyResult, ReportResult, ReportSummary};
use super::{ReportApi, ReportKind, SOURCE, metadata_schema, report_resource};

/// Report is the Schema for the reports API
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    #[schemars(schema_with = "metadata_schema")]
    pub metadata: ObjectMeta,
    /// Which engine wrote the report; its results may name their own.
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<ReportConfiguration>,
    #[serde(default)]
    pub summary: ReportSummary,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<ReportResult>,
}

/// A contract between report writers and readers; sts-guard sets none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReportConfiguration {
    pub limits: Limits,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    #[serde(default)]
    pub max_results: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_filter: Option<Vec<PolicyResult>>,
}

impl ReportKind for Report {
    const API: ReportApi = ReportApi {
        group: "openreports.io",
        version: "v1alpha1",
        kind: "Report",
        plural: "reports",
        singular: "report",
        short_name: "reps",
    };

    fn assemble(
        metadata: ObjectMeta,
        scope: ObjectReference,
        summary: ReportSummary,
        results: Vec<ReportResult>,
    ) -> Self {
        Report {
            api_version: Self::API.api_version(),
            kind: Self::API.kind.into(),
            metadata,
            source: SOURCE.into(),
            scope: Some(scope),
            summary,
            results,
            ..Report::default()
        }
    }
}

report_resource!(Report);
