//! `liveness-probe`: every container (and restartable sidecar) has a
//! `livenessProbe`, so a hung process is restarted.

use super::{Finding, RuleId, Subject, require_probe};

pub fn check(subject: &Subject<'_>) -> Vec<Finding> {
    require_probe(
        subject,
        RuleId::LivenessProbe,
        "livenessProbe",
        |c| c.liveness_probe.as_ref(),
        "add a livenessProbe (httpGet, tcpSocket, exec or grpc) so a hung process is restarted",
    )
}
