//! From findings to outcomes: modes, exemptions, ratcheting on UPDATE and
//! the dry-run rule for missing Services.

use std::collections::HashSet;

use super::{Action, Operation, Outcome, Request, WarnReason};
use crate::lookup::{KindInfo, Lookups};
use crate::policy::{Exempting, Mode, Policy};
use crate::rules::{self, FindingKind, RuleId, Subject};

/// Owner exemption: comma-separated rule ids (or `all`); only honoured when
/// the policy allows owner exemptions in the namespace.
pub const EXEMPT_ANNOTATION: &str = "sts-guard.io/exempt";

/// What the validating side found, and what each finding does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Validation {
    /// Every finding and what was done with it, in rule order.
    pub outcomes: Vec<Outcome>,
    /// Notes on the object's `sts-guard.io/` annotations (a value ignored,
    /// an exemption the policy does not allow).
    pub notes: Vec<String>,
}

impl Validation {
    pub fn denies(&self) -> bool {
        self.outcomes.iter().any(|o| o.action == Action::Deny)
    }
}

pub fn validate(request: &Request<'_>, policy: &Policy, lookups: &dyn Lookups) -> Validation {
    let ns = request.object.namespace;
    let settings = policy.rule_settings(ns);
    let findings = rules::evaluate(&Subject {
        sts: request.sts,
        namespace: ns,
        lookups,
        settings,
    });
    // Read first so a misused annotation is reported even on a compliant object.
    let mut notes = Vec::new();
    let owner_exempt = owner_exemptions(request, policy.owner_exemptions_allowed(ns), &mut notes);
    if findings.is_empty() {
        return Validation {
            outcomes: Vec::new(),
            notes,
        };
    }

    // Ratcheting: what the old object already broke does not block an update.
    let already_broken: HashSet<String> = match (request.operation, request.old) {
        (Operation::Update, Some(old)) => rules::evaluate(&Subject {
            sts: old,
            namespace: ns,
            lookups,
            settings,
        })
        .into_iter()
        .map(|f| f.key)
        .collect(),
        _ => HashSet::new(),
    };

    let outcomes = findings
        .into_iter()
        .map(|finding| {
            let exemption = policy.exemption(ns, request.object.name, finding.rule, request.now);
            if let Some(Exempting::Ignored(object)) = &exemption {
                let note = object.not_honoured(request.now).unwrap_or_default();
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
            let action = if let Some(Exempting::Honoured(reason)) = exemption {
                Action::Exempt(reason)
            } else if owner_exempt.contains(&finding.rule) {
                Action::Exempt(format!("{EXEMPT_ANNOTATION} annotation"))
            } else {
                let rule_mode = policy.rule_mode(ns, finding.rule);
                match rule_mode.mode {
                    Mode::Audit => Action::Audit,
                    Mode::Warn if rule_mode.new_rule_default => {
                        Action::Warn(WarnReason::NewRuleDefault)
                    }
                    Mode::Warn => Action::Warn(WarnReason::WarnMode),
                    Mode::Enforce => enforce(request, &finding, &already_broken),
                }
            };
            Outcome { finding, action }
        })
        .collect();
    Validation { outcomes, notes }
}

/// An enforced finding denies, except where the API server's behaviour
/// makes denying wrong: a lookup that failed, a looked-up object missing
/// on UPDATE when the field naming it is immutable (a Service:
/// `serviceName`), or missing on dry-run (one in the same apply is not
/// stored), a problem the old object already had.
fn enforce(
    request: &Request<'_>,
    finding: &rules::Finding,
    already_broken: &HashSet<String>,
) -> Action {
    let update = request.operation == Operation::Update;
    match finding.kind {
        FindingKind::Unknown(kind) => Action::Warn(WarnReason::Lookup(&kind.lookup_failed)),
        FindingKind::Missing(KindInfo {
            gone_on_update: Some(reason),
            ..
        }) if update => Action::Warn(WarnReason::Lookup(reason)),
        FindingKind::Missing(kind) if request.dry_run => {
            Action::Warn(WarnReason::Lookup(&kind.dry_run_missing))
        }
        _ if update && already_broken.contains(&finding.key) => {
            Action::Warn(WarnReason::AlreadyBroken)
        }
        _ => Action::Deny,
    }
}

/// Rules the owner exempted with the annotation, if the policy lets them.
fn owner_exemptions(request: &Request<'_>, allowed: bool, notes: &mut Vec<String>) -> Vec<RuleId> {
    let Some(value) = request.sts.annotation(EXEMPT_ANNOTATION) else {
        return Vec::new();
    };
    if !allowed {
        notes.push(format!(
            "{EXEMPT_ANNOTATION} is ignored: the policy does not let owners exempt themselves in namespace {:?}; ask the platform team",
            request.object.namespace
        ));
        return Vec::new();
    }
    let mut exempt = Vec::new();
    for id in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if id == "all" {
            return rules::RULES.iter().map(|r| r.id).collect();
        }
        match RuleId::parse(id) {
            Some(rule) => exempt.push(rule),
            None => notes.push(format!(
                "{EXEMPT_ANNOTATION}: unknown rule id {id:?} ignored (known: {}, all)",
                RuleId::known()
            )),
        }
    }
    exempt
}
