//! The policy file: how findings are enforced, per rule and per namespace,
//! who is exempt, and which mutations are on by default.
//!
//! # Precedence
//!
//! The mode of a rule in a namespace is the first of these keys that is set
//! (most specific first): `namespaces.<ns>.rules.<rule>`,
//! `namespaces.<ns>.mode`, `rules.<rule>`, `mode` (default `enforce`).
//!
//! One exception, for the rules added after the first release
//! (`Rule::denies_only_when_named`: identical-probes, probe-port,
//! startup-budget, disruption-budget): where neither `rules.<rule>` nor
//! `namespaces.<ns>.rules.<rule>` names such a rule, a `mode` that would
//! enforce it makes it warn instead (reason `new-rule-default`), so
//! upgrading sts-guard never starts denying what the same policy allowed
//! before. Once either `rules:` key names the rule, the modes apply to it
//! as to any other rule.
//!
//! So the precedence is monotonic: making any key stricter (audit -> warn
//! -> enforce, or adding a key set to `enforce`) never makes any rule's
//! mode in any namespace weaker. `tests/policy_precedence.rs` checks that
//! over generated policies.

mod exemptions;
pub mod objects;
mod source;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::rules::{RuleId, RuleSettings};
pub use exemptions::{Exempting, ExemptionObject, ExemptionObjects, ExemptionState};
use objects::PolicyStatus;
pub use source::Source;

/// What a finding does to the request. Ordered by strictness (the order
/// of the variants): `Audit < Warn < Enforce`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    Default,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Allow it silently; log and count.
    Audit,
    /// Allow it; kubectl prints `Warning: ...`.
    Warn,
    /// Deny the request.
    #[default]
    Enforce,
}

/// The mode of one rule in one namespace, and whether the new-rule cap
/// (see the module doc) made it `warn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleMode {
    pub mode: Mode,
    /// A `mode` would enforce the rule, but it is a newer rule no `rules:`
    /// key names, so it warns.
    pub new_rule_default: bool,
}

/// Mutation defaults; `None` means "not set here, ask the next level".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MutationDefaults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<bool>,
    /// How long a startup probe allows: `90s`, `5m`, `1h30m`.
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<String>", regex(pattern = objects::DURATION_PATTERN))]
    pub startup_timeout: Option<Duration>,
}

impl MutationDefaults {
    fn is_unset(&self) -> bool {
        *self == MutationDefaults::default()
    }
}

impl StartupBudget {
    fn is_unset(&self) -> bool {
        *self == StartupBudget::default()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sidecars {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub require_probes: Option<bool>,
}

/// `startupBudget`: what the `startup-budget` rule asks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartupBudget {
    /// Least seconds a liveness probe without a startup probe must allow
    /// before the first restart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_seconds: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamespacePolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<Mode>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "objects::RuleModes")]
    pub rules: BTreeMap<RuleId, Mode>,
    #[serde(default, skip_serializing_if = "MutationDefaults::is_unset")]
    pub mutations: MutationDefaults,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_owner_exemptions: Option<bool>,
    /// `StatefulSetExemption` objects of this namespace are honoured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_exemption_objects: Option<bool>,
    #[serde(default, skip_serializing_if = "StartupBudget::is_unset")]
    pub startup_budget: StartupBudget,
}

/// A named exemption owned by the platform team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Exemption {
    #[schemars(length(min = 1))]
    pub namespace: String,
    /// Omitted: every StatefulSet of the namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Omitted or empty: every rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleId>,
    /// Why; required so every exemption can be justified later.
    #[schemars(length(max = 1024), regex(pattern = r"\S"))]
    pub reason: String,
}

/// The policy file as written, which is also the `spec` of the
/// `StatefulSetPolicy` object named `default`.
#[derive(
    CustomResource, KubeSchema, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize,
)]
#[kube(
    group = "sts-guard.io",
    version = "v1alpha1",
    kind = "StatefulSetPolicy",
    plural = "statefulsetpolicies",
    shortname = "stspolicy",
    status = "PolicyStatus",
    doc = "The sts-guard policy: how findings are enforced, per rule and per namespace, who is exempt, which mutations are on. Only the one named default is read.",
    validation = kube::core::Rule::new("self.metadata.name == 'default'").message("sts-guard reads only the StatefulSetPolicy named default; put the policy there"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Namespaces", type_ = "integer", json_path = ".status.namespaces"),
    printcolumn(name = "Exemptions", type_ = "integer", json_path = ".status.exemptions"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySpec {
    #[serde(default)]
    pub mode: Mode,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "objects::RuleModes")]
    pub rules: BTreeMap<RuleId, Mode>,
    #[serde(default)]
    pub sidecars: Sidecars,
    #[serde(default)]
    pub startup_budget: StartupBudget,
    #[serde(default)]
    pub allow_owner_exemptions: bool,
    /// `StatefulSetExemption` objects are honoured in every namespace
    /// (`namespaces.<ns>.allowExemptionObjects` overrides). Those in
    /// sts-guard's own namespace always are.
    #[serde(default)]
    pub allow_exemption_objects: bool,
    #[serde(default)]
    pub mutations: MutationDefaults,
    #[serde(default)]
    pub namespaces: BTreeMap<String, NamespacePolicy>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exemptions: Vec<Exemption>,
}

/// The policy in effect: its spec (a policy file, or the `default`
/// `StatefulSetPolicy`) and the `StatefulSetExemption` objects judged
/// against it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    pub spec: PolicySpec,
    /// The spec's exemptions, sorted by namespace (stably: within a
    /// namespace, in the written order), so a lookup reads one range.
    exemptions: Vec<Exemption>,
    exemption_objects: ExemptionObjects,
}

#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// Not YAML, or not the shape of a policy (an unknown key, a value of
    /// the wrong type).
    #[error("invalid policy file {path}: {source}")]
    Parse {
        path: String,
        // Boxed: the largest variant sets the size of every Result.
        source: Box<serde_saphyr::Error>,
    },
    /// A policy in shape whose values cannot be used together (an
    /// exemption without a reason, a zero timeout).
    #[error("policy file {path} cannot be used: {message}")]
    Invalid { path: String, message: String },
}

/// Startup probes allow this long before the container is restarted, unless
/// the policy or `sts-guard.io/startup-timeout` says otherwise.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(300);

/// Mutations in effect for one namespace before annotations are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveMutations {
    pub parallel: bool,
    pub startup_probe: bool,
    pub startup_timeout: Duration,
}

impl Policy {
    pub fn from_yaml(text: &str, path: &str) -> Result<Policy, PolicyError> {
        if text.trim().is_empty() {
            return Ok(Policy::default());
        }
        // No snippet: the message is one line for logs and kubectl users.
        let options = serde_saphyr::options! { with_snippet: false };
        let parse_error = |source| PolicyError::Parse {
            path: path.to_string(),
            source: Box::new(source),
        };
        // A StatefulSetPolicy object (as `policy convert` or `kubectl get
        // -o yaml` writes it) holds the same keys under `spec`.
        #[derive(Deserialize)]
        struct Kind {
            kind: Option<String>,
        }
        let kind = serde_saphyr::from_str_with_options::<Kind>(text, options.clone());
        if matches!(kind, Ok(Kind { kind: Some(k) }) if k == "StatefulSetPolicy") {
            let object: StatefulSetPolicy =
                serde_saphyr::from_str_with_options(text, options).map_err(parse_error)?;
            let name = object.metadata.name.unwrap_or_default();
            if name != objects::POLICY_NAME {
                return Err(PolicyError::Invalid {
                    path: path.to_string(),
                    message: format!(
                        "sts-guard reads only the StatefulSetPolicy named {}; this one is named {name:?}",
                        objects::POLICY_NAME
                    ),
                });
            }
            return Policy::from_spec(object.spec, path);
        }
        let spec: PolicySpec =
            serde_saphyr::from_str_with_options(text, options).map_err(parse_error)?;
        Policy::from_spec(spec, path)
    }

    /// The policy `spec` says, once its values are checked; `source` names
    /// it in errors (a file, or `StatefulSetPolicy/default`).
    pub fn from_spec(spec: PolicySpec, source: &str) -> Result<Policy, PolicyError> {
        spec.validate(source)?;
        let mut exemptions = spec.exemptions.clone();
        exemptions.sort_by(|a, b| a.namespace.cmp(&b.namespace));
        Ok(Policy {
            spec,
            exemptions,
            exemption_objects: ExemptionObjects::default(),
        })
    }

    /// The policy file at `path`; without one, the default: every rule
    /// enforced, but the newer ones only warn. What `serve`, `check` and `audit` do with `--config`.
    pub fn load_or_default(path: Option<&Path>) -> Result<Policy, PolicyError> {
        path.map_or_else(|| Ok(Policy::default()), Policy::load)
    }

    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: shown.clone(),
            source,
        })?;
        Policy::from_yaml(&text, &shown)
    }

    /// The mode of `rule` in `namespace` (precedence: the module doc).
    pub fn mode(&self, namespace: &str, rule: RuleId) -> Mode {
        self.rule_mode(namespace, rule).mode
    }

    /// The mode of `rule` in `namespace`, and why (precedence: the module
    /// doc).
    pub fn rule_mode(&self, namespace: &str, rule: RuleId) -> RuleMode {
        let ns = self.spec.namespaces.get(namespace);
        let plain = |mode: Mode| RuleMode {
            mode,
            new_rule_default: false,
        };
        if let Some(&mode) = ns.and_then(|n| n.rules.get(&rule)) {
            return plain(mode);
        }
        let global_rule = self.spec.rules.get(&rule).copied();
        let mode = match ns.and_then(|n| n.mode) {
            Some(mode) => mode,
            None => match global_rule {
                Some(mode) => return plain(mode),
                None => self.spec.mode,
            },
        };
        // Reached from a `mode` key: capped at warn for a newer rule that
        // no `rules:` key names.
        let only_when_named = crate::rules::RULES
            .iter()
            .any(|r| r.id == rule && r.denies_only_when_named);
        if mode == Mode::Enforce && only_when_named && global_rule.is_none() {
            RuleMode {
                mode: Mode::Warn,
                new_rule_default: true,
            }
        } else {
            plain(mode)
        }
    }

    pub fn rule_settings(&self, namespace: &str) -> RuleSettings {
        let ns = self.spec.namespaces.get(namespace);
        RuleSettings {
            sidecars_require_probes: self.spec.sidecars.require_probes.unwrap_or(true),
            startup_budget_min_seconds: ns
                .and_then(|n| n.startup_budget.min_seconds)
                .or(self.spec.startup_budget.min_seconds)
                .map_or(crate::rules::DEFAULT_STARTUP_BUDGET_SECONDS, i64::from),
        }
    }

    pub fn owner_exemptions_allowed(&self, namespace: &str) -> bool {
        self.spec
            .namespaces
            .get(namespace)
            .and_then(|n| n.allow_owner_exemptions)
            .unwrap_or(self.spec.allow_owner_exemptions)
    }

    /// Whether `StatefulSetExemption` objects exempting StatefulSets of
    /// `namespace` are honoured (those in sts-guard's own namespace always
    /// are).
    pub fn exemption_objects_allowed(&self, namespace: &str) -> bool {
        self.spec
            .namespaces
            .get(namespace)
            .and_then(|n| n.allow_exemption_objects)
            .unwrap_or(self.spec.allow_exemption_objects)
    }

    /// This policy with `objects` judged against it (see
    /// [`ExemptionObjects::new`]); replaces those it held.
    pub fn with_exemption_objects(
        mut self,
        objects: impl IntoIterator<Item = objects::StatefulSetExemption>,
        platform_namespace: &str,
    ) -> Policy {
        self.exemption_objects = ExemptionObjects::new(objects, platform_namespace, |ns| {
            self.exemption_objects_allowed(ns)
        });
        self
    }

    /// The exemption objects, as judged against this policy.
    pub fn exemption_objects(&self) -> &ExemptionObjects {
        &self.exemption_objects
    }

    /// What exempts `namespace/name` from `rule` at `now`: the first
    /// matching exemption of the policy itself, else the first matching
    /// exemption object in force; or a matching object that is not in
    /// force (expired, or not allowed there).
    pub fn exemption(
        &self,
        namespace: &str,
        name: &str,
        rule: RuleId,
        now: jiff::Timestamp,
    ) -> Option<Exempting<'_>> {
        if let Some(e) = self.file_exemption(namespace, name, rule) {
            return Some(Exempting::Honoured(e.reason.clone()));
        }
        let mut ignored = None;
        for object in self.exemption_objects.covering(namespace, name, rule) {
            if object.not_honoured(now).is_none() {
                let spec = &object.spec;
                let about = match &spec.ticket {
                    Some(ticket) => format!("{ticket}; {}", object.display()),
                    None => object.display(),
                };
                return Some(Exempting::Honoured(format!("{} ({about})", spec.reason)));
            }
            ignored.get_or_insert(object);
        }
        ignored.map(Exempting::Ignored)
    }

    /// The policy's own exemption covering `rule` for `namespace/name`.
    fn file_exemption(&self, namespace: &str, name: &str, rule: RuleId) -> Option<&Exemption> {
        let start = self
            .exemptions
            .partition_point(|e| e.namespace.as_str() < namespace);
        self.exemptions[start..]
            .iter()
            .take_while(|e| e.namespace == namespace)
            .find(|e| {
                e.name.as_deref().is_none_or(|n| n == name)
                    && (e.rules.is_empty() || e.rules.contains(&rule))
            })
    }

    /// The policy's own exemptions, by namespace.
    pub fn exemptions(&self) -> &[Exemption] {
        &self.exemptions
    }

    pub fn mutations(&self, namespace: &str) -> EffectiveMutations {
        let ns = self.spec.namespaces.get(namespace).map(|n| &n.mutations);
        let global = &self.spec.mutations;
        EffectiveMutations {
            parallel: ns
                .and_then(|m| m.parallel)
                .or(global.parallel)
                .unwrap_or(false),
            startup_probe: ns
                .and_then(|m| m.startup_probe)
                .or(global.startup_probe)
                .unwrap_or(false),
            startup_timeout: ns
                .and_then(|m| m.startup_timeout)
                .or(global.startup_timeout)
                .unwrap_or(DEFAULT_STARTUP_TIMEOUT),
        }
    }
}

impl PolicySpec {
    fn validate(&self, path: &str) -> Result<(), PolicyError> {
        let invalid = |message: String| PolicyError::Invalid {
            path: path.to_string(),
            message,
        };
        for (i, e) in self.exemptions.iter().enumerate() {
            if e.namespace.is_empty() {
                return Err(invalid(format!("exemptions[{i}]: namespace is empty")));
            }
            if e.reason.trim().is_empty() {
                return Err(invalid(format!(
                    "exemptions[{i}]: reason is empty; say why {} is exempt",
                    e.namespace
                )));
            }
        }
        let timeouts = std::iter::once(&self.mutations)
            .chain(self.namespaces.values().map(|n| &n.mutations))
            .filter_map(|m| m.startup_timeout);
        for t in timeouts {
            if t.is_zero() {
                return Err(invalid("mutations.startupTimeout must be positive".into()));
            }
        }
        Ok(())
    }
}

/// Durations written the way people write them: `90s`, `5m`, `1h30m`.
mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// `1h30m`, `90s`, `250ms`: the compact form the CRD's pattern takes.
    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&compact(*d)),
            None => s.serialize_none(),
        }
    }

    pub fn compact(d: Duration) -> String {
        let millis = d.as_millis();
        if !millis.is_multiple_of(1000) {
            return format!("{millis}ms");
        }
        let secs = d.as_secs();
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let mut out = String::new();
        for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
            if n > 0 {
                out.push_str(&format!("{n}{unit}"));
            }
        }
        if out.is_empty() {
            out.push_str("0s");
        }
        out
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        text.map(|t| humantime::parse_duration(&t).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
mode: warn
rules:
  headless-service: audit
sidecars:
  requireProbes: false
mutations:
  startupTimeout: 2m
namespaces:
  shop:
    mode: enforce
    rules: { liveness-probe: audit }
    mutations: { parallel: true }
exemptions:
  - namespace: batch
    name: queue-worker
    rules: [headless-service]
    reason: runs without a Service on purpose
"#;

    /// A rule added after the first release denies only where the policy
    /// names it: an upgrade never starts denying what the same file allowed.
    #[test]
    fn a_new_rule_denies_only_where_the_policy_names_it() {
        let new = RuleId("startup-budget");
        let old = RuleId("liveness-probe");
        let none = Policy::default();
        assert_eq!(
            (none.mode("a", old), none.mode("a", new)),
            (Mode::Enforce, Mode::Warn)
        );
        let p = Policy::from_yaml(
            "mode: enforce\nrules: {disruption-budget: enforce}\nnamespaces:\n  strict: {mode: enforce, rules: {startup-budget: enforce}}\n  quiet: {mode: audit}\n",
            "t",
        )
        .unwrap();
        assert_eq!(p.mode("any", new), Mode::Warn);
        assert_eq!(p.mode("strict", new), Mode::Enforce);
        assert_eq!(p.mode("quiet", new), Mode::Audit);
        assert_eq!(p.mode("any", RuleId("disruption-budget")), Mode::Enforce);
        assert_eq!(p.mode("any", old), Mode::Enforce);
    }

    /// Which key decides a newer rule's mode (probe-port here) in namespace
    /// `ns1`, and when the new-rule cap makes it warn: only where no
    /// `rules:` key names the rule.
    #[rstest::rstest]
    #[case::no_policy_file("", Mode::Warn, true)]
    #[case::global_enforce_unnamed("mode: enforce", Mode::Warn, true)]
    #[case::global_warn("mode: warn", Mode::Warn, false)]
    #[case::global_audit("mode: audit", Mode::Audit, false)]
    #[case::named_globally("rules: {probe-port: enforce}", Mode::Enforce, false)]
    #[case::named_globally_namespace_enforce(
        "rules: {probe-port: enforce}\nnamespaces: {ns1: {mode: enforce}}",
        Mode::Enforce,
        false
    )]
    #[case::named_audit_globally_namespace_enforce(
        "rules: {probe-port: audit}\nnamespaces: {ns1: {mode: enforce}}",
        Mode::Enforce,
        false
    )]
    #[case::named_globally_namespace_warn(
        "rules: {probe-port: enforce}\nnamespaces: {ns1: {mode: warn}}",
        Mode::Warn,
        false
    )]
    #[case::namespace_enforce_unnamed("namespaces: {ns1: {mode: enforce}}", Mode::Warn, true)]
    #[case::named_in_another_namespace(
        "namespaces: {ns1: {mode: enforce}, ns2: {rules: {probe-port: enforce}}}",
        Mode::Warn,
        true
    )]
    #[case::named_in_the_namespace(
        "mode: audit\nnamespaces: {ns1: {rules: {probe-port: enforce}}}",
        Mode::Enforce,
        false
    )]
    #[case::namespace_rule_beats_global_rule(
        "rules: {probe-port: enforce}\nnamespaces: {ns1: {rules: {probe-port: audit}}}",
        Mode::Audit,
        false
    )]
    fn a_newer_rule_is_capped_only_where_no_rules_key_names_it(
        #[case] yaml: &str,
        #[case] mode: Mode,
        #[case] new_rule_default: bool,
    ) {
        let p = Policy::from_yaml(yaml, "t").unwrap();
        assert_eq!(
            p.rule_mode("ns1", RuleId("probe-port")),
            RuleMode {
                mode,
                new_rule_default
            },
            "{yaml}"
        );
    }

    #[test]
    fn modes_are_ordered_by_strictness() {
        assert!(Mode::Audit < Mode::Warn && Mode::Warn < Mode::Enforce);
        assert_eq!(Mode::Enforce.min(Mode::Warn), Mode::Warn);
    }

    #[test]
    fn the_startup_budget_is_set_globally_and_per_namespace() {
        let p = Policy::from_yaml(
            "startupBudget: {minSeconds: 120}\nnamespaces: {fast: {startupBudget: {minSeconds: 10}}}\n",
            "t",
        )
        .unwrap();
        assert_eq!(p.rule_settings("any").startup_budget_min_seconds, 120);
        assert_eq!(p.rule_settings("fast").startup_budget_min_seconds, 10);
        assert_eq!(
            Policy::default()
                .rule_settings("any")
                .startup_budget_min_seconds,
            60
        );
    }

    #[test]
    fn modes_follow_precedence() {
        let p = Policy::from_yaml(EXAMPLE, "t").unwrap();
        assert_eq!(p.mode("shop", RuleId("liveness-probe")), Mode::Audit);
        assert_eq!(p.mode("shop", RuleId("headless-service")), Mode::Enforce);
        assert_eq!(p.mode("other", RuleId("headless-service")), Mode::Audit);
        assert_eq!(p.mode("other", RuleId("readiness-probe")), Mode::Warn);
        assert!(!p.rule_settings("any").sidecars_require_probes);
    }

    #[test]
    fn mutation_defaults_merge() {
        let p = Policy::from_yaml(EXAMPLE, "t").unwrap();
        let shop = p.mutations("shop");
        assert!(shop.parallel && !shop.startup_probe);
        assert_eq!(shop.startup_timeout, Duration::from_secs(120));
        assert!(!p.mutations("other").parallel);
    }

    #[test]
    fn exemptions_match_name_and_rule() {
        let p = Policy::from_yaml(EXAMPLE, "t").unwrap();
        assert!(
            p.file_exemption("batch", "queue-worker", RuleId("headless-service"))
                .is_some()
        );
        assert!(
            p.file_exemption("batch", "queue-worker", RuleId("liveness-probe"))
                .is_none()
        );
        assert!(
            p.file_exemption("batch", "other", RuleId("headless-service"))
                .is_none()
        );
    }

    #[test]
    fn the_first_exemption_in_the_file_that_matches_wins_in_any_order_of_namespaces() {
        let p = Policy::from_yaml(
            "exemptions:\n\
             - { namespace: zeta, reason: z }\n\
             - { namespace: shop, name: web, rules: [liveness-probe], reason: first }\n\
             - { namespace: alpha, reason: a }\n\
             - { namespace: shop, reason: whole namespace }\n\
             - { namespace: shop, name: web, reason: never reached }\n",
            "t",
        )
        .unwrap();
        let reason = |ns: &str, name: &str, rule: &str| {
            p.file_exemption(ns, name, RuleId::parse(rule).unwrap())
                .map(|e| e.reason.as_str())
        };
        assert_eq!(reason("shop", "web", "liveness-probe"), Some("first"));
        assert_eq!(
            reason("shop", "web", "readiness-probe"),
            Some("whole namespace")
        );
        assert_eq!(
            reason("shop", "db", "liveness-probe"),
            Some("whole namespace")
        );
        assert_eq!(reason("alpha", "x", "probe-port"), Some("a"));
        assert_eq!(reason("zeta", "x", "probe-port"), Some("z"));
        assert_eq!(reason("beta", "x", "probe-port"), None);
        assert_eq!(reason("", "x", "probe-port"), None);
        assert_eq!(reason("zzz", "x", "probe-port"), None);
    }

    #[test]
    fn empty_file_enforces_everything() {
        let p = Policy::from_yaml("", "t").unwrap();
        assert_eq!(p.mode("any", RuleId("headless-service")), Mode::Enforce);
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        for bad in [
            "mode: enforcing",
            "moed: warn",
            "rules: { liveness: warn }",
            "exemptions: [{ namespace: a, reason: '' }]",
            "mutations: { startupTimeout: soon }",
            "mode: [",
        ] {
            let err = Policy::from_yaml(bad, "policy.yaml").unwrap_err();
            assert!(err.to_string().contains("policy.yaml"), "{bad}: {err}");
        }
    }
}
