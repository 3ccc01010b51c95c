//! `readiness-probe`: every container (and restartable sidecar) has a
//! `readinessProbe`, so traffic only reaches replicas that can serve it.

use super::{Finding, RuleId, Subject, require_probe};

pub fn check(subject: &Subject<'_>) -> Vec<Finding> {
    require_probe(
        subject,
        RuleId::ReadinessProbe,
        "readinessProbe",
        |c| c.readiness_probe.as_ref(),
        "add a readinessProbe so traffic only reaches a replica that is ready",
    )
}
