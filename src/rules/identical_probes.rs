//! `identical-probes`: a container's liveness and readiness probes run the
//! same check. Then a readiness failure caused by load or a dependency also
//! restarts the container, and an overload becomes a restart storm.

use compact_str::CompactString;
use serde_json::{Value, json};

use super::{
    Case, Cel, CelSettings, Finding, FindingKind, Rule, RuleCel, RuleId, Subject, cel_probed, needs_nothing,
    probed_containers,
};
use crate::view::{Container, HttpHeader, Probe, ProbePort};

pub const RULE: Rule = Rule {
    id: RuleId("identical-probes"),
    summary: "A container's livenessProbe and readinessProbe run different checks",
    help: "Point the livenessProbe at a check of the process itself (it restarts the container) and the readinessProbe at whether it can serve now (it only takes the pod out of the Service). When both run the same check, a readiness failure caused by load or by a dependency restarts the container too, and an overload becomes a restart storm.",
    needs: needs_nothing,
    check,
    denies_only_when_named: true,
    cel: Some(Cel { compile: cel, cases }),
};

fn check(subject: &Subject<'_>) -> Vec<Finding> {
    probed_containers(subject.sts, subject.settings)
        .filter_map(|pc| {
            let c = pc.container;
            let (live, ready) = (c.liveness_probe.as_ref()?, c.readiness_probe.as_ref()?);
            let same = handler(live, c).filter(|h| Some(h) == handler(ready, c).as_ref())?;
            Some(Finding {
                rule: RULE.id,
                kind: FindingKind::Object,
                key: format!("{}/{}", RULE.id, c.name),
                path: pc.path(),
                container: Some(c.name.to_string()),
                problem: format!("runs one check for liveness and readiness ({same})"),
                fix: "make livenessProbe a lighter check that the process is alive".into(),
            })
        })
        .collect()
}

/// What a probe checks, borrowed from it, with the API server's defaults
/// filled in and a named port resolved, so two spellings of one check
/// compare equal. Every container is compared on every admission, so
/// nothing here allocates unless both probes carry HTTP headers.
#[derive(Debug)]
enum Handler<'a> {
    Http { scheme: &'a str, host: &'a str, port: Port<'a>, path: &'a str, headers: &'a [HttpHeader] },
    Tcp { host: &'a str, port: Port<'a> },
    Exec(&'a [CompactString]),
    Grpc { port: i32, service: &'a str },
}

impl PartialEq for Handler<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (
                Handler::Http { scheme, host, port, path, headers },
                Handler::Http { scheme: scheme2, host: host2, port: port2, path: path2, headers: headers2 },
            ) => {
                // `http` and `HTTP` name one scheme.
                scheme.eq_ignore_ascii_case(scheme2)
                    && host == host2
                    && port == port2
                    && path == path2
                    && same_headers(headers, headers2)
            }
            (Handler::Tcp { host, port }, Handler::Tcp { host: host2, port: port2 }) => host == host2 && port == port2,
            (Handler::Exec(command), Handler::Exec(command2)) => command == command2,
            (Handler::Grpc { port, service }, Handler::Grpc { port: port2, service: service2 }) => {
                port == port2 && service == service2
            }
            _ => false,
        }
    }
}

/// Headers compare as a multiset of (lower-cased name, value): HTTP header
/// names are case-insensitive, and their order sends the same request.
fn same_headers(a: &[HttpHeader], b: &[HttpHeader]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.is_empty() {
        return true;
    }
    fn sorted(headers: &[HttpHeader]) -> Vec<(String, &str)> {
        let mut pairs: Vec<(String, &str)> =
            headers.iter().map(|h| (h.name.as_str().to_ascii_lowercase(), h.value.as_str())).collect();
        pairs.sort_unstable();
        pairs
    }
    sorted(a) == sorted(b)
}

/// A probe's port: the number, from the container's `ports` when named
/// there, else the name as written. Ports compare as they are shown, so
/// `"8080"` written as a string is port 8080.
#[derive(Debug)]
enum Port<'a> {
    Number(i32),
    Name(&'a str),
}

impl PartialEq for Port<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Port::Number(a), Port::Number(b)) => a == b,
            (Port::Name(a), Port::Name(b)) => a == b,
            (Port::Number(n), Port::Name(name)) | (Port::Name(name), Port::Number(n)) => *name == n.to_string(),
        }
    }
}

impl std::fmt::Display for Port<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Port::Number(n) => write!(f, "{n}"),
            Port::Name(name) => f.write_str(name),
        }
    }
}

impl std::fmt::Display for Handler<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Handler::Http { port, path, .. } => write!(f, "httpGet {path} port {port}"),
            Handler::Tcp { port, .. } => write!(f, "tcpSocket port {port}"),
            Handler::Exec(command) => write!(f, "exec {}", command.first().map_or("", CompactString::as_str)),
            Handler::Grpc { port, .. } => write!(f, "grpc port {port}"),
        }
    }
}

fn handler<'a>(probe: &'a Probe, container: &'a Container) -> Option<Handler<'a>> {
    if let Some(http) = &probe.http_get {
        return Some(Handler::Http {
            scheme: http.scheme.as_deref().unwrap_or("HTTP"),
            host: http.host.as_deref().unwrap_or_default(),
            port: port_number(&http.port, container),
            path: http.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/"),
            headers: http.http_headers.as_deref().unwrap_or_default(),
        });
    }
    if let Some(tcp) = &probe.tcp_socket {
        return Some(Handler::Tcp {
            host: tcp.host.as_deref().unwrap_or_default(),
            port: port_number(&tcp.port, container),
        });
    }
    if let Some(exec) = &probe.exec {
        return Some(Handler::Exec(exec.command.as_deref().unwrap_or_default()));
    }
    probe.grpc.as_ref().map(|g| Handler::Grpc {
        port: g.port,
        service: g.service.as_deref().unwrap_or_default(),
    })
}

/// A port as a number where the container names it, else as written.
fn port_number<'a>(port: &'a ProbePort, container: &Container) -> Port<'a> {
    match port {
        ProbePort::Number(n) => Port::Number(*n),
        ProbePort::Name(name) => container
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name) && p.container_port != 0)
            .map_or(Port::Name(name), |p| Port::Number(p.container_port)),
    }
}

/// The same in CEL: [`handler`]'s defaults and named ports, the first
/// handler set (httpGet, tcpSocket, exec, grpc) of each probe compared.
fn cel(settings: &CelSettings) -> RuleCel {
    let (live, ready) = ("c.livenessProbe", "c.readinessProbe");
    let http = |p: &str| format!("{p}.httpGet");
    let tcp = |p: &str| format!("{p}.tcpSocket");
    // Headers compare as a multiset of (lower-cased name, value): the Rust
    // sorts them, CEL has no sort.
    let headers = |p: &str| {
        format!("{p}.httpGet.?httpHeaders.orValue([]).map(h, [h.name.lowerAscii(), string(h.value)])")
    };
    let same_headers = format!(
        "size({l}) == size({r}) && {l}.all(h, size({l}.filter(x, x == h)) == size({r}.filter(x, x == h)))",
        l = headers(live),
        r = headers(ready)
    );
    let same_http = format!(
        "{l}.?scheme.orValue('HTTP').upperAscii() == {r}.?scheme.orValue('HTTP').upperAscii() \
         && {l}.?host.orValue('') == {r}.?host.orValue('') && {lp} == {rp} && {lpath} == {rpath} && {same_headers}",
        l = http(live),
        r = http(ready),
        lp = cel_port(&format!("{}.port", http(live))),
        rp = cel_port(&format!("{}.port", http(ready))),
        lpath = cel_path(&http(live)),
        rpath = cel_path(&http(ready)),
    );
    let same_tcp = format!(
        "{l}.?host.orValue('') == {r}.?host.orValue('') && {lp} == {rp}",
        l = tcp(live),
        r = tcp(ready),
        lp = cel_port(&format!("{}.port", tcp(live))),
        rp = cel_port(&format!("{}.port", tcp(ready))),
    );
    // Which handler a probe has: the first set, in the Rust's order.
    let is = |p: &str, handler: &str| {
        let before: Vec<String> = ["httpGet", "tcpSocket", "exec", "grpc"]
            .iter()
            .take_while(|h| **h != handler)
            .map(|h| format!("!has({p}.{h})"))
            .collect();
        before
            .into_iter()
            .chain([format!("has({p}.{handler})")])
            .collect::<Vec<_>>()
            .join(" && ")
    };
    let same = format!(
        "has({live}) && has({ready}) && ({lh} ? ({rh} && {same_http}) : {lt} ? ({rt} && {same_tcp}) \
         : {le} ? ({re} && {live}.exec.?command.orValue([]) == {ready}.exec.?command.orValue([])) \
         : {lg} && {rg} && {live}.grpc.port == {ready}.grpc.port && {live}.grpc.?service.orValue('') == {ready}.grpc.?service.orValue(''))",
        lh = is(live, "httpGet"),
        rh = is(ready, "httpGet"),
        lt = is(live, "tcpSocket"),
        rt = is(ready, "tcpSocket"),
        le = is(live, "exec"),
        re = is(ready, "exec"),
        lg = is(live, "grpc"),
        rg = is(ready, "grpc"),
    );
    // Handler's Display, of the liveness probe's handler.
    let shown = format!(
        "(has({live}.httpGet) ? 'httpGet ' + {path} + ' port ' + string({hp}) \
         : has({live}.tcpSocket) ? 'tcpSocket port ' + string({tp}) \
         : has({live}.exec) ? 'exec ' + ({live}.exec.?command.orValue([]).size() > 0 ? {live}.exec.command[0] : '') \
         : 'grpc port ' + string({live}.grpc.port))",
        path = cel_path(&http(live)),
        hp = cel_port(&format!("{}.port", http(live))),
        tp = cel_port(&format!("{}.port", tcp(live))),
    );
    RuleCel::of(Vec::new(), 1, |root| {
        cel_probed(root, settings, &same, |location| {
            format!("[string(c.name), {location} + ' runs one check for liveness and readiness ' + '(' + {shown} + ')']")
        })
    })
}

/// CEL of [`port_number`] for `port` (an int-or-string) of container `c`.
fn cel_port(port: &str) -> String {
    let named = format!("c.?ports.orValue([]).filter(x, x.?name.orValue('') == {port} && x.containerPort != 0)");
    format!(
        "(type({port}) == int ? string({port}) : size({named}) > 0 ? string({named}[0].containerPort) : string({port}))"
    )
}

/// CEL of an httpGet's path as [`handler`] reads it: `/` when unset or empty.
fn cel_path(http: &str) -> String {
    format!("({http}.?path.orValue('') == '' ? '/' : {http}.path)")
}

/// The table: the API server's defaults and named ports make two
/// spellings of one check the same; any other difference makes them two.
fn cases() -> Vec<Case> {
    let http = json!({"httpGet": {"path": "/healthz", "port": 8080}});
    let tcp = |port: Value| json!({"tcpSocket": {"port": port}});
    let case = |name, live: Value, ready: Value, same: Option<&str>| {
        let app = json!({"name": "app",
            "ports": [{"name": "http", "containerPort": 8080}, {"name": "grpc", "containerPort": 9000}],
            "livenessProbe": live, "readinessProbe": ready});
        let found = same.map(|check| ("app", format!("runs one check for liveness and readiness ({check})")));
        Case::new(name, json!([app]), found.into_iter().collect())
    };
    vec![
        case("same-http", http.clone(), http.clone(), Some("httpGet /healthz port 8080")),
        case(
            "scheme-and-path-defaults",
            json!({"httpGet": {"port": 8080}}),
            json!({"httpGet": {"path": "/", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 3}),
            Some("httpGet / port 8080"),
        ),
        case(
            "empty-path-is-root",
            json!({"httpGet": {"path": "", "port": 8080}}),
            json!({"httpGet": {"port": 8080}}),
            Some("httpGet / port 8080"),
        ),
        case(
            "named-port-resolves",
            http.clone(),
            json!({"httpGet": {"path": "/healthz", "port": "http"}}),
            Some("httpGet /healthz port 8080"),
        ),
        case("other-path", http.clone(), json!({"httpGet": {"path": "/ready", "port": 8080}}), None),
        case(
            "other-header",
            http.clone(),
            json!({"httpGet": {"path": "/healthz", "port": 8080, "httpHeaders": [{"name": "X", "value": "1"}]}}),
            None,
        ),
        case(
            "headers-in-another-order-and-case",
            json!({"httpGet": {"port": 8080, "httpHeaders": [{"name": "X-A", "value": "1"}, {"name": "x-b", "value": "2"}]}}),
            json!({"httpGet": {"port": 8080, "httpHeaders": [{"name": "X-B", "value": "2"}, {"name": "x-a", "value": "1"}]}}),
            Some("httpGet / port 8080"),
        ),
        case(
            "headers-repeated-differently",
            json!({"httpGet": {"port": 8080, "httpHeaders": [{"name": "a", "value": "1"}, {"name": "a", "value": "1"}, {"name": "b", "value": "2"}]}}),
            json!({"httpGet": {"port": 8080, "httpHeaders": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}, {"name": "b", "value": "2"}]}}),
            None,
        ),
        case(
            "scheme-case-and-empty-host",
            json!({"httpGet": {"port": 8080, "scheme": "HTTPS"}}),
            json!({"httpGet": {"port": 8080, "scheme": "HTTPS", "host": ""}}),
            Some("httpGet / port 8080"),
        ),
        case("other-host", json!({"httpGet": {"port": 8080, "host": "a"}}), json!({"httpGet": {"port": 8080}}), None),
        case("same-tcp", tcp(json!(5432)), tcp(json!(5432)), Some("tcpSocket port 5432")),
        case("tcp-named-port-resolves", tcp(json!("http")), tcp(json!(8080)), Some("tcpSocket port 8080")),
        case(
            "tcp-undeclared-name-as-written",
            tcp(json!("db")),
            tcp(json!("db")),
            Some("tcpSocket port db"),
        ),
        case(
            "same-exec",
            json!({"exec": {"command": ["pg_isready"]}}),
            json!({"exec": {"command": ["pg_isready"]}}),
            Some("exec pg_isready"),
        ),
        case(
            "other-exec",
            json!({"exec": {"command": ["pg_isready"]}}),
            json!({"exec": {"command": ["psql", "-c", "select 1"]}}),
            None,
        ),
        case(
            "same-grpc",
            json!({"grpc": {"port": 9000}}),
            json!({"grpc": {"port": 9000, "service": ""}}),
            Some("grpc port 9000"),
        ),
        case(
            "other-grpc-service",
            json!({"grpc": {"port": 9000}}),
            json!({"grpc": {"port": 9000, "service": "ready"}}),
            None,
        ),
        case("other-handler", tcp(json!(8080)), http.clone(), None),
        // Restartable sidecars count; plain init containers and containers
        // with one of the two probes do not.
        Case::new(
            "sidecars-count",
            json!([{"name": "only-live", "livenessProbe": tcp(json!(1))}]),
            vec![("proxy", "runs one check for liveness and readiness (tcpSocket port 1)".into())],
        )
        .with_init(json!([
            {"name": "proxy", "restartPolicy": "Always", "livenessProbe": tcp(json!(1)), "readinessProbe": tcp(json!(1))},
            {"name": "migrate"},
        ])),
    ]
}

#[cfg(test)]
mod tests {
    use super::Port;

    /// As the messages show them: a port written as the string `"8080"`
    /// is port 8080 (the API server refuses such a name; a manifest given
    /// to `check` may still hold one).
    #[test]
    fn ports_compare_as_they_are_shown() {
        assert_eq!(Port::Number(8080), Port::Name("8080"));
        assert_eq!(Port::Name("8080"), Port::Number(8080));
        assert_ne!(Port::Number(8080), Port::Name("08080"));
        assert_ne!(Port::Number(8080), Port::Name("http"));
        assert_ne!(Port::Number(8080), Port::Number(8081));
    }
}
