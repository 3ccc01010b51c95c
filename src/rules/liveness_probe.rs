//! `liveness-probe`: every container (and restartable sidecar) has a
//! `livenessProbe`, so a hung process is restarted.

use super::{Case, Cel, CelSettings, Rule, RuleCel, RuleId, Subject, cel_require_probe, needs_nothing, probe_cases, require_probe};

pub const RULE: Rule = Rule {
    id: RuleId("liveness-probe"),
    summary: "Every container and restartable sidecar has a livenessProbe",
    help: "Add a livenessProbe (httpGet, tcpSocket, exec or grpc) so the kubelet restarts a hung process. Plain init containers and ephemeral containers cannot have probes and are not asked for one.",
    needs: needs_nothing,
    check,
    denies_only_when_named: false,
    cel: Some(Cel { compile: cel, cases }),
};

fn check(subject: &Subject<'_>) -> Vec<super::Finding> {
    require_probe(
        subject,
        RULE.id,
        "livenessProbe",
        |c| c.liveness_probe.is_some(),
        "add a livenessProbe (httpGet, tcpSocket, exec or grpc) so a hung process is restarted",
    )
}

/// The same in CEL: a probed container without a livenessProbe.
fn cel(settings: &CelSettings) -> RuleCel {
    cel_require_probe(settings, "livenessProbe")
}

/// The table: each container and restartable sidecar needs its own probe;
/// plain init containers are never asked (the API forbids probes there).
fn cases() -> Vec<Case> {
    probe_cases("livenessProbe")
}
