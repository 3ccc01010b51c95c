//! SARIF 2.1.0, the format CI systems display natively (GitHub code
//! scanning, Azure DevOps, GitLab, editors): one result per finding, placed
//! at the file and line of its document, with the rule's fix as help.
//! Exempt findings are results with a suppression, so they stay visible
//! but never alert. See docs/check-audit.md for why SARIF over JUnit.
//!
//! The document is serde-sarif's types (generated from the SARIF 2.1.0
//! schema), so a misspelt property or level does not compile; their fields
//! serialize in the schema's alphabetical order, the order of the
//! `serde_json::json!` maps this was written with before
//! (tests/fixtures/sarif/every-result.sarif pins the bytes).

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde_json::json;
use serde_sarif::sarif::{
    ArtifactLocation, Invocation, Location, LogicalLocation, Message, MultiformatMessageString,
    Notification, PhysicalLocation, PropertyBag, Region, ReportingConfiguration,
    ReportingDescriptor, Result as SarifResult, ResultLevel, Run, RunAutomationDetails, Sarif,
    Suppression, Tool, ToolComponent,
};

use super::report::{Body, ObjectReport, Origin, RunReport};
use crate::manifest::{InputError, Position, STDIN_NAME};
use crate::review::{Action, Outcome};
use crate::rules::RULES;

/// The pseudo-rule of objects that are not StatefulSets the API accepts.
const INVALID_RULE: &str = "invalid-object";
/// The pseudo-rule of inputs that could not be read at all.
const UNREADABLE_RULE: &str = "unreadable-input";

pub fn write(report: &RunReport, out: &mut impl Write) -> io::Result<()> {
    let mut results: Vec<SarifResult> = report.objects.iter().flat_map(results_of).collect();
    results.extend(report.errors.iter().map(error_result));
    let driver = ToolComponent::builder()
        .name("sts-guard")
        .version(env!("CARGO_PKG_VERSION"))
        .semantic_version(env!("CARGO_PKG_VERSION"))
        .rules(rules())
        .build();
    let run = Run::builder()
        .tool(Tool::builder().driver(driver).build())
        .automation_details(
            RunAutomationDetails::builder()
                .id(format!("sts-guard/{}/", report.command.as_str()))
                .build(),
        )
        .invocations(vec![
            Invocation::builder()
                .execution_successful(report.errors.is_empty())
                .tool_execution_notifications(notifications(report))
                .build(),
        ])
        .results(results)
        .build();
    let doc = Sarif::builder()
        .schema("https://json.schemastore.org/sarif-2.1.0.json")
        .version("2.1.0")
        .runs(vec![run])
        .build();
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

fn rules() -> Vec<ReportingDescriptor> {
    let mut rules: Vec<ReportingDescriptor> = RULES
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

fn rule(id: &str, name: &str, short: &str, help: &str) -> ReportingDescriptor {
    let text = |text: &str| MultiformatMessageString::builder().text(text).build();
    ReportingDescriptor::builder()
        .id(id)
        .name(name)
        .short_description(text(short))
        .help(text(help))
        .default_configuration(ReportingConfiguration::builder().level("error").build())
        .build()
}

fn message(text: impl Into<String>) -> Message {
    Message::builder().text(text).build()
}

fn results_of(object: &ObjectReport) -> Vec<SarifResult> {
    match &object.body {
        Body::Invalid(text, at) => vec![
            SarifResult::builder()
                .rule_id(INVALID_RULE)
                .level(ResultLevel::Error)
                .message(message(format!("{}: {text}", object.display_name())))
                .locations(vec![location(object, *at)])
                .build(),
        ],
        Body::Reviewed(review) => review
            .outcomes
            .iter()
            .enumerate()
            .map(|(i, outcome)| result(object, outcome, object.position(i)))
            .collect(),
    }
}

/// The summary, and a note for each Service defined more than once.
fn notifications(report: &RunReport) -> Vec<Notification> {
    let note = |level: &str, text: String| {
        Notification::builder()
            .level(level)
            .message(message(text))
            .build()
    };
    let mut notes = vec![note("note", report.summary_line())];
    notes.extend(report.duplicates.iter().map(|d| {
        note(
            "warning",
            format!(
                "{}/{} Service is defined {} times: {}; StatefulSets naming it are checked against each definition",
                d.namespace,
                d.name,
                d.places.len(),
                d.places.join(", ")
            ),
        )
    }));
    notes
}

fn error_result(e: &InputError) -> SarifResult {
    SarifResult::builder()
        .rule_id(UNREADABLE_RULE)
        .level(ResultLevel::Error)
        .message(message(e.to_string()))
        .locations(vec![
            Location::builder()
                .physical_location(physical(e.file(), e.position()))
                .build(),
        ])
        .build()
}

/// A file, and the line and column in it when known.
fn physical(file: &str, at: Option<Position>) -> PhysicalLocation {
    let mut physical = PhysicalLocation::builder()
        .artifact_location(ArtifactLocation::builder().uri(uri(file)).build())
        .build();
    physical.region = at.map(|at| {
        Region::builder()
            .start_line(at.line as i64)
            .start_column(at.column as i64)
            .build()
    });
    physical
}

fn result(object: &ObjectReport, outcome: &Outcome, at: Option<Position>) -> SarifResult {
    let f = &outcome.finding;
    let level = match outcome.action {
        Action::Deny => ResultLevel::Error,
        Action::Warn(_) => ResultLevel::Warning,
        Action::Audit | Action::Exempt(_) => ResultLevel::Note,
    };
    let properties = BTreeMap::from([
        ("action".to_string(), json!(outcome.action.label())),
        ("reason".to_string(), json!(outcome.action.reason())),
        ("location".to_string(), json!(f.location())),
    ]);
    let mut result = SarifResult::builder()
        .rule_id(f.rule.as_str())
        .level(level)
        .message(message(format!(
            "{} StatefulSet {}: {}",
            object.display_name(),
            f.summary(),
            f.fix
        )))
        .locations(vec![location(object, at)])
        // Same object and problem, same fingerprint: CI tracks it across runs.
        .partial_fingerprints(BTreeMap::from([(
            "stsGuardFinding/v1".to_string(),
            format!("{}:{}", object.display_name(), f.key),
        )]))
        .properties(
            PropertyBag::builder()
                .additional_properties(properties)
                .build(),
        )
        .build();
    result.rule_index = RULES.iter().position(|r| r.id == f.rule).map(|i| i as i64);
    if let Action::Exempt(why) = &outcome.action {
        result.suppressions = Some(vec![
            Suppression::builder()
                .kind("external")
                .justification(why.to_string())
                .build(),
        ]);
    }
    result
}

/// The file, line and column of what a result is about (else of the
/// object), and the object itself.
fn location(object: &ObjectReport, at: Option<Position>) -> Location {
    let logical = vec![
        LogicalLocation::builder()
            .name(object.name.as_str())
            .fully_qualified_name(object.display_name())
            .kind("resource")
            .build(),
    ];
    let mut location = Location::builder().logical_locations(logical).build();
    if let Origin::File(source) = &object.origin
        && source.file != STDIN_NAME
    {
        let at = at.unwrap_or(source.position());
        location.physical_location = Some(physical(&source.file, (at.line > 0).then_some(at)));
    }
    location
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
