//! The policy compiled to ValidatingAdmissionPolicies
//! (admissionregistration.k8s.io/v1): `sts-guard policy vap`.
//!
//! One policy per rule that reads only the StatefulSet (a rule with
//! [`Rule::cel`]), named `sts-guard-<rule-id>`: the API server reports only
//! the first failing validation of a policy and, when several policies
//! deny, only the first denial, so one policy per rule is what lets a user
//! see every rule that denies or warns, as the webhook shows them.
//!
//! Per rule:
//! - the policy: the rule's CEL (`variables.findings`), one validation whose
//!   message is the webhook's (`[rule] location problem`), and the
//!   exemptions in force at `now` (the policy's own, `StatefulSetExemption`
//!   objects, the owner annotation where allowed) as one `matchCondition`;
//! - one binding per mode the rule has in some namespace (`Deny`, `Warn`,
//!   `Audit`), each selecting the namespaces of that mode by name (the
//!   default mode's: every namespace the others do not name).
//!
//! The caller gives the policy (`policy vap`: a file, else the cluster's
//! `StatefulSetPolicy` and `StatefulSetExemption` objects) and the time.
//! What this does not do (yet): regenerate when an exemption expires (CEL
//! has no clock: an exemption is compiled in while it is in force at
//! `now`).
//!
//! Where the policies and the webhook differ:
//! - UPDATE ratcheting: where a rule is enforced, a finding the old object
//!   also had (same container, same key) does not deny, as in the webhook;
//!   the policy says nothing about it (a binding has one action), so the
//!   webhook beside it still warns "already so before this update", and
//!   nobody does while the webhook is down.
//! - a namespace's mode is per namespace name; the webhook's precedence is
//!   computed here, once, so a namespace added to the policy file needs the
//!   policies generated again.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::admissionregistration::v1::{
    MatchCondition, MatchResources, NamedRuleWithOperations, ValidatingAdmissionPolicy,
    ValidatingAdmissionPolicyBinding, ValidatingAdmissionPolicyBindingSpec,
    ValidatingAdmissionPolicySpec, Validation, Variable,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::ObjectMeta;

use crate::policy::{ExemptionState, Mode, Policy};
use crate::review::EXEMPT_ANNOTATION;
use crate::rules::{CelSettings, RULES, Rule, RuleCel, RuleId};

/// Every generated object carries it: `kubectl delete vap,vapb -l ...`.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "sts-guard");

/// The namespaces no policy applies in, besides sts-guard's own: as
/// deploy/base/webhooks.yaml, so an outage of either never blocks the
/// control plane.
const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// The namespace label that opts a namespace out (set by whoever may label
/// namespaces), as for the webhook.
pub const IGNORE_LABEL: &str = "sts-guard.io/ignore";

/// The name of the request's namespace, in CEL, in variables and
/// validations.
const NAMESPACE: &str = "namespaceObject.metadata.name";
/// The same in `matchConditions`: there `namespaceObject` is not set
/// (measured on kube-apiserver 1.34: reading it is an error, and with
/// `failurePolicy: Ignore` the policy is skipped).
const REQUEST_NAMESPACE: &str = "request.namespace";

/// One rule's policy and its bindings.
#[derive(Debug, Clone, PartialEq)]
pub struct RulePolicy {
    pub rule: RuleId,
    pub policy: ValidatingAdmissionPolicy,
    pub bindings: Vec<ValidatingAdmissionPolicyBinding>,
}

/// `sts-guard-<rule-id>`
pub fn policy_name(rule: RuleId) -> String {
    format!("sts-guard-{rule}")
}

/// The binding of `rule`'s policy for the namespaces where it has `mode`.
pub fn binding_name(rule: RuleId, mode: Mode) -> String {
    format!("sts-guard-{rule}-{}", action(mode).to_ascii_lowercase())
}

/// The validation action of a mode.
fn action(mode: Mode) -> &'static str {
    match mode {
        Mode::Enforce => "Deny",
        Mode::Warn => "Warn",
        Mode::Audit => "Audit",
    }
}

/// The policies and bindings `policy` means at `now`, for sts-guard
/// running in `platform_namespace`; in rule order.
pub fn generate(
    policy: &Policy,
    platform_namespace: &str,
    now: jiff::Timestamp,
) -> Vec<RulePolicy> {
    let settings = cel_settings(policy);
    RULES
        .iter()
        .filter_map(|rule| {
            let cel = (rule.cel?.compile)(&settings);
            Some(rule_policy(policy, rule, &cel, platform_namespace, now))
        })
        .collect()
}

/// A namespace name the policy file does not name: its settings are the
/// defaults every unnamed namespace has.
fn unnamed(policy: &Policy) -> String {
    let mut name = String::new();
    while policy.spec.namespaces.contains_key(&name) {
        name.push('-');
    }
    name
}

fn cel_settings(policy: &Policy) -> CelSettings {
    let default = policy.rule_settings(&unnamed(policy));
    let own: BTreeMap<&str, i64> = policy
        .spec
        .namespaces
        .keys()
        .map(|ns| {
            (
                ns.as_str(),
                policy.rule_settings(ns).startup_budget_min_seconds,
            )
        })
        .filter(|(_, s)| *s != default.startup_budget_min_seconds)
        .collect();
    let min = if own.is_empty() {
        default.startup_budget_min_seconds.to_string()
    } else {
        let entries: Vec<String> = own
            .iter()
            .map(|(ns, s)| format!("{}: {s}", quote(ns)))
            .collect();
        format!(
            "{{{}}}[?{NAMESPACE}].orValue({})",
            entries.join(", "),
            default.startup_budget_min_seconds
        )
    };
    CelSettings {
        sidecars_require_probes: default.sidecars_require_probes,
        startup_budget_min_seconds: min,
    }
}

/// A CEL string literal, single-quoted as the rules' CEL writes them.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn quote_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let items: Vec<String> = items.into_iter().map(quote).collect();
    format!("[{}]", items.join(", "))
}

/// CEL: the request's namespace is one where `holds(ns)`, given its value
/// for namespaces the policy file does not name.
fn namespaces_where(
    policy: &Policy,
    namespace: &str,
    default: bool,
    holds: impl Fn(&str) -> bool,
) -> String {
    let differ: Vec<&str> = policy
        .spec
        .namespaces
        .keys()
        .map(String::as_str)
        .filter(|ns| holds(ns) != default)
        .collect();
    match (default, differ.is_empty()) {
        (d, true) => d.to_string(),
        (true, false) => format!("!({namespace} in {})", quote_list(differ)),
        (false, false) => format!("{namespace} in {}", quote_list(differ)),
    }
}

fn labels() -> BTreeMap<String, String> {
    BTreeMap::from([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())])
}

fn rule_policy(
    policy: &Policy,
    rule: &Rule,
    cel: &RuleCel,
    platform_namespace: &str,
    now: jiff::Timestamp,
) -> RulePolicy {
    let id = rule.id;
    let default_mode = policy.mode(&unnamed(policy), id);
    let enforced = namespaces_where(policy, NAMESPACE, default_mode == Mode::Enforce, |ns| {
        policy.mode(ns, id) == Mode::Enforce
    });
    // Ratcheting where the rule denies: on UPDATE, a finding the old object
    // had too does not deny (the webhook warns about it instead; a binding
    // has one action, so here it is silent).
    let old = match enforced.as_str() {
        "false" => "[]".to_string(),
        "true" => format!("request.operation == 'UPDATE' ? {} : []", cel.old_findings),
        _ => format!(
            "request.operation == 'UPDATE' && {enforced} ? {} : []",
            cel.old_findings
        ),
    };
    let mut variables: Vec<Variable> = cel
        .variables
        .iter()
        .map(|(name, expression)| Variable {
            name: name.clone(),
            expression: expression.clone(),
        })
        .collect();
    variables.push(Variable {
        name: "findings".into(),
        expression: cel.findings.clone(),
    });
    variables.push(Variable {
        name: "oldFindings".into(),
        expression: old,
    });
    let (expression, message_expression) =
        cel.validation(id, "variables.findings", "variables.oldFindings");
    let spec = ValidatingAdmissionPolicySpec {
        // Ignore, not Fail: a CEL error (the runtime cost budget exceeded
        // on a huge object, an expression this generator gets wrong) would
        // otherwise deny StatefulSet writes with a message about CEL, not
        // about the StatefulSet. An error admits; the webhook, where it
        // runs, is the fail-closed path. tests/e2e/vap.rs applies these
        // with Fail, so an error there shows as a difference.
        failure_policy: Some("Ignore".into()),
        match_constraints: Some(MatchResources {
            match_policy: Some("Equivalent".into()),
            namespace_selector: Some(LabelSelector {
                match_expressions: Some(vec![
                    LabelSelectorRequirement {
                        key: "kubernetes.io/metadata.name".into(),
                        operator: "NotIn".into(),
                        values: Some(
                            SYSTEM_NAMESPACES
                                .iter()
                                .copied()
                                .chain([platform_namespace])
                                .map(String::from)
                                .collect(),
                        ),
                    },
                    LabelSelectorRequirement {
                        key: IGNORE_LABEL.into(),
                        operator: "DoesNotExist".into(),
                        values: None,
                    },
                ]),
                match_labels: None,
            }),
            resource_rules: Some(vec![NamedRuleWithOperations {
                api_groups: Some(vec!["apps".into()]),
                api_versions: Some(vec!["v1".into()]),
                resources: Some(vec!["statefulsets".into()]),
                operations: Some(vec!["CREATE".into(), "UPDATE".into()]),
                scope: Some("Namespaced".into()),
                resource_names: None,
            }]),
            ..MatchResources::default()
        }),
        match_conditions: exemptions(policy, id, now).map(|expression| {
            vec![MatchCondition {
                name: "not-exempt".into(),
                expression,
            }]
        }),
        variables: Some(variables),
        validations: Some(vec![Validation {
            expression,
            message_expression: Some(message_expression),
            // When the message cannot be computed.
            message: Some(format!("[{id}] {}", rule.summary)),
            reason: None,
        }]),
        audit_annotations: None,
        param_kind: None,
    };
    let name = policy_name(id);
    let vap = ValidatingAdmissionPolicy {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            labels: Some(labels()),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    };
    RulePolicy {
        rule: id,
        policy: vap,
        bindings: bindings(policy, id, default_mode, &name),
    }
}

/// One binding per mode the rule has somewhere, the default mode's first.
fn bindings(
    policy: &Policy,
    rule: RuleId,
    default_mode: Mode,
    policy_name: &str,
) -> Vec<ValidatingAdmissionPolicyBinding> {
    let mut by_mode: BTreeMap<Mode, Vec<String>> = BTreeMap::new();
    for ns in policy.spec.namespaces.keys() {
        let mode = policy.mode(ns, rule);
        if mode != default_mode {
            by_mode.entry(mode).or_default().push(ns.clone());
        }
    }
    let others: Vec<String> = by_mode.values().flatten().cloned().collect();
    let by_name = |operator: &str, values: Vec<String>| LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".into(),
            operator: operator.into(),
            values: Some(values),
        }]),
        match_labels: None,
    };
    let binding = |mode: Mode, selector: Option<LabelSelector>| ValidatingAdmissionPolicyBinding {
        metadata: ObjectMeta {
            name: Some(binding_name(rule, mode)),
            labels: Some(labels()),
            ..ObjectMeta::default()
        },
        spec: Some(ValidatingAdmissionPolicyBindingSpec {
            policy_name: Some(policy_name.to_string()),
            validation_actions: Some(vec![action(mode).to_string()]),
            // Without a selector, every namespace the policy matches.
            match_resources: selector.map(|s| MatchResources {
                namespace_selector: Some(s),
                ..MatchResources::default()
            }),
            param_ref: None,
        }),
    };
    // NotIn needs at least one value: no others, no selector.
    let default_selector = (!others.is_empty()).then(|| by_name("NotIn", others));
    std::iter::once(binding(default_mode, default_selector))
        .chain(
            by_mode
                .into_iter()
                .map(|(mode, namespaces)| binding(mode, Some(by_name("In", namespaces)))),
        )
        .collect()
}

/// The `matchCondition` leaving out what is exempt from `rule` at `now`:
/// the policy's exemptions, `StatefulSetExemption` objects in force, and
/// the owner annotation where the policy allows it. `None`: nothing is.
fn exemptions(policy: &Policy, rule: RuleId, now: jiff::Timestamp) -> Option<String> {
    let mut whole: BTreeSet<String> = BTreeSet::new();
    let mut named: BTreeSet<String> = BTreeSet::new();
    let mut add = |namespace: &str, name: Option<&str>| match name {
        Some(name) => {
            named.insert(format!("{namespace}/{name}"));
        }
        None => {
            whole.insert(namespace.to_string());
        }
    };
    for e in policy.exemptions() {
        if e.rules.is_empty() || e.rules.contains(&rule) {
            add(&e.namespace, e.name.as_deref());
        }
    }
    let objects = policy
        .exemption_objects()
        .iter()
        .filter(|o| o.state(now) == ExemptionState::Active && o.spec.rules.contains(&rule));
    for o in objects {
        let name = o.spec.stateful_set.as_str();
        add(&o.target, (name != "*").then_some(name));
    }
    let mut exempt = Vec::new();
    if !whole.is_empty() {
        exempt.push(format!(
            "{REQUEST_NAMESPACE} in {}",
            quote_list(whole.iter().map(String::as_str))
        ));
    }
    if !named.is_empty() {
        exempt.push(format!(
            "{REQUEST_NAMESPACE} + '/' + object.metadata.name in {}",
            quote_list(named.iter().map(String::as_str))
        ));
    }
    let owners = namespaces_where(
        policy,
        REQUEST_NAMESPACE,
        policy.owner_exemptions_allowed(&unnamed(policy)),
        |ns| policy.owner_exemptions_allowed(ns),
    );
    if owners != "false" {
        let annotation = format!(
            "object.metadata.?annotations[?{}].orValue('').split(',').exists(s, s.trim() in ['all', {}])",
            quote(EXEMPT_ANNOTATION),
            quote(rule.as_str())
        );
        exempt.push(if owners == "true" {
            annotation
        } else {
            format!("({owners}) && {annotation}")
        });
    }
    (!exempt.is_empty()).then(|| format!("!({})", exempt.join(" || ")))
}

#[cfg(test)]
mod tests;
