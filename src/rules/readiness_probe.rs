//! `readiness-probe`: every container (and restartable sidecar) has a
//! `readinessProbe`, so traffic only reaches replicas that can serve it.

use super::{
    Case, Cel, CelSettings, Finding, Rule, RuleCel, RuleId, Subject, cel_require_probe, needs_nothing, probe_cases,
    require_probe,
};

pub const RULE: Rule = Rule {
    id: RuleId("readiness-probe"),
    summary: "Every container and restartable sidecar has a readinessProbe",
    help: "Add a readinessProbe so traffic only reaches pods that can serve it. Each container needs its own: one probe somewhere in the pod does not cover the others.",
    needs: needs_nothing,
    check,
    denies_only_when_named: false,
    cel: Some(Cel { compile: cel, cases }),
};

fn check(subject: &Subject<'_>) -> Vec<Finding> {
    require_probe(
        subject,
        RULE.id,
        "readinessProbe",
        |c| c.readiness_probe.is_some(),
        "add a readinessProbe so traffic only reaches a replica that is ready",
    )
}

/// The same in CEL: a probed container without a readinessProbe.
fn cel(settings: &CelSettings) -> RuleCel {
    cel_require_probe(settings, "readinessProbe")
}

/// The table: each container and restartable sidecar needs its own probe;
/// plain init containers are never asked (the API forbids probes there).
fn cases() -> Vec<Case> {
    probe_cases("readinessProbe")
}
