//! `wgpolicyk8s.io/v1alpha2` `PolicyReport`, as
//! kubernetes-sigs/wg-policy-prototypes
//! (`policy-report/apis/wgpolicyk8s.io/v1alpha2/policyreport_types.go`)
//! defines it: OpenReports' `Report` without the root `source` and
//! `configuration`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::types::{LabelSelector, ObjectReference, ReportResult, ReportSummary};
use super::{ReportApi, ReportKind, metadata_schema, report_resource};

/// PolicyReport is the Schema for the policyreports API
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyReport {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    #[schemars(schema_with = "metadata_schema")]
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope_selector: Option<LabelSelector>,
    #[serde(default)]
    pub summary: ReportSummary,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub results: Vec<ReportResult>,
}

impl ReportKind for PolicyReport {
    const API: ReportApi = ReportApi {
        group: "wgpolicyk8s.io",
        version: "v1alpha2",
        kind: "PolicyReport",
        plural: "policyreports",
        singular: "policyreport",
        short_name: "polr",
    };

    fn assemble(
        metadata: ObjectMeta,
        scope: ObjectReference,
        summary: ReportSummary,
        results: Vec<ReportResult>,
    ) -> Self {
        PolicyReport {
            api_version: Self::API.api_version(),
            kind: Self::API.kind.into(),
            metadata,
            scope: Some(scope),
            summary,
            results,
            ..PolicyReport::default()
        }
    }
}

report_resource!(PolicyReport);
