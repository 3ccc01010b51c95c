//! deploy/prometheus/alerts.yaml held to what ships with it: every alert
//! has a severity, a summary, a description and a runbook section in
//! docs/alerts.md, is listed in README's operations section, is tested
//! firing and not firing in tests/prometheus/alerts_test.yaml (which
//! promtool runs: tests/prometheus/test-rules.sh) with its annotations in
//! annotations_test.yaml, and the chart ships the same rule groups. The
//! metrics and labels the rules use are checked against a running serve in
//! tests/dashboard.rs.

use std::collections::BTreeSet;

use serde_json::Value;

const ALERTS: &str = include_str!("../deploy/prometheus/alerts.yaml");
const CHART_RULES: &str = include_str!("../charts/sts-guard/files/alert-rules.yaml");
const LABEL_TESTS: &str = include_str!("prometheus/alerts_test.yaml");
const ANNOTATION_TESTS: &str = include_str!("prometheus/annotations_test.yaml");
const RUNBOOK: &str = include_str!("../docs/alerts.md");
const README: &str = include_str!("../README.md");

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("YAML")
}

fn rules() -> Vec<Value> {
    let rule = yaml(ALERTS);
    assert_eq!(rule["kind"], "PrometheusRule");
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    rule["spec"]["groups"]
        .as_array()
        .expect("spec.groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .collect()
}

/// (alert, severity) of every rule.
fn alerts() -> BTreeSet<(String, String)> {
    rules()
        .iter()
        .map(|r| {
            (
                r["alert"]
                    .as_str()
                    .expect("only alerting rules")
                    .to_string(),
                r["labels"]["severity"]
                    .as_str()
                    .expect("a severity")
                    .to_string(),
            )
        })
        .collect()
}

#[test]
fn every_alert_says_what_it_means_and_links_its_runbook_section() {
    let rules = rules();
    assert!(rules.len() >= 9, "{rules:?}");
    for rule in &rules {
        let name = rule["alert"].as_str().unwrap();
        let severity = rule["labels"]["severity"].as_str().unwrap();
        assert!(
            ["warning", "critical"].contains(&severity),
            "{name}: severity {severity}"
        );
        assert!(rule["for"].is_string(), "{name}: no for");
        for key in ["summary", "description"] {
            let text = rule["annotations"][key].as_str().unwrap_or_default();
            assert!(text.len() > 20, "{name}: {key} {text:?}");
        }
        let url = rule["annotations"]["runbook_url"].as_str().unwrap();
        let anchor = format!("#{}", name.to_lowercase());
        assert!(
            url.ends_with(&format!("docs/alerts.md{anchor}")),
            "{name}: {url}"
        );
        assert!(
            RUNBOOK.lines().any(|l| l == format!("## {name}")),
            "docs/alerts.md has no section ## {name}"
        );
    }
}

#[test]
fn the_issue_s_alerts_are_all_there() {
    let names: BTreeSet<String> = alerts().into_iter().map(|(n, _)| n).collect();
    for want in [
        "StsGuardDown",
        "StsGuardPodNotReady",
        "StsGuardCertificateExpiring",
        "StsGuardReloadFailing",
        "StsGuardLookupsFailing",
        "StsGuardSlowAdmissions",
        "StsGuardDenialsAfterPolicyChange",
    ] {
        assert!(names.contains(want), "{want} missing: {names:?}");
    }
    let expiring: BTreeSet<String> = alerts()
        .into_iter()
        .filter(|(n, _)| n == "StsGuardCertificateExpiring")
        .map(|(_, s)| s)
        .collect();
    assert_eq!(
        expiring,
        BTreeSet::from(["critical".to_string(), "warning".to_string()])
    );
}

/// (alert, severity of each expected alert; empty: a case where it must not
/// fire) of every alert_rule_test of a promtool test file.
fn cases(text: &str) -> Vec<(String, Vec<String>)> {
    let tests = yaml(text);
    let mut cases = Vec::new();
    for test in tests["tests"].as_array().expect("tests") {
        for case in test["alert_rule_test"].as_array().expect("alert_rule_test") {
            let name = case["alertname"].as_str().unwrap().to_string();
            let severities = case["exp_alerts"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|a| a["exp_labels"]["severity"].as_str().unwrap().to_string())
                .collect();
            cases.push((name, severities));
        }
    }
    cases
}

#[test]
fn every_alert_is_tested_firing_and_not_firing() {
    let label_cases = cases(LABEL_TESTS);
    let annotation_cases = cases(ANNOTATION_TESTS);
    for (name, severity) in alerts() {
        let fires = |cases: &[(String, Vec<String>)]| {
            cases
                .iter()
                .any(|(n, s)| *n == name && s.contains(&severity))
        };
        assert!(
            fires(&label_cases),
            "{name} ({severity}) never fires in alerts_test.yaml"
        );
        assert!(
            label_cases.iter().any(|(n, s)| *n == name && s.is_empty()),
            "{name} has no case where it must not fire"
        );
        assert!(
            fires(&annotation_cases),
            "{name} ({severity}) has no annotations test"
        );
    }
    // Nothing tested that does not exist.
    let names: BTreeSet<String> = alerts().into_iter().map(|(n, _)| n).collect();
    for (name, _) in label_cases.iter().chain(&annotation_cases) {
        assert!(names.contains(name), "a test of the unknown alert {name}");
    }
}

#[test]
fn the_chart_ships_the_same_rule_groups() {
    assert_eq!(
        yaml(CHART_RULES),
        yaml(ALERTS)["spec"],
        "charts/sts-guard/files/alert-rules.yaml differs from the spec of deploy/prometheus/alerts.yaml"
    );
    // The chart puts the release's job in place of this one.
    assert!(CHART_RULES.contains(r#"job="sts-guard""#));
}

#[test]
fn readme_operations_lists_every_alert() {
    let section = README
        .split("\n## Operations\n")
        .nth(1)
        .expect("README has a ## Operations section");
    let section = section.split("\n## ").next().unwrap();
    for (name, _) in alerts() {
        assert!(
            section.contains(&format!("`{name}`")),
            "README's operations section does not list {name}"
        );
    }
}
