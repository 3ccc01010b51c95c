//! The report for people: grouped by object, one line per finding with its
//! fix underneath, then what the mutating webhook would change, then a
//! one-line summary.

use std::io::{self, Write};

use super::report::{Body, ObjectReport, Report, Summary, Verdict, action_reason};
use crate::admission::{Action, Outcome};

/// Width of the action column, so findings line up.
const ACTION_WIDTH: usize = 8;

pub fn write(report: &Report, out: &mut impl Write) -> io::Result<()> {
    // Objects with details end with a blank line; one-line ones do not.
    let mut spaced = true;
    for object in &report.objects {
        spaced = write_object(object, out)?;
    }
    if !spaced {
        writeln!(out)?;
    }
    writeln!(out, "{}", summary_line(&report.summary()))
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
        Body::Invalid(message) => {
            writeln!(out, "  {:ACTION_WIDTH$} {message}\n", "invalid")?;
            return Ok(true);
        }
        Body::Reviewed(r) => r,
    };
    if review.outcomes.is_empty() && review.patch.is_none() && review.notes.is_empty() {
        return Ok(false);
    }
    for outcome in &review.outcomes {
        write_outcome(outcome, out)?;
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

fn write_outcome(outcome: &Outcome, out: &mut impl Write) -> io::Result<()> {
    let f = &outcome.finding;
    let label = match &outcome.action {
        Action::Deny => "denied",
        Action::Warn(_) => "warning",
        Action::Audit => "audit",
        Action::Exempt(_) => "exempt",
    };
    let why = match &outcome.action {
        Action::Deny => String::new(),
        Action::Warn(reason) => {
            let note = reason.note().trim();
            if note.is_empty() {
                " (warn mode)".to_string()
            } else {
                format!(" {note}")
            }
        }
        Action::Audit => " (audit mode: reported, never denied)".to_string(),
        Action::Exempt(_) => format!(
            " (exempt: {})",
            action_reason(&outcome.action).unwrap_or_default()
        ),
    };
    writeln!(out, "  {label:ACTION_WIDTH$} {}{why}", f.summary())?;
    if !matches!(outcome.action, Action::Exempt(_)) {
        writeln!(out, "  {:ACTION_WIDTH$}   fix: {}", "", f.fix)?;
    }
    Ok(())
}

/// `3 StatefulSets checked: 1 would be denied, 1 warned, 1 ok`
pub fn summary_line(s: &Summary) -> String {
    let plural = if s.checked == 1 { "" } else { "s" };
    let invalid = if s.invalid > 0 {
        format!(" ({} invalid)", s.invalid)
    } else {
        String::new()
    };
    let mut line = format!(
        "{} StatefulSet{plural} checked: {} would be denied{invalid}, {} warned, {} ok",
        s.checked, s.denied, s.warned, s.ok
    );
    if s.mutated > 0 {
        line.push_str(&format!(
            "; {} would be changed by mutate.sts-guard.io",
            s.mutated
        ));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_names_every_nonzero_group() {
        let s = Summary {
            checked: 4,
            denied: 2,
            invalid: 1,
            warned: 1,
            ok: 1,
            mutated: 2,
            ..Summary::default()
        };
        assert_eq!(
            summary_line(&s),
            "4 StatefulSets checked: 2 would be denied (1 invalid), 1 warned, 1 ok; 2 would be changed by mutate.sts-guard.io"
        );
    }
}
