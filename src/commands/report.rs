//! What `check` and `audit` found, one entry per StatefulSet, and the three
//! ways of writing it: text for people, JSON for machines, SARIF for CI.
//!
//! The JSON is a public interface (docs/check-audit.md lists it): fields
//! may be added, never renamed or removed, without bumping `schemaVersion`.

use std::io::{self, Write};

use serde::Serialize;

use super::simulate::{Simulation, simulate};
use crate::lookup::Duplicate;
use crate::lookup::Lookups;
use crate::manifest::{InputError, Position, Source};
use crate::policy::Policy;
use crate::review::{Action, Outcome};
use crate::view::StatefulSet;

/// Bump when a field of the JSON report changes meaning or disappears.
pub const SCHEMA_VERSION: u32 = 1;

/// Which command made a [`RunReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Run {
    Check,
    Audit,
}

impl Run {
    pub const fn as_str(self) -> &'static str {
        match self {
            Run::Check => "check",
            Run::Audit => "audit",
        }
    }
}

/// What `check` and `audit` print (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people: grouped by object, with fixes and a summary line.
    Text,
    /// For machines: schemaVersion 1, see docs/check-audit.md.
    Json,
    /// SARIF 2.1.0, for CI code-scanning views.
    Sarif,
}

/// Where an object was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(Source),
    Cluster,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::File(source) => source.fmt(f),
            Origin::Cluster => f.write_str("cluster"),
        }
    }
}

/// What came of one object.
#[derive(Debug, Clone)]
pub enum Body {
    Reviewed(Simulation),
    /// The object does not decode as a StatefulSet: the API server would
    /// refuse it, so it counts as denied. The message, and where in the
    /// file the problem is.
    Invalid(String, Option<Position>),
}

#[derive(Debug, Clone)]
pub struct ObjectReport {
    pub namespace: String,
    pub name: String,
    pub origin: Origin,
    pub body: Body,
    /// Where each finding is in the file, one per outcome, in order; empty
    /// when the object was not read from a file.
    pub positions: Vec<Position>,
}

/// The overall answer for one object; the four are disjoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// At least one finding denies.
    Denied,
    /// Not a StatefulSet the API server would accept.
    Invalid,
    /// Admitted, with `Warning:` lines from kubectl.
    Warned,
    /// Admitted silently (audit-mode and exempt findings only, or none).
    Ok,
}

impl ObjectReport {
    /// `sts` reviewed in `namespace` as both webhooks would on create at
    /// `now`.
    pub fn reviewed(
        sts: &StatefulSet,
        namespace: String,
        origin: Origin,
        policy: &Policy,
        lookups: &dyn Lookups,
        now: jiff::Timestamp,
    ) -> ObjectReport {
        ObjectReport {
            name: sts.metadata.name.as_deref().unwrap_or_default().to_string(),
            body: Body::Reviewed(simulate(sts, &namespace, policy, lookups, now)),
            namespace,
            origin,
            positions: Vec::new(),
        }
    }

    pub fn verdict(&self) -> Verdict {
        let review = match &self.body {
            Body::Invalid(..) => return Verdict::Invalid,
            Body::Reviewed(r) => r,
        };
        if review.outcomes.iter().any(|o| o.action == Action::Deny) {
            Verdict::Denied
        } else if !review.notes.is_empty()
            || review
                .outcomes
                .iter()
                .any(|o| matches!(o.action, Action::Warn(_)))
        {
            Verdict::Warned
        } else {
            Verdict::Ok
        }
    }

    /// `shop/web`
    pub fn display_name(&self) -> String {
        let name = if self.name.is_empty() {
            "<unnamed>"
        } else {
            &self.name
        };
        format!("{}/{name}", self.namespace)
    }

    pub fn outcomes(&self) -> &[Outcome] {
        match &self.body {
            Body::Reviewed(r) => &r.outcomes,
            Body::Invalid(..) => &[],
        }
    }

    /// Where the i-th finding is in its file, when it was read from one.
    pub fn position(&self, i: usize) -> Option<Position> {
        self.positions.get(i).copied()
    }
}

/// What one run of `check` or `audit` found, written as text, JSON or
/// SARIF (not a policy report of `crate::reports`: those are written per
/// StatefulSet, to the cluster).
#[derive(Debug)]
pub struct RunReport {
    pub command: Run,
    pub objects: Vec<ObjectReport>,
    /// Inputs that could not be read (`check`); every other input was.
    pub errors: Vec<InputError>,
    /// Services defined more than once in the input (`check`).
    pub duplicates: Vec<Duplicate>,
    /// Documents read, of any kind (`check`); `None` for `audit`.
    pub documents: Option<usize>,
    /// Exemption objects in force that expire within [`EXPIRY_NOTICE`].
    pub expiring: Vec<Expiring>,
}

/// How far ahead `check` and `audit` list exemptions about to expire.
pub const EXPIRY_NOTICE: jiff::SignedDuration = jiff::SignedDuration::from_hours(7 * 24);

/// An exemption object in force that expires soon: once it does, the
/// StatefulSets it covers are judged by the rules it waives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Expiring {
    pub namespace: String,
    pub name: String,
    /// The StatefulSets it exempts: `<namespace>/<name or *>`.
    pub exempts: String,
    pub rules: Vec<crate::rules::RuleId>,
    pub expires_at: String,
    pub reason: String,
}

impl Expiring {
    /// The exemption objects of `policy` in force at `now` that expire
    /// within [`EXPIRY_NOTICE`], soonest first.
    pub fn of(policy: &Policy, now: jiff::Timestamp) -> Vec<Expiring> {
        let until = now.saturating_add(EXPIRY_NOTICE).unwrap_or(now);
        policy
            .exemption_objects()
            .expiring(now, until)
            .into_iter()
            .map(|e| Expiring {
                namespace: e.namespace.clone(),
                name: e.name.clone(),
                exempts: format!("{}/{}", e.target, e.spec.stateful_set),
                rules: e.spec.rules.clone(),
                expires_at: e
                    .spec
                    .expires_at
                    .map_or(String::new(), |at| at.0.to_string()),
                reason: e.spec.reason.clone(),
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// `denied + warned + ok`.
    pub checked: usize,
    /// Would be refused: verdict `denied` or `invalid`.
    pub denied: usize,
    /// Of those, the ones that are not valid StatefulSets at all.
    pub invalid: usize,
    pub warned: usize,
    pub ok: usize,
    /// Objects the mutating webhook would change.
    pub mutated: usize,
    pub findings: FindingCounts,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FindingCounts {
    pub deny: usize,
    pub warn: usize,
    pub audit: usize,
    pub exempt: usize,
}

impl RunReport {
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            checked: self.objects.len(),
            ..Summary::default()
        };
        for object in &self.objects {
            match object.verdict() {
                Verdict::Denied => s.denied += 1,
                Verdict::Invalid => {
                    s.denied += 1;
                    s.invalid += 1;
                }
                Verdict::Warned => s.warned += 1,
                Verdict::Ok => s.ok += 1,
            }
            if let Body::Reviewed(r) = &object.body
                && r.patch.is_some()
            {
                s.mutated += 1;
            }
            for o in object.outcomes() {
                match o.action {
                    Action::Deny => s.findings.deny += 1,
                    Action::Warn(_) => s.findings.warn += 1,
                    Action::Audit => s.findings.audit += 1,
                    Action::Exempt(_) => s.findings.exempt += 1,
                }
            }
        }
        s
    }

    /// 2 when an input could not be read, else 1 when anything would be
    /// denied (or is not a StatefulSet the API accepts), else 0.
    pub fn exit_code(&self) -> u8 {
        if !self.errors.is_empty() {
            super::EXIT_ERROR
        } else {
            u8::from(self.summary().denied > 0)
        }
    }

    /// `4 StatefulSets checked: 2 would be denied, 1 warned, 1 ok`, and how
    /// many inputs could not be read: the last line of the text report, the
    /// SARIF run's message.
    pub fn summary_line(&self) -> String {
        let mut line = self.summary().line();
        match self.errors.len() {
            0 => {}
            1 => line.push_str("; 1 input could not be read"),
            n => line.push_str(&format!("; {n} inputs could not be read")),
        }
        line
    }

    /// The report as JSON (`-o json`).
    pub fn write_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *out, &json_report(self))?;
        writeln!(out)
    }
}

impl Summary {
    fn line(&self) -> String {
        let plural = if self.checked == 1 { "" } else { "s" };
        let invalid = if self.invalid > 0 {
            format!(" ({} invalid)", self.invalid)
        } else {
            String::new()
        };
        let mut line = format!(
            "{} StatefulSet{plural} checked: {} would be denied{invalid}, {} warned, {} ok",
            self.checked, self.denied, self.warned, self.ok
        );
        if self.mutated > 0 {
            line.push_str(&format!(
                "; {} would be changed by mutate.sts-guard.io",
                self.mutated
            ));
        }
        line
    }
}

// The JSON document, schema version 1. Borrowed views of the report so
// nothing is copied on the way out.

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonReport<'a> {
    schema_version: u32,
    command: Run,
    tool: JsonTool,
    summary: Summary,
    objects: Vec<JsonObject<'a>>,
    /// Inputs that could not be read; their objects are missing above.
    errors: Vec<JsonError<'a>>,
    /// Services defined more than once; StatefulSets are checked against each.
    duplicates: &'a [Duplicate],
    /// Exemption objects in force that expire within 7 days.
    expiring_exemptions: &'a [Expiring],
}

#[derive(Serialize)]
struct JsonError<'a> {
    file: &'a str,
    line: Option<u64>,
    column: Option<u64>,
    message: String,
}

#[derive(Serialize)]
struct JsonTool {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JsonObject<'a> {
    kind: &'static str,
    namespace: &'a str,
    name: &'a str,
    source: JsonSource<'a>,
    verdict: Verdict,
    /// Why the object could not be reviewed (verdict `invalid` only).
    error: Option<&'a str>,
    /// Where in the file that problem is.
    error_line: Option<u64>,
    error_column: Option<u64>,
    findings: Vec<JsonFinding<'a>>,
    mutations: &'a [&'static str],
    patch: Option<&'a json_patch::Patch>,
    notes: &'a [String],
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum JsonSource<'a> {
    File {
        file: &'a str,
        document: usize,
        line: u64,
        column: u64,
        item: Option<usize>,
    },
    Cluster,
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    rule: &'static str,
    location: String,
    /// Where in the file (`check` only).
    line: Option<u64>,
    column: Option<u64>,
    container: Option<&'a str>,
    problem: &'a str,
    fix: &'a str,
    /// `[rule] location problem`, as the webhook words it.
    message: String,
    action: &'static str,
    reason: Option<String>,
}

fn json_report(report: &RunReport) -> JsonReport<'_> {
    JsonReport {
        schema_version: SCHEMA_VERSION,
        command: report.command,
        tool: JsonTool {
            name: "sts-guard",
            version: env!("CARGO_PKG_VERSION"),
        },
        summary: report.summary(),
        objects: report.objects.iter().map(json_object).collect(),
        errors: report
            .errors
            .iter()
            .map(|e| JsonError {
                file: e.file(),
                line: e.position().map(|p| p.line),
                column: e.position().map(|p| p.column),
                message: e.reason(),
            })
            .collect(),
        duplicates: &report.duplicates,
        expiring_exemptions: &report.expiring,
    }
}

fn json_object(o: &ObjectReport) -> JsonObject<'_> {
    let source = match &o.origin {
        Origin::File(s) => JsonSource::File {
            file: &s.file,
            document: s.document,
            line: s.line,
            column: s.column,
            item: s.item,
        },
        Origin::Cluster => JsonSource::Cluster,
    };
    let (error, error_at, mutations, patch, notes): (_, _, &[&'static str], _, &[String]) =
        match &o.body {
            Body::Invalid(message, at) => (Some(message.as_str()), *at, &[], None, &[]),
            Body::Reviewed(r) => (None, None, &r.mutations, r.patch.as_ref(), &r.notes),
        };
    JsonObject {
        kind: "StatefulSet",
        namespace: &o.namespace,
        name: &o.name,
        source,
        verdict: o.verdict(),
        error,
        error_line: error_at.map(|p| p.line),
        error_column: error_at.map(|p| p.column),
        findings: o
            .outcomes()
            .iter()
            .enumerate()
            .map(|(i, out)| JsonFinding {
                rule: out.finding.rule.as_str(),
                location: out.finding.location(),
                line: o.position(i).map(|p| p.line),
                column: o.position(i).map(|p| p.column),
                container: out.finding.container.as_deref(),
                problem: &out.finding.problem,
                fix: &out.finding.fix,
                message: out.finding.summary(),
                action: out.action.label(),
                reason: out.action.reason(),
            })
            .collect(),
        mutations,
        patch,
        notes,
    }
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
            s.line(),
            "4 StatefulSets checked: 2 would be denied (1 invalid), 1 warned, 1 ok; 2 would be changed by mutate.sts-guard.io"
        );
    }
}
