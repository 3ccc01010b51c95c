//! `startup-budget`: a container with a livenessProbe and no startupProbe
//! must be given at least the policy's `startupBudget.minSeconds` before
//! its first restart (`initialDelaySeconds + failureThreshold ×
//! periodSeconds`, API defaults 0, 3 and 10). A slow starter (a database
//! replaying its log, a JVM) is otherwise killed before it ever serves:
//! CrashLoopBackOff.

use serde_json::{Value, json};

use super::{
    Case, Cel, CelSettings, Finding, FindingKind, Rule, RuleCel, RuleId, Subject, cel_probed, needs_nothing,
    probed_containers,
};
use crate::view::Container;

pub const RULE: Rule = Rule {
    id: RuleId("startup-budget"),
    summary: "A container's liveness probe allows a slow start before the first restart",
    help: "Without a startupProbe, the livenessProbe starts checking at once and restarts the container after initialDelaySeconds + failureThreshold x periodSeconds (30 s on the API's defaults). Add a startupProbe that allows the slowest start, or annotate the StatefulSet sts-guard.io/startup-probe: \"true\" so the mutating webhook adds one (5 minutes by default, sts-guard.io/startup-timeout to change it).",
    needs: needs_nothing,
    check,
    denies_only_when_named: true,
    cel: Some(Cel { compile: cel, cases }),
};

/// The API's defaults for a probe's timing.
const DEFAULT_INITIAL_DELAY: i64 = 0;
const DEFAULT_FAILURE_THRESHOLD: i64 = 3;
const DEFAULT_PERIOD: i64 = 10;

fn check(subject: &Subject<'_>) -> Vec<Finding> {
    let min = subject.settings.startup_budget_min_seconds;
    probed_containers(subject.sts, subject.settings)
        .filter(|pc| pc.container.startup_probe.is_none())
        .filter_map(|pc| {
            let allows = budget(pc.container)?;
            (allows < min).then(|| Finding {
                rule: RULE.id,
                kind: FindingKind::Object,
                key: format!("{}/{}", RULE.id, pc.container.name),
                path: pc.path().field("livenessProbe"),
                container: Some(pc.container.name.to_string()),
                problem: format!(
                    "livenessProbe allows {allows} s before the first restart; the policy asks {min} s"
                ),
                fix: "add a startupProbe, or the annotation sts-guard.io/startup-probe: \"true\"".into(),
            })
        })
        .collect()
}

/// Seconds the liveness probe allows before the first restart.
fn budget(container: &Container) -> Option<i64> {
    let probe = container.liveness_probe.as_ref()?;
    // The API refuses values below 1 (0 for the delay); a forged one reads
    // as the default.
    let get = |v: Option<i32>, default: i64| {
        v.map(i64::from).filter(|v| *v >= 1).unwrap_or(default)
    };
    Some(
        probe.initial_delay_seconds.map_or(DEFAULT_INITIAL_DELAY, |d| i64::from(d.max(0)))
            + get(probe.failure_threshold, DEFAULT_FAILURE_THRESHOLD)
                * get(probe.period_seconds, DEFAULT_PERIOD),
    )
}

/// The CEL variable holding `startupBudget.minSeconds` of the request's
/// namespace.
const MIN_SECONDS: &str = "startupBudgetMinSeconds";

/// The same in CEL: [`budget`] with the same defaults.
fn cel(settings: &CelSettings) -> RuleCel {
    let field = |name: &str, default: i64| {
        let v = format!("c.livenessProbe.?{name}.orValue({default})");
        format!("({v} >= 1 ? {v} : {default})")
    };
    let delay = "c.livenessProbe.?initialDelaySeconds.orValue(0)";
    let allows = format!(
        "(({delay} < 0 ? 0 : {delay}) + {} * {})",
        field("failureThreshold", DEFAULT_FAILURE_THRESHOLD),
        field("periodSeconds", DEFAULT_PERIOD)
    );
    let min = format!("variables.{MIN_SECONDS}");
    let found = format!("has(c.livenessProbe) && !has(c.startupProbe) && {allows} < {min}");
    RuleCel::of(
        vec![(MIN_SECONDS.to_string(), settings.startup_budget_min_seconds.clone())],
        1,
        |root| {
            cel_probed(root, settings, &found, |location| {
                format!(
                    "[string(c.name), {location} + ' livenessProbe allows ' + string({allows}) + ' s before the first restart; the policy asks ' + string({min}) + ' s']"
                )
            })
        },
    )
}

/// The table, under the default 60 s: the kubelet's probe defaults, a
/// long delay, exactly the minimum, a fast period; a startup probe or no
/// liveness probe never.
fn cases() -> Vec<Case> {
    let live = |name, probe: Value, allows: Option<i64>| {
        let found = allows.map(|s| ("db", format!("livenessProbe allows {s} s before the first restart; the policy asks 60 s")));
        Case::new(name, json!([{"name": "db", "livenessProbe": probe}]), found.into_iter().collect())
    };
    let tcp = json!({"tcpSocket": {"port": 1}});
    vec![
        live("api-defaults", tcp.clone(), Some(30)),
        live(
            "defaulted-by-the-api-server",
            json!({"tcpSocket": {"port": 1}, "initialDelaySeconds": 0, "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 1, "successThreshold": 1}),
            Some(30),
        ),
        live("long-delay", json!({"tcpSocket": {"port": 1}, "initialDelaySeconds": 60}), None),
        live("exactly-the-minimum", json!({"tcpSocket": {"port": 1}, "failureThreshold": 6}), None),
        live("one-second-short", json!({"tcpSocket": {"port": 1}, "initialDelaySeconds": 29, "failureThreshold": 3}), Some(59)),
        live("fast-period", json!({"tcpSocket": {"port": 1}, "periodSeconds": 2, "failureThreshold": 5}), Some(10)),
        live(
            "largest-values",
            json!({"tcpSocket": {"port": 1}, "initialDelaySeconds": 2147483647, "periodSeconds": 2147483647, "failureThreshold": 2147483647}),
            None,
        ),
        Case::new(
            "startup-probe-or-no-liveness-probe-never",
            json!([{"name": "a", "livenessProbe": tcp, "startupProbe": tcp}, {"name": "b", "readinessProbe": tcp}]),
            vec![],
        ),
        Case::new(
            "sidecars-count",
            json!([{"name": "db", "livenessProbe": tcp, "startupProbe": tcp}]),
            vec![("proxy", "livenessProbe allows 30 s before the first restart; the policy asks 60 s".into())],
        )
        .with_init(json!([{"name": "proxy", "restartPolicy": "Always", "livenessProbe": tcp}, {"name": "migrate"}])),
    ]
}
