//! The pure core: a request reduced to what the review reads, a policy and
//! what was looked up in; outcomes out. No I/O, no HTTP, no wire limits:
//! the webhook renders outcomes for the API server, `check` and `audit`
//! render them as reports. Same input, same outcome, so reinvocation and
//! dry-run get identical answers.

mod mutate;
mod validate;

use std::collections::BTreeSet;

use serde::Serialize;

use crate::rules::{self, Need};
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WarnReason {
    /// A policy key (`mode`, a namespace's `mode`, a `rules:` entry) says
    /// warn.
    WarnMode,
    /// A rule added after the first release that no `rules:` key names:
    /// the mode that would enforce it makes it warn (see `crate::policy`).
    NewRuleDefault,
    /// UPDATE: the old object already broke the rule (ratcheting).
    AlreadyBroken,
    /// UPDATE: `serviceName` is immutable; a vanished Service never blocks.
    ServiceGoneOnUpdate,
    /// Dry-run: the Service may be in the same apply but not stored.
    DryRunServiceMissing,
    /// Dry-run: the PodDisruptionBudget may be in the same apply but not
    /// stored.
    DryRunBudgetMissing,
    /// The Service could not be looked up (API server unreachable).
    LookupFailed,
    /// The PodDisruptionBudgets could not be looked up.
    BudgetLookupFailed,
}

impl WarnReason {
    /// Appended to the warning so the user knows why it was not denied.
    /// Short: a warning is cut at 256 bytes.
    pub fn note(self) -> &'static str {
        match self {
            WarnReason::WarnMode | WarnReason::NewRuleDefault => "",
            WarnReason::AlreadyBroken => " (allowed: already so before this update)",
            WarnReason::ServiceGoneOnUpdate => " (allowed on update: serviceName is immutable)",
            WarnReason::DryRunServiceMissing | WarnReason::DryRunBudgetMissing => {
                " (allowed on dry-run: the same apply may create it)"
            }
            WarnReason::LookupFailed => " (allowed: Service lookup failed)",
            WarnReason::BudgetLookupFailed => " (allowed: PodDisruptionBudget lookup failed)",
        }
    }

    /// The stable code logs and reports use (`dry-run-service-missing`).
    pub fn code(self) -> &'static str {
        match self {
            WarnReason::WarnMode => "warn-mode",
            WarnReason::NewRuleDefault => "new-rule-default",
            WarnReason::AlreadyBroken => "already-broken",
            WarnReason::ServiceGoneOnUpdate => "service-gone-on-update",
            WarnReason::DryRunServiceMissing => "dry-run-service-missing",
            WarnReason::DryRunBudgetMissing => "dry-run-budget-missing",
            WarnReason::LookupFailed => "lookup-failed",
            WarnReason::BudgetLookupFailed => "budget-lookup-failed",
        }
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

    #[test]
    fn warn_reason_codes_are_serdes_kebab_names() {
        for reason in [
            WarnReason::WarnMode,
            WarnReason::NewRuleDefault,
            WarnReason::AlreadyBroken,
            WarnReason::ServiceGoneOnUpdate,
            WarnReason::DryRunServiceMissing,
            WarnReason::DryRunBudgetMissing,
            WarnReason::LookupFailed,
            WarnReason::BudgetLookupFailed,
        ] {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.code());
        }
    }
}
