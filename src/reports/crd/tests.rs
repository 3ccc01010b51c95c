//! The generated CRDs against the published ones: the same property names
//! at the same places, the same required fields, the same result values.
//!
//! The upstream names, listed by hand from:
//! - https://github.com/openreports/reports-api/blob/main/crd/openreports.io/v1alpha1/openreports.io_reports.yaml
//! - https://github.com/kubernetes-sigs/wg-policy-prototypes/blob/master/policy-report/crd/v1alpha2/wgpolicyk8s.io_clusterpolicyreports.yaml
//!   (the namespaced PolicyReport has the same schema)

use std::collections::BTreeSet;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray,
};

use super::crd;
use crate::reports::{PolicyReport, Report};

fn reference(prefix: &str) -> Vec<String> {
    [
        ".apiVersion",
        ".fieldPath",
        ".kind",
        ".name",
        ".namespace",
        ".resourceVersion",
        ".uid",
    ]
    .iter()
    .map(|f| format!("{prefix}{f}"))
    .collect()
}

fn selector(prefix: &str) -> Vec<String> {
    [
        "",
        ".matchExpressions",
        ".matchExpressions[].key",
        ".matchExpressions[].operator",
        ".matchExpressions[].values",
        ".matchLabels",
    ]
    .iter()
    .map(|f| format!("{prefix}{f}"))
    .collect()
}

/// Every property of a PolicyReport v1alpha2; OpenReports adds two.
fn published_policy_report() -> BTreeSet<String> {
    let mut paths: BTreeSet<String> = [
        "apiVersion",
        "kind",
        "metadata",
        "results",
        "results[].category",
        "results[].message",
        "results[].policy",
        "results[].properties",
        "results[].resources",
        "results[].result",
        "results[].rule",
        "results[].scored",
        "results[].severity",
        "results[].source",
        "results[].timestamp",
        "results[].timestamp.nanos",
        "results[].timestamp.seconds",
        "summary",
        "summary.error",
        "summary.fail",
        "summary.pass",
        "summary.skip",
        "summary.warn",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    paths.insert("scope".into());
    paths.extend(reference("scope"));
    paths.extend(reference("results[].resources[]"));
    paths.extend(selector("scopeSelector"));
    paths.extend(selector("results[].resourceSelector"));
    paths
}

fn published_report() -> BTreeSet<String> {
    let mut paths = published_policy_report();
    paths.extend(
        [
            "source",
            "configuration",
            "configuration.limits",
            "configuration.limits.maxResults",
            "configuration.limits.statusFilter",
        ]
        .map(String::from),
    );
    paths
}

/// `(path, required fields)` wherever the published schemas require any.
fn published_required(openreports: bool) -> BTreeSet<(String, Vec<String>)> {
    let mut required: BTreeSet<(String, Vec<String>)> = [
        ("results[]", vec!["policy"]),
        ("results[].timestamp", vec!["nanos", "seconds"]),
        ("scopeSelector.matchExpressions[]", vec!["key", "operator"]),
        (
            "results[].resourceSelector.matchExpressions[]",
            vec!["key", "operator"],
        ),
    ]
    .into_iter()
    .map(|(p, r)| (p.to_string(), r.into_iter().map(String::from).collect()))
    .collect();
    if openreports {
        required.insert(("configuration".into(), vec!["limits".into()]));
    }
    required
}

/// Visits every property below `schema`: `a.b`, `a[]` for array items.
fn walk<'a>(
    path: &str,
    schema: &'a JSONSchemaProps,
    visit: &mut dyn FnMut(&str, &'a JSONSchemaProps),
) {
    visit(path, schema);
    for (name, child) in schema.properties.iter().flatten() {
        let child_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        walk(&child_path, child, visit);
    }
    if let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items {
        walk(&format!("{path}[]"), items, visit);
    }
}

fn root(crd: &CustomResourceDefinition) -> &JSONSchemaProps {
    crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .expect("a schema")
}

fn paths(crd: &CustomResourceDefinition) -> BTreeSet<String> {
    let mut paths = BTreeSet::new();
    walk("", root(crd), &mut |p, _| {
        // Array items are no property of their own: `results[]` is `results`.
        if !p.is_empty() && !p.ends_with("[]") {
            paths.insert(p.to_string());
        }
    });
    paths
}

fn required(crd: &CustomResourceDefinition) -> BTreeSet<(String, Vec<String>)> {
    let mut found = BTreeSet::new();
    walk("", root(crd), &mut |p, s| {
        if let Some(r) = s.required.as_ref().filter(|r| !r.is_empty()) {
            let mut r = r.clone();
            r.sort();
            found.insert((p.to_string(), r));
        }
    });
    found
}

fn property<'a>(crd: &'a CustomResourceDefinition, path: &str) -> &'a JSONSchemaProps {
    let mut found = None;
    walk("", root(crd), &mut |p, s| {
        if p == path {
            found = Some(s);
        }
    });
    found.unwrap_or_else(|| panic!("no property {path}"))
}

#[test]
fn the_report_crd_has_the_published_field_names() {
    let crd = crd::<Report>();
    assert_eq!(paths(&crd), published_report());
    assert_eq!(required(&crd), published_required(true));
}

#[test]
fn the_policy_report_crd_has_the_published_field_names() {
    let crd = crd::<PolicyReport>();
    assert_eq!(paths(&crd), published_policy_report());
    assert_eq!(required(&crd), published_required(false));
}

#[test]
fn results_take_the_published_values_and_types() {
    for crd in [crd::<Report>(), crd::<PolicyReport>()] {
        let result = property(&crd, "results[].result");
        let values: Vec<String> = result
            .enum_
            .iter()
            .flatten()
            .map(|v| v.0.as_str().unwrap_or_default().to_string())
            .collect();
        assert_eq!(values, ["pass", "fail", "warn", "error", "skip"]);
        let types = |p: &str| property(&crd, p).type_.clone().unwrap_or_default();
        assert_eq!(types("results[].timestamp.seconds"), "integer");
        assert_eq!(types("results[].timestamp.nanos"), "integer");
        assert_eq!(types("summary.fail"), "integer");
        assert_eq!(types("results[].properties"), "object");
        assert_eq!(types("scope.uid"), "string");
    }
}

#[test]
fn the_crds_are_named_as_published() {
    let report = crd::<Report>();
    assert_eq!(
        report.metadata.name.as_deref(),
        Some("reports.openreports.io")
    );
    assert_eq!(
        report.spec.names.short_names,
        Some(vec!["reps".to_string()])
    );
    assert_eq!(report.spec.versions[0].name, "v1alpha1");
    let policy = crd::<PolicyReport>();
    assert_eq!(
        policy.metadata.name.as_deref(),
        Some("policyreports.wgpolicyk8s.io")
    );
    assert_eq!(
        policy.spec.names.list_kind.as_deref(),
        Some("PolicyReportList")
    );
    assert_eq!(policy.spec.versions[0].name, "v1alpha2");
}
