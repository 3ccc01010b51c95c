//! `probe-port`: a probe names a port (`port: http`) the container does not
//! declare in `ports[].name`. The API server accepts it; the kubelet cannot
//! resolve the name, so the probe fails forever: restarted forever, or
//! never ready. Numeric ports are never a finding (`ports` is
//! informational).

use serde_json::{Value, json};

use crate::view::{Probe, ProbePort};

use super::{
    Case, Cel, CelSettings, Finding, FindingKind, Rule, RuleCel, RuleId, Subject, cel_probed, needs_nothing,
    probed_containers,
};

pub const RULE: Rule = Rule {
    id: RuleId("probe-port"),
    summary: "A probe's named port is one the container declares",
    help: "A probe that names its port (port: http) needs a ports entry with that name on the same container; the kubelet cannot resolve it otherwise, and the probe fails forever (a liveness probe restarts the container in a loop, a readiness probe keeps it out of the Service). Name the port in ports[], or give the probe the port number.",
    needs: needs_nothing,
    check,
    denies_only_when_named: true,
    cel: Some(Cel { compile: cel, cases }),
};

fn check(subject: &Subject<'_>) -> Vec<Finding> {
    let mut findings = Vec::new();
    for pc in probed_containers(subject.sts, subject.settings) {
        let c = pc.container;
        let probes: [(&'static str, Option<&Probe>); 3] = [
            ("livenessProbe", c.liveness_probe.as_ref()),
            ("readinessProbe", c.readiness_probe.as_ref()),
            ("startupProbe", c.startup_probe.as_ref()),
        ];
        for (field, probe) in probes {
            let Some((handler, ProbePort::Name(name))) = probe.and_then(named_port) else {
                continue;
            };
            if c.ports.iter().any(|p| p.name.as_deref() == Some(name)) {
                continue;
            }
            findings.push(Finding {
                rule: RULE.id,
                kind: FindingKind::Object,
                key: format!("{}/{}/{field}", RULE.id, c.name),
                path: pc.path().field(field).field(handler).field("port"),
                container: Some(c.name.to_string()),
                problem: format!("{field} names port {name:?}, which the container does not declare"),
                fix: format!("add a port named {name:?} to ports[], or use the port number"),
            });
        }
    }
    findings
}

/// The handler field and port of an httpGet or tcpSocket probe.
fn named_port(probe: &Probe) -> Option<(&'static str, &ProbePort)> {
    if let Some(http) = &probe.http_get {
        return Some(("httpGet", &http.port));
    }
    probe.tcp_socket.as_ref().map(|t| ("tcpSocket", &t.port))
}

/// The probes [`check`] reads, in its order: one finding key each.
const PROBES: [&str; 3] = ["livenessProbe", "readinessProbe", "startupProbe"];

/// The same in CEL: per container `[name, liveness, readiness, startup]`,
/// each the message of that probe's finding or `''`.
fn cel(settings: &CelSettings) -> RuleCel {
    // [`named_port`]: httpGet's port, else tcpSocket's.
    let port = |field: &str| {
        format!("(has(c.{field}.httpGet) ? c.{field}.httpGet.port : c.{field}.tcpSocket.port)")
    };
    let broken = |field: &str| {
        format!(
            "(has(c.{field}) && (has(c.{field}.httpGet) || has(c.{field}.tcpSocket)) && type({p}) == string \
             && !c.?ports.orValue([]).exists(x, x.?name.orValue('') == {p}))",
            p = port(field)
        )
    };
    let found = PROBES.map(broken).join(" || ");
    RuleCel::of(Vec::new(), PROBES.len(), |root| {
        cel_probed(root, settings, &found, |location| {
            let messages: Vec<String> = PROBES
                .iter()
                .map(|field| {
                    format!(
                        r#"{b} ? {location} + ' {field} names port "' + string({p}) + '", which the container does not declare' : ''"#,
                        b = broken(field),
                        p = port(field)
                    )
                })
                .collect();
            format!("[string(c.name), {}]", messages.join(", "))
        })
    })
}

/// The table: a name the container does not declare, in any probe of a
/// container or a restartable sidecar; never a number, never exec.
fn cases() -> Vec<Case> {
    let http = json!([{"name": "http", "containerPort": 80}]);
    let live = |name, probe: Value, ports: &Value, port: Option<&str>| {
        let found = port.map(|p| ("app", format!("livenessProbe names port \"{p}\", which the container does not declare")));
        Case::new(name, json!([{"name": "app", "ports": ports, "livenessProbe": probe}]), found.into_iter().collect())
    };
    let missing = json!({"tcpSocket": {"port": "missing"}});
    let not_declared = |field: &str| format!("{field} names port \"missing\", which the container does not declare");
    vec![
        live("declared-name", json!({"httpGet": {"port": "http"}}), &http, None),
        live("undeclared-http-name", json!({"httpGet": {"port": "web"}}), &http, Some("web")),
        live("undeclared-tcp-name", json!({"tcpSocket": {"port": "db"}}), &Value::Null, Some("db")),
        live("numeric-port-never", json!({"httpGet": {"port": 8080}}), &Value::Null, None),
        live("exec-has-no-port", json!({"exec": {"command": ["true"]}}), &Value::Null, None),
        live("grpc-has-a-number", json!({"grpc": {"port": 9000}}), &Value::Null, None),
        Case::new(
            "every-probe-of-containers-and-sidecars",
            json!([{"name": "app", "readinessProbe": missing, "startupProbe": missing},
                   {"name": "second", "livenessProbe": missing, "readinessProbe": {"httpGet": {"port": "http"}}, "ports": http}]),
            vec![
                ("app", not_declared("readinessProbe")),
                ("app", not_declared("startupProbe")),
                ("second", not_declared("livenessProbe")),
                ("proxy", not_declared("livenessProbe")),
            ],
        )
        .with_init(json!([{"name": "proxy", "restartPolicy": "Always", "livenessProbe": missing}, {"name": "migrate"}])),
    ]
}
