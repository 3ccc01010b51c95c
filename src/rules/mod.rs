//! Validating rules. One rule, one file, one stable id.
//!
//! A rule is a [`Rule`] value: its id, its description, what it needs
//! looked up, and a plain function from a [`Subject`] to the [`Finding`]s
//! it reports. Rules know nothing of modes, exemptions, UPDATE, dry-run or
//! HTTP: the review decides what a finding means for the request, and the
//! webhook fetches what [`Rule::needs`] declares before the review runs.
//!
//! # Adding a rule
//!
//! 1. Write `src/rules/<name>.rs` holding
//!    `pub const RULE: Rule = Rule { id: RuleId("<id>"), .. }`: the id (never
//!    renamed once released: it is in messages, metric labels, reports and
//!    policy files), a one-line summary and the help SARIF shows, `needs`
//!    (use [`needs_nothing`] when the rule reads only the StatefulSet) and
//!    `check`. A rule reads only [`crate::view::StatefulSet`]; a field it
//!    needs that the view lacks is added there, once, for every front door.
//! 2. Add `<name>` to the `rules!` list below.
//!
//! That is all: the policy file accepts the id, `sts-guard.io/exempt`
//! knows it, SARIF lists it, metrics label its findings, and the test
//! `every_lookup_a_rule_makes_was_declared` holds it to its `needs`. A rule
//! that reads another kind of object than the ones looked up today needs
//! that kind first: see "Adding a looked-up kind" in `crate::lookup`.
//!
//! # A rule's CEL
//!
//! A rule that reads only the StatefulSet also says the same thing in CEL,
//! next to its Rust: `cel: Some(Cel { compile: cel, cases })`, a function
//! from [`CelSettings`] to a [`RuleCel`] and the rule's case table. `sts-guard policy vap` (`crate::vap`) compiles it into one
//! ValidatingAdmissionPolicy per rule, so the API server can judge
//! StatefulSets without the webhook. The CEL lists the rule's findings over
//! a root object (`object`, or `oldObject` for ratcheting), one entry per
//! offending container: its name (the finding's key) and the message the
//! webhook writes (`[rule] spec.template.spec.containers[0] "app" has no
//! livenessProbe`, without the `[rule]`), defaults filled in exactly as the
//! Rust fills them. Rules that look other objects up (a Service, a budget)
//! have `cel: None`: a ValidatingAdmissionPolicy cannot read them without
//! `paramKind`.
//!
//! The case table ([`Case`]s) is the proof of both engines: the unit test
//! `every_rule_finds_what_its_case_table_says` holds the Rust to it, and
//! `tests/e2e/vap.rs` holds the CEL to the Rust on a real API server, on
//! every case, the corpus of real charts and hostile objects. A case added
//! to the table is proven on both engines from then on.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::lookup::{KindInfo, Lookups, Need};
use crate::view::{Container, StatefulSet};

/// Declares the rule modules and [`RULES`], in the order their findings are
/// reported.
macro_rules! rules {
    ($($module:ident),* $(,)?) => {
        $(mod $module;)*
        /// Every rule, in the order its findings are reported.
        pub const RULES: &[&Rule] = &[$(&$module::RULE),*];
    };
}

rules![
    liveness_probe,
    readiness_probe,
    headless_service,
    identical_probes,
    probe_port,
    startup_budget,
    disruption_budget,
];

/// A rule's stable id: `liveness-probe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub &'static str);

impl RuleId {
    pub const fn as_str(self) -> &'static str {
        self.0
    }

    /// The rule with this id, if there is one.
    pub fn parse(id: &str) -> Option<RuleId> {
        RULES.iter().map(|r| r.id).find(|r| r.0 == id)
    }

    /// `liveness-probe, readiness-probe, ...`, for messages.
    pub fn known() -> String {
        RULES.iter().map(|r| r.id.0).collect::<Vec<_>>().join(", ")
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl Serialize for RuleId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for RuleId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = String::deserialize(d)?;
        RuleId::parse(&id).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown rule id `{id}`, expected one of {}",
                RuleId::known()
            ))
        })
    }
}

/// A rule: its id, what it is about, what it looks up and the check it runs.
pub struct Rule {
    pub id: RuleId,
    /// One line: what a compliant StatefulSet has.
    pub summary: &'static str,
    /// Why, and how to comply (SARIF's rule help).
    pub help: &'static str,
    /// What [`Rule::check`] will ask the [`Lookups`] for, given the object
    /// and its namespace.
    pub needs: fn(&StatefulSet, &str) -> Vec<Need>,
    pub check: fn(&Subject<'_>) -> Vec<Finding>,
    /// Denies only where the policy file names the rule (in `rules:` or a
    /// namespace's `rules:`); a `mode: enforce` that does not name it makes
    /// it warn. Every rule added after the first release says `true`, so
    /// upgrading never starts denying what the same policy allowed before.
    pub denies_only_when_named: bool,
    /// The rule in CEL, for rules that read only the StatefulSet (see "A
    /// rule's CEL" above).
    pub cel: Option<Cel>,
}

/// A rule in CEL, and the cases that prove it says what the Rust says.
#[derive(Clone, Copy)]
pub struct Cel {
    pub compile: fn(&CelSettings) -> RuleCel,
    pub cases: fn() -> Vec<Case>,
}

/// One case of a rule's case table: a pod template's `containers` and
/// `initContainers` (JSON as the API server stores them, less the `image`
/// every container needs there), and what the rule finds on it under the
/// default [`RuleSettings`]: `(container, problem)` in report order.
pub struct Case {
    /// kebab-case, unique in the table.
    pub name: &'static str,
    pub containers: serde_json::Value,
    /// `null` when the pod has none.
    pub init_containers: serde_json::Value,
    pub findings: Vec<(&'static str, String)>,
}

impl Case {
    /// A case of a pod without init containers.
    pub fn new(
        name: &'static str,
        containers: serde_json::Value,
        findings: Vec<(&'static str, String)>,
    ) -> Case {
        Case {
            name,
            containers,
            init_containers: serde_json::Value::Null,
            findings,
        }
    }

    /// The same pod with `init` containers.
    pub fn with_init(mut self, init: serde_json::Value) -> Case {
        self.init_containers = init;
        self
    }
}

/// For rules that read only the StatefulSet.
pub fn needs_nothing(_: &StatefulSet, _: &str) -> Vec<Need> {
    Vec::new()
}

/// What every rule will look up for `sts` in `namespace`, each once (a
/// set: the needs of an UPDATE's old object join it without repeats).
pub fn needs(sts: &StatefulSet, namespace: &str) -> BTreeSet<Need> {
    RULES
        .iter()
        .flat_map(|r| (r.needs)(sts, namespace))
        .collect()
}

/// Knobs of the rules themselves (not of how findings are enforced), for
/// one namespace.
#[derive(Debug, Clone, Copy)]
pub struct RuleSettings {
    /// Restartable sidecars (init containers with `restartPolicy: Always`)
    /// must carry probes too.
    pub sidecars_require_probes: bool,
    /// `startup-budget`: the least time a container without a startup
    /// probe must be given before its liveness probe restarts it.
    pub startup_budget_min_seconds: i64,
}

/// The default of `startupBudget.minSeconds`: twice what the kubelet's
/// probe defaults allow (0 + 3 × 10 s = 30 s). Slow starters (a JVM, a
/// database replaying its log) routinely need more than 30 s; below 60 s
/// a liveness probe on defaults is what turns a cold start into
/// CrashLoopBackOff.
pub const DEFAULT_STARTUP_BUDGET_SECONDS: i64 = 60;

impl Default for RuleSettings {
    fn default() -> Self {
        RuleSettings {
            sidecars_require_probes: true,
            startup_budget_min_seconds: DEFAULT_STARTUP_BUDGET_SECONDS,
        }
    }
}

/// What the rules look at.
pub struct Subject<'a> {
    pub sts: &'a StatefulSet,
    /// The StatefulSet's namespace (from the request when the object has none).
    pub namespace: &'a str,
    pub lookups: &'a dyn Lookups,
    pub settings: RuleSettings,
}

/// How the review treats a finding on UPDATE and dry-run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FindingKind {
    /// Something the object itself gets wrong: denies when enforced, unless
    /// the old object of an UPDATE got it wrong too.
    Object,
    /// An object the rule looked up is not there: it may not be stored yet
    /// (dry-run), or was deleted after creation (UPDATE, when the field
    /// naming it is immutable).
    Missing(&'static KindInfo),
    /// The lookup could not be made at all.
    Unknown(&'static KindInfo),
}

impl FindingKind {
    /// The stable code reports use: `object`, `service-missing`, ...
    pub fn code(self) -> &'static str {
        match self {
            FindingKind::Object => "object",
            FindingKind::Missing(kind) => kind.missing,
            FindingKind::Unknown(kind) => kind.unknown,
        }
    }
}

impl Serialize for FindingKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code())
    }
}

/// One step into an object: a field or a list index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    Field(&'static str),
    Index(usize),
}

/// Where in the StatefulSet a finding is: `spec.template.spec.containers[1]`.
/// Structured, so `check` can turn it into the line and column of that
/// node in the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(Vec<Segment>);

impl FieldPath {
    /// `spec.serviceName` from `["spec", "serviceName"]`.
    pub fn of(fields: &[&'static str]) -> FieldPath {
        FieldPath(fields.iter().copied().map(Segment::Field).collect())
    }

    pub fn field(mut self, name: &'static str) -> FieldPath {
        self.0.push(Segment::Field(name));
        self
    }

    pub fn index(mut self, i: usize) -> FieldPath {
        self.0.push(Segment::Index(i));
        self
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Field(name) if i == 0 => f.write_str(name)?,
                Segment::Field(name) => write!(f, ".{name}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl Serialize for FieldPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One way a StatefulSet breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: RuleId,
    pub kind: FindingKind,
    /// The field or list entry the finding is about.
    pub path: FieldPath,
    /// The container's name, for findings about one container.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// What is wrong, a short lower-case sentence fragment.
    pub problem: String,
    /// How to fix it.
    pub fix: String,
    /// Identifies the same problem across the old and new object of an
    /// UPDATE (container name, not index, so reordering keeps it).
    #[serde(skip)]
    pub key: String,
}

impl Finding {
    /// `spec.template.spec.containers[1] "sidecar"` or `spec.serviceName`:
    /// for a finding about a container, its entry (the problem says which
    /// of its fields), however deep `path` points.
    pub fn location(&self) -> String {
        match &self.container {
            Some(name) => {
                let entry = self
                    .path
                    .0
                    .iter()
                    .position(|s| matches!(s, Segment::Index(_)))
                    .map_or(self.path.0.len(), |i| i + 1);
                format!("{} {name:?}", FieldPath(self.path.0[..entry].to_vec()))
            }
            None => self.path.to_string(),
        }
    }

    /// `[liveness-probe] spec.template.spec.containers[0] "app" has no livenessProbe`
    pub fn summary(&self) -> String {
        format!("[{}] {} {}", self.rule, self.location(), self.problem)
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.summary(), self.fix)
    }
}

/// Runs every rule.
pub fn evaluate(subject: &Subject<'_>) -> Vec<Finding> {
    RULES
        .iter()
        .flat_map(|rule| (rule.check)(subject))
        .collect()
}

/// A container that can and should carry probes.
pub struct ProbedContainer<'a> {
    pub container: &'a Container,
    /// `containers` or `initContainers`.
    list: &'static str,
    index: usize,
}

impl ProbedContainer<'_> {
    /// `spec.template.spec.containers[0]`: built only for a finding, as
    /// most containers have none.
    pub fn path(&self) -> FieldPath {
        FieldPath::of(&["spec", "template", "spec", self.list]).index(self.index)
    }
}

/// Containers the probe rules apply to: every regular container, and
/// restartable sidecars when the settings ask. Plain init containers and
/// ephemeral containers are never included: the API forbids probes there.
pub fn probed_containers(
    sts: &StatefulSet,
    settings: RuleSettings,
) -> impl Iterator<Item = ProbedContainer<'_>> {
    let pod = sts.pod();
    let regular = pod
        .into_iter()
        .flat_map(|p| p.containers.iter().enumerate())
        .map(|(index, container)| ProbedContainer {
            container,
            list: "containers",
            index,
        });
    let sidecars = pod
        .filter(|_| settings.sidecars_require_probes)
        .and_then(|p| p.init_containers.as_ref())
        .into_iter()
        .flat_map(|cs| cs.iter().enumerate())
        .filter(|(_, c)| is_restartable_sidecar(c))
        .map(|(index, container)| ProbedContainer {
            container,
            list: "initContainers",
            index,
        });
    regular.chain(sidecars)
}

/// An init container with `restartPolicy: Always` runs for the pod's life.
pub fn is_restartable_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// Shared body of the two probe rules: each container needs its own probe.
fn require_probe(
    subject: &Subject<'_>,
    rule: RuleId,
    field: &str,
    probe: fn(&Container) -> bool,
    fix: &str,
) -> Vec<Finding> {
    probed_containers(subject.sts, subject.settings)
        .filter(|pc| !probe(pc.container))
        .map(|pc| Finding {
            rule,
            kind: FindingKind::Object,
            key: format!("{rule}/{}", pc.container.name),
            path: pc.path(),
            container: Some(pc.container.name.to_string()),
            problem: format!("has no {field}"),
            fix: fix.to_string(),
        })
        .collect()
}

/// The case table of the two probe rules, for `field` (`livenessProbe`).
fn probe_cases(field: &'static str) -> Vec<Case> {
    let other = if field == "livenessProbe" {
        "readinessProbe"
    } else {
        "livenessProbe"
    };
    let probe = json!({"tcpSocket": {"port": 8080}});
    let probed = |name: &str| json!({"name": name, field: probe});
    let has_none = |container: &'static str| (container, format!("has no {field}"));
    vec![
        Case::new("probed", json!([probed("app")]), vec![]),
        Case::new("unprobed", json!([{"name": "app"}]), vec![has_none("app")]),
        Case::new(
            "each-container-its-own",
            json!([probed("app"), {"name": "metrics"}, {"name": "logs"}]),
            vec![has_none("metrics"), has_none("logs")],
        ),
        Case::new(
            "the-other-probe-does-not-count",
            json!([{"name": "app", other: probe, "startupProbe": probe}]),
            vec![has_none("app")],
        ),
        // Restartable sidecars are asked, after the regular containers;
        // plain init containers never are.
        Case::new("unprobed-sidecar", json!([{"name": "app"}]), vec![has_none("app"), has_none("proxy")])
            .with_init(json!([{"name": "migrate"}, {"name": "proxy", "restartPolicy": "Always"}])),
        Case::new("probed-sidecar", json!([probed("app")]), vec![])
            .with_init(json!([{"name": "migrate"}, {"name": "proxy", "restartPolicy": "Always", field: probe}])),
    ]
}

/// The rule settings as a ValidatingAdmissionPolicy sees them: what
/// differs per namespace is a CEL expression (over `namespaceObject`).
#[derive(Debug, Clone)]
pub struct CelSettings {
    /// The same in every namespace.
    pub sidecars_require_probes: bool,
    /// A CEL `int`: `startupBudget.minSeconds` in the request's namespace.
    pub startup_budget_min_seconds: String,
}

/// One rule in CEL: what [`Rule::check`] finds, as a list the generated
/// policy reads (see "A rule's CEL" above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCel {
    /// Variables the findings read, `(name, expression)`, in order; their
    /// names are unique across rules' and the generator's own.
    pub variables: Vec<(String, String)>,
    /// A CEL `list(list(string))` over `object`: one entry per container
    /// with a finding, `[name, message_1, ..., message_n]` where message
    /// `j` is the finding on that container's `j`-th key (`""`: none).
    pub findings: String,
    /// The same over `oldObject`.
    pub old_findings: String,
    /// `n`: how many findings one container can have (probe-port: one per
    /// probe; the others: one).
    pub keys: usize,
}

impl RuleCel {
    /// A rule of one finding per container: `findings(root)` is the CEL
    /// over `root`.
    fn of(
        variables: Vec<(String, String)>,
        keys: usize,
        findings: impl Fn(&str) -> String,
    ) -> RuleCel {
        RuleCel {
            variables,
            findings: findings("object"),
            old_findings: findings("oldObject"),
            keys,
        }
    }

    /// `entry[j]` is a finding the old object did not have (`old`: a CEL
    /// list of the old object's entries).
    fn new_at(j: usize, old: &str) -> String {
        format!("(e[{j}] != '' && !{old}.exists(o, o[0] == e[0] && o[{j}] != ''))")
    }

    /// True when `entry e` holds a finding the old object did not have.
    pub fn has_new(&self, old: &str) -> String {
        (1..=self.keys)
            .map(|j| Self::new_at(j, old))
            .collect::<Vec<_>>()
            .join(" || ")
    }

    /// The validation (true: nothing to report) over `findings` (a CEL
    /// list of this rule's entries) and `old` (the old object's, `[]` when
    /// nothing ratchets), and its message: the rule id and the first new
    /// finding in the order the Rust reports them.
    pub fn validation(&self, rule: RuleId, findings: &str, old: &str) -> (String, String) {
        let has_new = self.has_new(old);
        let expression = format!("!{findings}.exists(e, {has_new})");
        // The first entry with a new finding, then its first new message.
        let mut pick = format!("e[{}]", self.keys);
        for j in (1..self.keys).rev() {
            pick = format!("{} ? e[{j}] : ({pick})", Self::new_at(j, old));
        }
        let message = format!("'[{rule}] ' + {findings}.filter(e, {has_new}).map(e, {pick})[0]");
        (expression, message)
    }
}

/// CEL: where a container is, as [`Finding::location`] writes it, given
/// the list it is in, its index `i` and itself `c`:
/// `spec.template.spec.containers[0] "app"`.
fn cel_location(list: &str) -> String {
    format!(r#"'spec.template.spec.{list}[' + string(i) + '] "' + c.name + '"'"#)
}

/// CEL: [`probed_containers`] of `root` with a finding, each as
/// `entry(location)` (a CEL list over `c`, see [`RuleCel::findings`]),
/// kept when `found` (CEL over `c`) holds; regular containers first.
fn cel_probed(
    root: &str,
    settings: &CelSettings,
    found: &str,
    entry: impl Fn(&str) -> String,
) -> String {
    let pod = format!("{root}.spec.template.spec");
    let regular = format!(
        "{pod}.containers.transformList(i, c, {found}, {})",
        entry(&cel_location("containers"))
    );
    if !settings.sidecars_require_probes {
        return regular;
    }
    // Plain init containers cannot have probes; restartable sidecars must.
    format!(
        "{regular} + {pod}.?initContainers.orValue([]).transformList(i, c, c.?restartPolicy.orValue('') == 'Always' && ({found}), {})",
        entry(&cel_location("initContainers"))
    )
}

/// The CEL of [`require_probe`]: a container without `field` is a finding.
fn cel_require_probe(settings: &CelSettings, field: &str) -> RuleCel {
    RuleCel::of(Vec::new(), 1, |root| {
        cel_probed(root, settings, &format!("!has(c.{field})"), |location| {
            format!("[string(c.name), {location} + ' has no {field}']")
        })
    })
}

#[cfg(test)]
mod tests;
