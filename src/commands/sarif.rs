//! SARIF 2.1.0, the format CI systems display natively (GitHub code
//! scanning, Azure DevOps, GitLab, editors): one result per finding, placed
//! at the file and line of its document, with the rule's fix as help.
//! Exempt findings are results with a suppression, so they stay visible
//! but never alert. See docs/check-audit.md for why SARIF over JUnit.

use std::io::{self, Write};

use serde_json::{Value, json};

use super::report::{Body, ObjectReport, Origin, RunReport};
use crate::manifest::{InputError, Position, STDIN_NAME};
use crate::review::{Action, Outcome};
use crate::rules::RULES;

/// The pseudo-rule of objects that are not StatefulSets the API accepts.
const INVALID_RULE: &str = "invalid-object";
/// The pseudo-rule of inputs that could not be read at all.
const UNREADABLE_RULE: &str = "unreadable-input";

pub fn write(report: &RunReport, out: &mut impl Write) -> io::Result<()> {
    let mut results: Vec<Value> = report.objects.iter().flat_map(results_of).collect();
    results.extend(report.errors.iter().map(error_result));
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "sts-guard",
                "version": env!("CARGO_PKG_VERSION"),
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "rules": rules(),
            }},
            "automationDetails": {"id": format!("sts-guard/{}/", report.command.as_str())},
            "invocations": [{
                "executionSuccessful": report.errors.is_empty(),
                "toolExecutionNotifications": notifications(report),
            }],
            "results": results,
        }],
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

fn rules() -> Vec<Value> {
    let mut rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            rule(
                r.id.as_str(),
                &readable_name(r.id.as_str()),
                r.summary,
                r.help,
            )
        })
        .collect();
    rules.push(rule(
        UNREADABLE_RULE,
        "UnreadableInput",
        "A file could not be read as YAML or JSON",
        "Fix the syntax at the line and column given (kubectl would refuse the file too), or the path; the other files were checked.",
    ));
    rules.push(rule(
        INVALID_RULE,
        "InvalidObject",
        "The object is not a StatefulSet the API server accepts",
        "Fix the fields named in the message (apiVersion apps/v1, spec.selector, spec.template with containers); the API server would reject it as written.",
    ));
    rules
}

/// SARIF wants a readable name distinct from the opaque id:
/// `liveness-probe` is `LivenessProbe`.
fn readable_name(id: &str) -> String {
    id.split('-')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

fn rule(id: &str, name: &str, short: &str, help: &str) -> Value {
    json!({
        "id": id,
        "name": name,
        "shortDescription": {"text": short},
        "help": {"text": help},
        "defaultConfiguration": {"level": "error"},
    })
}

fn results_of(object: &ObjectReport) -> Vec<Value> {
    match &object.body {
        Body::Invalid(message, at) => vec![json!({
            "ruleId": INVALID_RULE,
            "level": "error",
            "message": {"text": format!("{}: {message}", object.display_name())},
            "locations": [location(object, *at)],
        })],
        Body::Reviewed(review) => review
            .outcomes
            .iter()
            .enumerate()
            .map(|(i, outcome)| result(object, outcome, object.position(i)))
            .collect(),
    }
}

/// The summary, and a note for each Service defined more than once.
fn notifications(report: &RunReport) -> Vec<Value> {
    let mut notes = vec![json!({
        "level": "note",
        "message": {"text": report.summary_line()},
    })];
    notes.extend(report.duplicates.iter().map(|d| {
        json!({
            "level": "warning",
            "message": {"text": format!(
                "{}/{} Service is defined {} times: {}; StatefulSets naming it are checked against each definition",
                d.namespace, d.name, d.places.len(), d.places.join(", ")
            )},
        })
    }));
    notes
}

fn error_result(e: &InputError) -> Value {
    let mut physical = json!({"artifactLocation": {"uri": uri(e.file())}});
    if let Some(at) = e.position() {
        physical["region"] = region(at);
    }
    json!({
        "ruleId": UNREADABLE_RULE,
        "level": "error",
        "message": {"text": e.to_string()},
        "locations": [{"physicalLocation": physical}],
    })
}

fn region(at: Position) -> Value {
    json!({"startLine": at.line, "startColumn": at.column})
}

fn result(object: &ObjectReport, outcome: &Outcome, at: Option<Position>) -> Value {
    let f = &outcome.finding;
    let level = match outcome.action {
        Action::Deny => "error",
        Action::Warn(_) => "warning",
        Action::Audit | Action::Exempt(_) => "note",
    };
    let mut result = json!({
        "ruleId": f.rule.as_str(),
        "ruleIndex": RULES.iter().position(|r| r.id == f.rule),
        "level": level,
        "message": {"text": format!("{} StatefulSet {}: {}", object.display_name(), f.summary(), f.fix)},
        "locations": [location(object, at)],
        // Same object and problem, same fingerprint: CI tracks it across runs.
        "partialFingerprints": {"stsGuardFinding/v1": format!("{}:{}", object.display_name(), f.key)},
        "properties": {
            "action": outcome.action.label(),
            "reason": outcome.action.reason(),
            "location": f.location(),
        },
    });
    if let Action::Exempt(why) = &outcome.action {
        result["suppressions"] = json!([{"kind": "external", "justification": why}]);
    }
    result
}

/// The file, line and column of what a result is about (else of the
/// object), and the object itself.
fn location(object: &ObjectReport, at: Option<Position>) -> Value {
    let logical = json!([{
        "name": object.name,
        "fullyQualifiedName": object.display_name(),
        "kind": "resource",
    }]);
    match &object.origin {
        Origin::File(source) if source.file != STDIN_NAME => {
            let mut physical = json!({"artifactLocation": {"uri": uri(&source.file)}});
            let at = at.unwrap_or(source.position());
            if at.line > 0 {
                physical["region"] = region(at);
            }
            json!({"physicalLocation": physical, "logicalLocations": logical})
        }
        _ => json!({"logicalLocations": logical}),
    }
}

/// A path as a relative URI reference: forward slashes, and anything but
/// unreserved characters percent-encoded.
fn uri(path: &str) -> String {
    let path = path.strip_prefix("./").unwrap_or(path);
    let mut out = String::with_capacity(path.len() + 7);
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            b'\\' => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(uri("./deploy/my app/sts.yaml"), "deploy/my%20app/sts.yaml");
        assert_eq!(uri("a#b.yaml"), "a%23b.yaml");
        assert_eq!(uri("/srv/x.yaml"), "file:///srv/x.yaml");
    }
}
