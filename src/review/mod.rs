//! The pure core: a request reduced to what the review reads, a policy and
//! what was looked up in; outcomes out. No I/O, no HTTP, no wire limits:
//! the webhook renders outcomes for the API server, `check` and `audit`
//! render them as reports. Same input, same outcome, so reinvocation and
//! dry-run get identical answers.

mod mutate;
mod validate;

use std::collections::BTreeSet;

use serde::Serialize;

use crate::lookup::{Need, Reason};
use crate::rules;
use crate::view::StatefulSet;

pub use mutate::{
    Mutation, PARALLEL_ANNOTATION, STARTUP_PROBE_ANNOTATION, STARTUP_TIMEOUT_ANNOTATION, mutate,
};
pub use validate::{EXEMPT_ANNOTATION, Validation, validate};

/// The operations sts-guard reviews (the webhook configurations send no
/// others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
}

/// Identity of the object under review, for messages and logs.
#[derive(Debug, Clone, Copy)]
pub struct ObjectRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

/// One request as the review sees it; the webhook builds it from an
/// AdmissionReview, `check` and `audit` from a manifest or a listing.
pub struct Request<'a> {
    pub object: ObjectRef<'a>,
    pub sts: &'a StatefulSet,
    /// The stored object, on UPDATE.
    pub old: Option<&'a StatefulSet>,
    pub operation: Operation,
    pub dry_run: bool,
    /// When the review happens: exemption objects expire. The caller reads
    /// the clock; the core never does.
    pub now: jiff::Timestamp,
}

impl Request<'_> {
    /// What the rules will look up for this request: the object's needs
    /// and, on UPDATE, the old object's, each once.
    pub fn needs(&self) -> BTreeSet<Need> {
        let mut needs = rules::needs(self.sts, self.object.namespace);
        if let Some(old) = self.old {
            needs.extend(rules::needs(old, self.object.namespace));
        }
        needs
    }
}

/// What was done with one finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action", content = "why")]
pub enum Action {
    /// Denies the request.
    Deny,
    /// Allowed with a warning; `why` says why it was not denied.
    Warn(WarnReason),
    /// Allowed silently; logged and counted.
    Audit,
    /// Not applied to this object.
    Exempt(String),
}

impl Action {
    /// Label used in metrics, logs and reports.
    pub fn label(&self) -> &'static str {
        match self {
            Action::Deny => "deny",
            Action::Warn(_) => "warn",
            Action::Audit => "audit",
            Action::Exempt(_) => "exempt",
        }
    }

    /// Why the finding was not enforced: the stable code of a warning's
    /// reason (`warn-mode`, `new-rule-default`, `dry-run-service-missing`, ...), `audit-mode`,
    /// or the exemption's reason; `None` for a denial.
    pub fn reason(&self) -> Option<String> {
        match self {
            Action::Deny => None,
            Action::Warn(reason) => Some(reason.code().into()),
            Action::Audit => Some("audit-mode".into()),
            Action::Exempt(why) => Some(why.clone()),
        }
    }
}

/// Why an enforced finding only warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WarnReason {
    /// A policy key (`mode`, a namespace's `mode`, a `rules:` entry) says
    /// warn.
    WarnMode,
    /// A rule added after the first release that no `rules:` key names:
    /// the mode that would enforce it makes it warn (see `crate::policy`).
    NewRuleDefault,
    /// UPDATE: the old object already broke the rule (ratcheting).
    AlreadyBroken,
    /// About a looked-up object: missing on dry-run, missing on UPDATE, or
    /// its lookup failed (the kind's [`crate::lookup::KindInfo`] says).
    Lookup(&'static Reason),
}

impl WarnReason {
    /// Appended to the warning so the user knows why it was not denied.
    /// Short: a warning is cut at 256 bytes.
    pub fn note(self) -> &'static str {
        match self {
            WarnReason::WarnMode | WarnReason::NewRuleDefault => "",
            WarnReason::AlreadyBroken => " (allowed: already so before this update)",
            WarnReason::Lookup(reason) => reason.note,
        }
    }

    /// The stable code logs and reports use (`dry-run-service-missing`).
    pub fn code(self) -> &'static str {
        match self {
            WarnReason::WarnMode => "warn-mode",
            WarnReason::NewRuleDefault => "new-rule-default",
            WarnReason::AlreadyBroken => "already-broken",
            WarnReason::Lookup(reason) => reason.code,
        }
    }
}

impl Serialize for WarnReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub finding: crate::rules::Finding,
    #[serde(flatten)]
    pub action: Action,
}

#[cfg(test)]
mod tests {
    use super::WarnReason;
    use crate::lookup::KINDS;

    #[test]
    fn warn_reason_codes_are_the_ones_reports_and_logs_have_used() {
        let mut codes: Vec<&str> = [
            WarnReason::WarnMode,
            WarnReason::NewRuleDefault,
            WarnReason::AlreadyBroken,
        ]
        .into_iter()
        .chain(KINDS.iter().flat_map(|k| {
            [
                Some(&k.dry_run_missing),
                Some(&k.lookup_failed),
                k.gone_on_update.as_ref(),
            ]
            .into_iter()
            .flatten()
            .map(WarnReason::Lookup)
        }))
        .map(|reason| {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.code());
            reason.code()
        })
        .collect();
        codes.sort();
        assert_eq!(
            codes,
            [
                "already-broken",
                "budget-lookup-failed",
                "dry-run-budget-missing",
                "dry-run-service-missing",
                "lookup-failed",
                "new-rule-default",
                "service-gone-on-update",
                "warn-mode",
            ]
        );
    }
}
