//! The regression corpus: 66 real StatefulSets rendered from public Helm
//! charts and the Kubernetes docs (`../shared/corpus/charts/`, beside the
//! repository as CI lays it out). A real kube-apiserver accepts every one,
//! so `check` must read every one, and the findings per StatefulSet are
//! pinned here: a change to a rule or to the reader shows up as a diff.

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};

use sts_guard::commands::check::{CheckOptions, check};
use sts_guard::commands::report::{Body as ReportBody, Verdict};
use sts_guard::lookup::{LookupSource, Objects};
use sts_guard::manifest::{self, InputObject};
use sts_guard::policy::Policy;
use sts_guard::webhook::metrics::Metrics;
use sts_guard::webhook::routes::App;

fn corpus() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/charts");
    assert!(
        dir.is_dir(),
        "the corpus is missing: {} (CI puts ../shared beside the clone)",
        dir.display()
    );
    dir
}

fn files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// `file namespace/name: verdict [rule action, ...]`, one line per
/// StatefulSet, each file checked on its own as `helm template | check`
/// checks it, every rule enforced.
fn findings() -> String {
    let mut lines = Vec::new();
    for file in files() {
        let report = check(&CheckOptions {
            paths: vec![file.clone()],
            namespace: "default".into(),
            policy: None,
            platform_namespace: "sts-guard".into(),
        })
        .unwrap();
        assert!(
            report.errors.is_empty(),
            "{}: {:?}",
            file.display(),
            report.errors
        );
        let short = file.file_name().unwrap().to_string_lossy().into_owned();
        for o in &report.objects {
            let verdict = match o.verdict() {
                Verdict::Denied => "denied",
                Verdict::Invalid => "INVALID",
                Verdict::Warned => "warned",
                Verdict::Ok => "ok",
            };
            let findings: Vec<String> = o
                .outcomes()
                .iter()
                .map(|out| {
                    // A container's name, or what is wrong with the object.
                    let what = out
                        .finding
                        .container
                        .as_deref()
                        .unwrap_or(&out.finding.problem);
                    format!("{} {what}", out.finding.rule)
                })
                .collect();
            let error = match &o.body {
                ReportBody::Invalid(message, _) => format!(" {message}"),
                ReportBody::Reviewed(_) => String::new(),
            };
            lines.push(format!(
                "{short} {}: {verdict}{error} [{}]",
                o.display_name(),
                findings.join(", ")
            ));
        }
    }
    lines.join("\n")
}

/// Read one by one: every StatefulSet of the corpus, the findings each
/// gets with every rule enforced. Where a chart has no probe, the rule says
/// so; where `serviceName` names a Service the chart does not render (the
/// chart expects it from elsewhere, or has none), headless-service says so.
const PINNED: &str = include_str!("corpus.pinned");

#[test]
fn check_reads_every_statefulset_of_the_corpus_and_its_findings_are_pinned() {
    let actual = findings();
    assert_eq!(actual.lines().count(), 66, "66 StatefulSets:\n{actual}");
    assert!(!actual.contains("INVALID"), "{actual}");
    if actual.trim() != PINNED.trim() {
        let diff: Vec<String> = actual
            .lines()
            .zip(PINNED.lines())
            .filter(|(a, p)| a != p)
            .map(|(a, p)| format!("- {p}\n+ {a}"))
            .collect();
        panic!(
            "findings changed (update tests/corpus.pinned if intended):\n{}\n\nwhole:\n{actual}",
            diff.join("\n")
        );
    }
}

/// The StatefulSets of the corpus, as the API server would send them.
fn statefulsets() -> Vec<(String, Value)> {
    let mut found = Vec::new();
    for file in files() {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for object in manifest::read_text(&text, &name, "default").objects {
            if let InputObject::StatefulSet(s) = object {
                let mut json = s.node.to_json();
                json["metadata"]["namespace"] = json!(s.namespace);
                found.push((format!("{} {}", name, s.source), json));
            }
        }
    }
    found
}

fn review(operation: &str, object: &Value, dry_run: bool) -> Value {
    let name = object["metadata"]["name"].clone();
    let namespace = object["metadata"]["namespace"].clone();
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": support::UID,
            "kind": {"group": "apps", "version": "v1", "kind": "StatefulSet"},
            "resource": {"group": "apps", "version": "v1", "resource": "statefulsets"},
            "requestKind": {"group": "apps", "version": "v1", "kind": "StatefulSet"},
            "requestResource": {"group": "apps", "version": "v1", "resource": "statefulsets"},
            "name": name,
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": object,
            "oldObject": if operation == "UPDATE" { object.clone() } else { Value::Null },
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        }
    })
}

async fn warnings(app: &Arc<App>, review: &Value) -> Vec<String> {
    let (_, answer) = support::router_review(app, "/validate", review).await;
    assert_eq!(answer["response"]["uid"], support::UID);
    answer["response"]["warnings"]
        .as_array()
        .map(|w| w.iter().map(|w| w.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The longest warnings sts-guard sends: every rule in warn mode, no
/// Service found, on dry-run (the dry-run note) and on UPDATE (the
/// ratchet notes). Each fits the API server's 256 bytes whole.
#[tokio::test]
async fn every_warning_for_the_corpus_fits_256_bytes_whole() {
    let app = App::new(
        Policy::from_yaml("mode: warn\n", "test").unwrap(),
        LookupSource::Static(Arc::new(Objects::default())),
        Metrics::new(),
    );
    let enforcing = App::new(
        Policy::default(),
        LookupSource::Static(Arc::new(Objects::default())),
        Metrics::new(),
    );
    let mut checked = 0;
    let mut longest = 0;
    for (place, object) in statefulsets() {
        for (app, operation, dry_run) in [
            (&app, "CREATE", true),
            (&enforcing, "CREATE", true),
            (&enforcing, "UPDATE", false),
        ] {
            for warning in warnings(app, &review(operation, &object, dry_run)).await {
                checked += 1;
                longest = longest.max(warning.len());
                assert!(
                    warning.len() <= 256 && !warning.ends_with("..."),
                    "{place} {operation}: {} bytes: {warning}",
                    warning.len()
                );
                assert!(warning.starts_with('['), "rule id first: {warning}");
            }
        }
    }
    assert!(checked > 100, "only {checked} warnings");
    eprintln!("{checked} warnings, the longest {longest} bytes");
}
