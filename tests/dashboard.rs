//! deploy/grafana/sts-guard.json against what `sts-guard serve` exposes:
//! every metric a panel or variable queries is on /metrics, with every
//! label the query matches on or aggregates by; and every metric family
//! serve exposes has a panel. The same for every alert rule of
//! deploy/prometheus/alerts.yaml.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;
use support::control_plane::http_get;
use support::*;

const DASHBOARD: &str = include_str!("../deploy/grafana/sts-guard.json");

/// The label names each sample name carries on a /metrics page.
fn exposed(page: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut exposed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = exposed.entry(line[..name_end].to_string()).or_default();
        if line[name_end..].starts_with('{') {
            labels.extend(label_names(&line[name_end + 1..]));
        }
    }
    exposed
}

/// The names of `a="x",b="y\"z"}...`, up to the closing brace.
fn label_names(mut rest: &str) -> Vec<String> {
    let mut names = Vec::new();
    while let Some(eq) = rest.find('=') {
        if rest.starts_with('}') {
            break;
        }
        names.push(rest[..eq].trim().trim_start_matches(',').trim().to_string());
        // Skip the quoted value, escapes included.
        let value = &rest[eq + 1..];
        let mut chars = value.char_indices().skip(1);
        let mut end = value.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = value[end..].trim_start_matches(',');
    }
    names
}

/// What one PromQL expression asks of the metrics: each sts-guard metric
/// with the labels its `{...}` matchers name, and the labels of every
/// `by (...)` clause.
#[derive(Debug, Default)]
struct Query {
    metrics: BTreeMap<String, BTreeSet<String>>,
    by: BTreeSet<String>,
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn parse(expr: &str) -> Query {
    let mut query = Query::default();
    let mut i = 0;
    while i < expr.len() {
        let rest = &expr[i..];
        let c = rest.chars().next().unwrap();
        if c == '"' {
            // A string (a matcher's value, a legend): skip it whole.
            let close = rest[1..].find('"').map_or(rest.len(), |n| n + 2);
            i += close;
            continue;
        }
        if !is_ident(c) || (i > 0 && is_ident(expr[..i].chars().last().unwrap())) {
            i += c.len_utf8();
            continue;
        }
        let len = rest.find(|c: char| !is_ident(c)).unwrap_or(rest.len());
        let word = &rest[..len];
        let after = rest[len..].trim_start();
        if word.starts_with("sts_guard_") {
            let labels = query.metrics.entry(word.to_string()).or_default();
            if let Some(matchers) = after.strip_prefix('{') {
                let body = &matchers[..matchers.find('}').expect("a closing brace")];
                labels.extend(matcher_names(body));
            }
        } else if (word == "by" || word == "without") && after.starts_with('(') {
            let list = &after[1..after.find(')').expect("a closing parenthesis")];
            query.by.extend(
                list.split(',')
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty()),
            );
        }
        i += len;
    }
    query
}

/// `endpoint="validate", decision=~"denied|invalid"` → endpoint, decision.
fn matcher_names(body: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = body;
    while let Some(op) = rest.find(['=', '!']) {
        names.push(rest[..op].trim().trim_start_matches(',').trim().to_string());
        let open = rest[op..].find('"').expect("a quoted value") + op;
        let close = rest[open + 1..].find('"').expect("a closing quote") + open + 1;
        rest = &rest[close + 1..];
    }
    names
}

/// Every PromQL expression of the dashboard: panel targets (rows
/// included) and query variables (`label_values(metric, label)`).
fn expressions(dashboard: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    fn panels(list: &Value, exprs: &mut Vec<String>) {
        for panel in list.as_array().into_iter().flatten() {
            for target in panel["targets"].as_array().into_iter().flatten() {
                exprs.push(target["expr"].as_str().expect("an expr").to_string());
            }
            panels(&panel["panels"], exprs);
        }
    }
    panels(&dashboard["panels"], &mut exprs);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] == "query" {
            let query = variable["query"]["query"]
                .as_str()
                .or(variable["query"].as_str())
                .expect("a variable query");
            // label_values(metric, label) reads as a matcher on label.
            let inner = query
                .strip_prefix("label_values(")
                .and_then(|q| q.strip_suffix(')'))
                .expect("label_values(metric, label)");
            let (metric, label) = inner.split_once(',').expect("metric, label");
            exprs.push(format!("{}{{{}=~\".*\"}}", metric.trim(), label.trim()));
        }
    }
    exprs
}

/// serve after a few reviews on both endpoints (allowed, denied with a
/// finding, mutated, a PodDisruptionBudget lookup for three replicas) and
/// a policy reload: every metric family has samples.
async fn scraped_metrics() -> String {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let ca = certs.path().join("ca.crt");
    let config = tempfile::tempdir().unwrap();
    mount_version(config.path(), "v1", &[("policy.yaml", b"mode: enforce\n")]);
    let policy = config.path().join("policy.yaml");
    let serve = Serve::start(certs.path(), &["--config", policy.to_str().unwrap()]);
    serve.wait_ready(&tls_connector(&ca)).await;

    let mut client = Client::connect(serve.addr, &ca).await.unwrap();
    let (status, allowed) = client.review("/validate", &fixture()).await;
    assert_eq!(
        (status, &allowed["response"]["allowed"]),
        (200, &Value::Bool(true))
    );
    let (_, denied) = client
        .review("/validate", &fixture_without_liveness())
        .await;
    assert_eq!(denied["response"]["allowed"], false);
    let mut mutated = fixture();
    mutated["request"]["object"]["metadata"]["annotations"] =
        serde_json::json!({"sts-guard.io/parallel": "true"});
    let (status, _) = client.review("/mutate", &mutated).await;
    assert_eq!(status, 200);

    mount_version(config.path(), "v2", &[("policy.yaml", b"mode: warn\n")]);
    let reloaded = wait_until(Duration::from_secs(10), || async {
        http_get(serve.metrics_addr, "/metrics")
            .map(|(_, page)| page.contains("sts_guard_reloads_total{"))
            .unwrap_or(false)
    })
    .await;
    assert!(reloaded, "no reload counted; log:\n{}", serve.log());
    let (status, page) = http_get(serve.metrics_addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    page
}

#[tokio::test]
async fn every_metric_the_dashboard_queries_is_exposed_with_its_labels() {
    let exposed = exposed(&scraped_metrics().await);
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let exprs = expressions(&dashboard);
    assert!(exprs.len() >= 10, "{exprs:?}");

    let (queried, checked_labels) = check_against(&exprs, &exposed);
    // The parser saw what the panels are about.
    for label in [
        "endpoint",
        "decision",
        "rule",
        "action",
        "namespace",
        "path",
        "what",
        "result",
        "le",
        "certificate",
    ] {
        assert!(
            checked_labels.contains(label),
            "no query uses {label}: {checked_labels:?}"
        );
    }

    // And every family serve exposes is on the dashboard.
    let families: BTreeSet<&str> = exposed
        .keys()
        .filter(|name| name.starts_with("sts_guard_"))
        .map(|name| {
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .unwrap_or(name)
        })
        .collect();
    for family in families {
        assert!(
            queried.iter().any(|q| q.starts_with(family)) || DEPRECATED_FAMILIES.contains(&family),
            "{family} is exposed but on no panel"
        );
    }
}

/// Families kept for one release beside the one that replaced them
/// (`sts_guard_lookups_total{kind}`, see CHANGELOG.md): on no panel, and
/// to be removed with this list.
const DEPRECATED_FAMILIES: [&str; 2] = [
    "sts_guard_service_lookups_total",
    "sts_guard_disruption_budget_lookups_total",
];

/// Labels Prometheus gives every scraped series (not on /metrics).
const TARGET_LABELS: [&str; 2] = ["job", "instance"];

/// Asserts that every sts-guard metric each of `exprs` reads is `exposed`
/// with every label it matches on or groups by (Prometheus' target labels
/// aside). The metrics read and the labels checked.
fn check_against(
    exprs: &[String],
    exposed: &BTreeMap<String, BTreeSet<String>>,
) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut queried = BTreeSet::new();
    let mut checked = BTreeSet::new();
    let ours = |label: &&String| !TARGET_LABELS.contains(&label.as_str());
    for expr in exprs {
        let query = parse(expr);
        assert!(!query.metrics.is_empty(), "no sts-guard metric in {expr}");
        let mut labels_of_expr = BTreeSet::new();
        for (metric, matched) in &query.metrics {
            let labels = exposed.get(metric).unwrap_or_else(|| {
                panic!(
                    "{metric} (in {expr}) is not exposed; exposed: {:?}",
                    exposed.keys()
                )
            });
            for label in matched.iter().filter(ours) {
                assert!(
                    labels.contains(label),
                    "{metric} has no label {label} (in {expr}); it has {labels:?}"
                );
                checked.insert(label.clone());
            }
            labels_of_expr.extend(labels.iter().cloned());
            queried.insert(metric.clone());
        }
        for label in query.by.iter().filter(ours) {
            assert!(
                labels_of_expr.contains(label),
                "by ({label}) in {expr}: no queried metric has it ({labels_of_expr:?})"
            );
            checked.insert(label.clone());
        }
    }
    (queried, checked)
}

/// The expressions of deploy/prometheus/alerts.yaml.
fn alert_expressions() -> Vec<String> {
    let rule: Value = serde_saphyr::from_str(include_str!("../deploy/prometheus/alerts.yaml"))
        .expect("the alert rules are YAML");
    let groups = rule["spec"]["groups"].as_array().expect("spec.groups");
    groups
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").iter())
        .map(|r| r["expr"].as_str().expect("an expr").to_string())
        .collect()
}

#[tokio::test]
async fn every_metric_an_alert_uses_is_exposed_with_its_labels() {
    let exposed = exposed(&scraped_metrics().await);
    let exprs = alert_expressions();
    assert!(exprs.len() >= 9, "{exprs:?}");
    let (_, checked) = check_against(&exprs, &exposed);
    // The parser saw what the alerts select on.
    for label in ["path", "decision", "certificate", "le"] {
        assert!(
            checked.contains(label),
            "no alert uses {label}: {checked:?}"
        );
    }
}

#[test]
fn the_expression_parser_reads_matchers_and_groupings() {
    let q = parse(
        r#"histogram_quantile(0.9, sum by (le, endpoint) (rate(sts_guard_x_bucket{endpoint="a,b", decision=~"d|e"}[5m]))) / sum(sts_guard_y)"#,
    );
    assert_eq!(
        q.metrics,
        BTreeMap::from([
            (
                "sts_guard_x_bucket".to_string(),
                BTreeSet::from(["decision".to_string(), "endpoint".to_string()])
            ),
            ("sts_guard_y".to_string(), BTreeSet::new()),
        ])
    );
    assert_eq!(
        q.by,
        BTreeSet::from(["endpoint".to_string(), "le".to_string()])
    );
    let page = "# HELP x y\nsts_guard_a_total{what=\"p,\\\"q\",result=\"ok\"} 1\nsts_guard_b 0\n";
    let exposed = exposed(page);
    assert_eq!(
        exposed["sts_guard_a_total"],
        BTreeSet::from(["result".to_string(), "what".to_string()])
    );
    assert!(exposed["sts_guard_b"].is_empty());
}
