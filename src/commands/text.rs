//! The report for people: grouped by object, one line per finding with its
//! fix underneath, then what the mutating webhook would change, then a
//! one-line summary.

use std::io::{self, Write};

use super::report::{Body, ObjectReport, Origin, RunReport, Verdict};
use crate::manifest::Position;
use crate::review::{Action, Outcome, WarnReason};

/// Width of the action column, so findings line up.
const ACTION_WIDTH: usize = 8;

pub fn write(report: &RunReport, out: &mut impl Write) -> io::Result<()> {
    // Objects with details end with a blank line; one-line ones do not.
    let mut spaced = true;
    for object in &report.objects {
        spaced = write_object(object, out)?;
    }
    if !report.duplicates.is_empty() || !report.errors.is_empty() {
        if !spaced {
            writeln!(out)?;
        }
        for d in &report.duplicates {
            writeln!(
                out,
                "{}/{} Service is defined {} times: {}\n  {:ACTION_WIDTH$} StatefulSets naming it are checked against each definition\n",
                d.namespace,
                d.name,
                d.places.len(),
                d.places.join(", "),
                "note"
            )?;
        }
        for e in &report.errors {
            writeln!(out, "error: {e}")?;
        }
        spaced = report.errors.is_empty();
    }
    for e in &report.expiring {
        if spaced {
            spaced = false;
        }
        writeln!(
            out,
            "StatefulSetExemption {}/{} expires {}: exempts {} from {}\n  {:ACTION_WIDTH$} {}",
            e.namespace,
            e.name,
            e.expires_at,
            e.exempts,
            e.rules
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            "reason",
            e.reason
        )?;
    }
    if !spaced {
        writeln!(out)?;
    }
    writeln!(out, "{}", report.summary_line())
}

/// Writes one object; true when it ended with a blank line.
fn write_object(object: &ObjectReport, out: &mut impl Write) -> io::Result<bool> {
    let verdict = match object.verdict() {
        Verdict::Denied => "would be denied",
        Verdict::Invalid => "would be denied (invalid)",
        Verdict::Warned => "admitted with warnings",
        Verdict::Ok => "ok",
    };
    writeln!(
        out,
        "{} StatefulSet, {}: {verdict}",
        object.display_name(),
        object.origin
    )?;
    let review = match &object.body {
        Body::Invalid(message, at) => {
            let at = place(object, *at);
            writeln!(out, "  {:ACTION_WIDTH$} {at}{message}\n", "invalid")?;
            return Ok(true);
        }
        Body::Reviewed(r) => r,
    };
    if review.outcomes.is_empty() && review.patch.is_none() && review.notes.is_empty() {
        return Ok(false);
    }
    for (i, outcome) in review.outcomes.iter().enumerate() {
        write_outcome(outcome, &place(object, object.position(i)), out)?;
    }
    if let Some(patch) = &review.patch {
        writeln!(
            out,
            "  {:ACTION_WIDTH$} mutate.sts-guard.io would apply: {}",
            "mutate",
            review.mutations.join(", ")
        )?;
        for op in &patch.0 {
            // One operation a line, as compact JSON: exact, and greppable.
            let op = serde_json::to_string(op).unwrap_or_default();
            writeln!(out, "  {:ACTION_WIDTH$}   {op}", "")?;
        }
    }
    for note in &review.notes {
        writeln!(out, "  {:ACTION_WIDTH$} {note}", "note")?;
    }
    writeln!(out)?;
    Ok(true)
}

/// `app.yaml:23:9 `, what editors and CI logs turn into a link; empty for
/// objects not read from a file.
fn place(object: &ObjectReport, at: Option<Position>) -> String {
    match (&object.origin, at) {
        (Origin::File(source), Some(at)) => format!("{}:{at} ", source.file),
        _ => String::new(),
    }
}

fn write_outcome(outcome: &Outcome, place: &str, out: &mut impl Write) -> io::Result<()> {
    let f = &outcome.finding;
    let label = match &outcome.action {
        Action::Deny => "denied",
        Action::Warn(_) => "warning",
        Action::Audit => "audit",
        Action::Exempt(_) => "exempt",
    };
    let why = match &outcome.action {
        Action::Deny => String::new(),
        Action::Warn(WarnReason::WarnMode) => " (warn mode)".to_string(),
        Action::Warn(WarnReason::NewRuleDefault) => {
            " (warn: a newer rule denies only where the policy names it)".to_string()
        }
        Action::Warn(reason) => format!(" {}", reason.note().trim()),
        Action::Audit => " (audit mode: reported, never denied)".to_string(),
        Action::Exempt(_) => format!(" (exempt: {})", outcome.action.reason().unwrap_or_default()),
    };
    writeln!(out, "  {label:ACTION_WIDTH$} {place}{}{why}", f.summary())?;
    if !matches!(outcome.action, Action::Exempt(_)) {
        writeln!(out, "  {:ACTION_WIDTH$}   fix: {}", "", f.fix)?;
    }
    Ok(())
}
