//! From findings to a decision: modes, exemptions, ratcheting on UPDATE and
//! the dry-run rule for missing Services.

use std::collections::HashSet;

use kube::core::admission::Operation;

use super::warnings::{denial_message, warning_list};
use super::{Action, Context, Decision, EXEMPT_ANNOTATION, Outcome, ReviewSubject, WarnReason};
use crate::policy::Mode;
use crate::rules::{self, FindingKind, RuleId, Subject};

pub fn validate(subject: &ReviewSubject<'_>, ctx: &Context<'_>) -> Decision {
    let policy = ctx.policy;
    let ns = subject.object.namespace;
    let settings = policy.rule_settings();
    let findings = rules::evaluate(&Subject {
        sts: subject.sts,
        namespace: ns,
        services: ctx.services,
        settings,
    });
    // Read first so a misused annotation is reported even on a compliant object.
    let mut notices = Vec::new();
    let owner_exempt = owner_exemptions(subject, policy.owner_exemptions_allowed(ns), &mut notices);
    if findings.is_empty() {
        return Decision {
            warnings: warning_list(&[], &notices),
            notices,
            ..Decision::default()
        };
    }

    // Ratcheting: what the old object already broke does not block an update.
    let already_broken: HashSet<String> = match (&subject.operation, subject.old) {
        (Operation::Update, Some(old)) => rules::evaluate(&Subject {
            sts: old,
            namespace: ns,
            services: ctx.services,
            settings,
        })
        .into_iter()
        .map(|f| f.key)
        .collect(),
        _ => HashSet::new(),
    };

    let outcomes: Vec<Outcome> = findings
        .into_iter()
        .map(|finding| {
            let action = if let Some(e) = policy.exemption(ns, subject.object.name, finding.rule) {
                Action::Exempt(e.reason.clone())
            } else if owner_exempt.contains(&finding.rule) {
                Action::Exempt(format!("{EXEMPT_ANNOTATION} annotation"))
            } else {
                match policy.mode(ns, finding.rule) {
                    Mode::Audit => Action::Audit,
                    Mode::Warn => Action::Warn(WarnReason::WarnMode),
                    Mode::Enforce => enforce(subject, &finding, &already_broken),
                }
            };
            Outcome { finding, action }
        })
        .collect();

    Decision {
        denial: denial_message(subject, &outcomes),
        warnings: warning_list(&outcomes, &notices),
        notices,
        patch: None,
        outcomes,
        mutations: Vec::new(),
    }
}

/// An enforced finding denies, except where PRODUCT.md says an API server's
/// behaviour makes denying wrong.
fn enforce(
    subject: &ReviewSubject<'_>,
    finding: &rules::Finding,
    already_broken: &HashSet<String>,
) -> Action {
    let update = subject.operation == Operation::Update;
    match finding.kind {
        FindingKind::ServiceUnknown => Action::Warn(WarnReason::LookupFailed),
        FindingKind::ServiceMissing if update => Action::Warn(WarnReason::ServiceGoneOnUpdate),
        FindingKind::ServiceMissing if subject.dry_run => {
            Action::Warn(WarnReason::DryRunServiceMissing)
        }
        _ if update && already_broken.contains(&finding.key) => {
            Action::Warn(WarnReason::AlreadyBroken)
        }
        _ => Action::Deny,
    }
}

/// Rules the owner exempted with the annotation, if the policy lets them.
fn owner_exemptions(
    subject: &ReviewSubject<'_>,
    allowed: bool,
    notices: &mut Vec<String>,
) -> Vec<RuleId> {
    let Some(value) = subject
        .sts
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(EXEMPT_ANNOTATION))
    else {
        return Vec::new();
    };
    if !allowed {
        notices.push(format!(
            "{EXEMPT_ANNOTATION} is ignored: the policy does not let owners exempt themselves in namespace {:?}; ask the platform team",
            subject.object.namespace
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
            None => notices.push(format!(
                "{EXEMPT_ANNOTATION}: unknown rule id {id:?} ignored (known: liveness-probe, readiness-probe, headless-service, all)"
            )),
        }
    }
    exempt
}
