//! Validating rules. One rule, one module, one stable id.
//!
//! A rule is a plain function from a [`Subject`] to the [`Finding`]s it
//! reports. Rules know nothing of modes, exemptions, UPDATE or dry-run: the
//! admission layer decides what a finding means for the request.

mod headless_service;
mod liveness_probe;
mod readiness_probe;

use std::fmt;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, Probe, Service};
use serde::{Deserialize, Serialize};

/// Stable rule ids: they appear in messages, metric labels, reports and the
/// policy file, so never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RuleId {
    #[serde(rename = "liveness-probe")]
    LivenessProbe,
    #[serde(rename = "readiness-probe")]
    ReadinessProbe,
    #[serde(rename = "headless-service")]
    HeadlessService,
}

impl RuleId {
    pub const fn as_str(self) -> &'static str {
        match self {
            RuleId::LivenessProbe => "liveness-probe",
            RuleId::ReadinessProbe => "readiness-probe",
            RuleId::HeadlessService => "headless-service",
        }
    }

    pub fn parse(id: &str) -> Option<RuleId> {
        RULES.iter().map(|r| r.id).find(|r| r.as_str() == id)
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule: its id and the check it runs.
pub struct Rule {
    pub id: RuleId,
    pub check: fn(&Subject<'_>) -> Vec<Finding>,
}

/// Every rule, in the order their findings are reported. Adding a rule means
/// adding a module and one line here.
pub const RULES: &[Rule] = &[
    Rule {
        id: RuleId::LivenessProbe,
        check: liveness_probe::check,
    },
    Rule {
        id: RuleId::ReadinessProbe,
        check: readiness_probe::check,
    },
    Rule {
        id: RuleId::HeadlessService,
        check: headless_service::check,
    },
];

/// What a Service lookup found.
#[derive(Debug, Clone)]
pub enum ServiceState {
    Found(std::sync::Arc<Service>),
    /// Defined more than once, differently (in `check`'s manifests); each
    /// definition must pass.
    Several(Vec<std::sync::Arc<Service>>),
    NotFound,
    /// The lookup could not be answered (API server unreachable or slow).
    Unknown(String),
}

/// Where rules read Services from: the watch cache in `serve`, the manifests
/// given to `check`, the listed Services in `audit`.
pub trait ServiceLookup {
    fn service(&self, namespace: &str, name: &str) -> ServiceState;
}

/// A lookup that knows no Service; useful for callers that only mutate.
pub struct NoServices;

impl ServiceLookup for NoServices {
    fn service(&self, _: &str, _: &str) -> ServiceState {
        ServiceState::NotFound
    }
}

/// Knobs of the rules themselves (not of how findings are enforced).
#[derive(Debug, Clone, Copy)]
pub struct RuleSettings {
    /// Restartable sidecars (init containers with `restartPolicy: Always`)
    /// must carry probes too.
    pub sidecars_require_probes: bool,
}

impl Default for RuleSettings {
    fn default() -> Self {
        RuleSettings {
            sidecars_require_probes: true,
        }
    }
}

/// What the rules look at.
pub struct Subject<'a> {
    pub sts: &'a StatefulSet,
    /// The StatefulSet's namespace (from the request when the object has none).
    pub namespace: &'a str,
    pub services: &'a dyn ServiceLookup,
    pub settings: RuleSettings,
}

/// Kinds of findings the admission layer treats specially.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// A probe is missing on a container.
    MissingProbe,
    /// `serviceName` names no Service (may just not be stored yet, on dry-run).
    ServiceMissing,
    /// The Service could not be looked up at all.
    ServiceUnknown,
    /// Any other way of breaking a rule.
    Other,
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
    /// `spec.template.spec.containers[1] "sidecar"` or `spec.serviceName`.
    pub fn location(&self) -> String {
        match &self.container {
            Some(name) => format!("{} {name:?}", self.path),
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
    /// `spec.template.spec.containers[0]`
    pub path: FieldPath,
}

/// Containers the probe rules apply to: every regular container, and
/// restartable sidecars when the settings ask. Plain init containers and
/// ephemeral containers are never included: the API forbids probes there.
pub fn probed_containers<'a>(
    sts: &'a StatefulSet,
    settings: RuleSettings,
) -> impl Iterator<Item = ProbedContainer<'a>> {
    let pod = sts.spec.as_ref().and_then(|s| s.template.spec.as_ref());
    let regular = pod
        .into_iter()
        .flat_map(|p| p.containers.iter().enumerate())
        .map(|(i, c)| ProbedContainer {
            container: c,
            path: FieldPath::of(&["spec", "template", "spec", "containers"]).index(i),
        });
    let sidecars = pod
        .filter(|_| settings.sidecars_require_probes)
        .and_then(|p| p.init_containers.as_ref())
        .into_iter()
        .flat_map(|cs| cs.iter().enumerate())
        .filter(|(_, c)| is_restartable_sidecar(c))
        .map(|(i, c)| ProbedContainer {
            container: c,
            path: FieldPath::of(&["spec", "template", "spec", "initContainers"]).index(i),
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
    probe: fn(&Container) -> Option<&Probe>,
    fix: &str,
) -> Vec<Finding> {
    probed_containers(subject.sts, subject.settings)
        .filter(|pc| probe(pc.container).is_none())
        .map(|pc| Finding {
            rule,
            kind: FindingKind::MissingProbe,
            key: format!("{rule}/{}", pc.container.name),
            path: pc.path,
            container: Some(pc.container.name.clone()),
            problem: format!("has no {field}"),
            fix: fix.to_string(),
        })
        .collect()
}
