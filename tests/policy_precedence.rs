//! The policy's precedence is monotonic (see `sts_guard::policy`): over
//! generated policies, making any one key stricter never makes any rule's
//! mode, or what the review does with its finding, weaker anywhere.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::json;

use sts_guard::lookup::NoLookups;
use sts_guard::policy::{Mode, NamespacePolicy, Policy};
use sts_guard::review::{self, Action, ObjectRef, Operation, Request, WarnReason};
use sts_guard::rules::{RULES, RuleId};
use sts_guard::view::StatefulSet;

/// Namespaces a generated policy may configure; `elsewhere` never is.
const NAMESPACES: [&str; 2] = ["ns1", "ns2"];
const LOOKED_AT: [&str; 3] = ["ns1", "ns2", "elsewhere"];

/// Cases per property; each case tries every tightening of every key.
const CASES: u32 = 1024;

fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Audit), Just(Mode::Warn), Just(Mode::Enforce)]
}

/// Each rule named or not, with any mode.
fn rules() -> impl Strategy<Value = BTreeMap<RuleId, Mode>> {
    proptest::collection::vec(proptest::option::of(mode()), RULES.len()).prop_map(|modes| {
        RULES
            .iter()
            .zip(modes)
            .filter_map(|(r, m)| m.map(|m| (r.id, m)))
            .collect()
    })
}

fn namespace() -> impl Strategy<Value = NamespacePolicy> {
    (proptest::option::of(mode()), rules()).prop_map(|(mode, rules)| NamespacePolicy {
        mode,
        rules,
        ..NamespacePolicy::default()
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        mode(),
        rules(),
        proptest::option::of(namespace()),
        proptest::option::of(namespace()),
    )
        .prop_map(|(mode, rules, ns1, ns2)| {
            let namespaces = NAMESPACES
                .iter()
                .zip([ns1, ns2])
                .filter_map(|(name, ns)| ns.map(|ns| (name.to_string(), ns)))
                .collect();
            let mut policy = Policy::default();
            policy.spec.mode = mode;
            policy.spec.rules = rules;
            policy.spec.namespaces = namespaces;
            policy
        })
}

/// Every key that sets a mode.
#[derive(Debug, Clone, Copy)]
enum Key {
    Mode,
    Rule(RuleId),
    NamespaceMode(&'static str),
    NamespaceRule(&'static str, RuleId),
}

fn keys() -> Vec<Key> {
    let mut keys = vec![Key::Mode];
    keys.extend(RULES.iter().map(|r| Key::Rule(r.id)));
    for ns in NAMESPACES {
        keys.push(Key::NamespaceMode(ns));
        keys.extend(RULES.iter().map(|r| Key::NamespaceRule(ns, r.id)));
    }
    keys
}

fn get(policy: &Policy, key: Key) -> Option<Mode> {
    match key {
        Key::Mode => Some(policy.spec.mode),
        Key::Rule(rule) => policy.spec.rules.get(&rule).copied(),
        Key::NamespaceMode(ns) => policy.spec.namespaces.get(ns).and_then(|n| n.mode),
        Key::NamespaceRule(ns, rule) => policy
            .spec
            .namespaces
            .get(ns)
            .and_then(|n| n.rules.get(&rule).copied()),
    }
}

fn set(policy: &mut Policy, key: Key, mode: Mode) {
    match key {
        Key::Mode => policy.spec.mode = mode,
        Key::Rule(rule) => {
            policy.spec.rules.insert(rule, mode);
        }
        Key::NamespaceMode(ns) => {
            policy.spec.namespaces.entry(ns.into()).or_default().mode = Some(mode);
        }
        Key::NamespaceRule(ns, rule) => {
            policy
                .spec
                .namespaces
                .entry(ns.into())
                .or_default()
                .rules
                .insert(rule, mode);
        }
    }
}

/// Every way to make `key` stricter: a set key to each stricter mode, an
/// unset key added as `enforce`.
fn tightenings(policy: &Policy, key: Key) -> Vec<Policy> {
    let stricter: Vec<Mode> = match get(policy, key) {
        Some(now) => [Mode::Warn, Mode::Enforce]
            .into_iter()
            .filter(|m| *m > now)
            .collect(),
        None => vec![Mode::Enforce],
    };
    stricter
        .into_iter()
        .map(|mode| {
            let mut tighter = policy.clone();
            set(&mut tighter, key, mode);
            tighter
        })
        .collect()
}

/// Breaks every rule once: `bare` has no probes; `probed` has identical
/// probes on a port name it does not declare and no startup probe; two replicas, no
/// Service, no PodDisruptionBudget.
fn breaks_everything() -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [
                    {"name": "bare"},
                    {
                        "name": "probed",
                        "ports": [{"name": "web", "containerPort": 8080}],
                        "livenessProbe": {"httpGet": {"path": "/", "port": "admin"}},
                        "readinessProbe": {"httpGet": {"path": "/", "port": "admin"}}
                    }
                ]}
            }
        }
    }))
    .unwrap()
}

/// The strictest action the review takes on each rule's findings in `ns`.
fn actions(policy: &Policy, sts: &StatefulSet, ns: &str) -> BTreeMap<RuleId, u8> {
    let request = Request {
        object: ObjectRef {
            namespace: ns,
            name: "web",
        },
        sts,
        old: None,
        operation: Operation::Create,
        dry_run: false,
        now: jiff::Timestamp::now(),
    };
    let mut strictest = BTreeMap::new();
    for outcome in review::validate(&request, policy, &NoLookups).outcomes {
        let rank = match outcome.action {
            Action::Exempt(_) => 0,
            Action::Audit => 1,
            Action::Warn(_) => 2,
            Action::Deny => 3,
        };
        let entry = strictest.entry(outcome.finding.rule).or_insert(rank);
        *entry = (*entry).max(rank);
    }
    strictest
}

#[test]
fn the_fixture_breaks_every_rule() {
    let actions = actions(&Policy::default(), &breaks_everything(), "ns1");
    let broken: Vec<RuleId> = actions.keys().copied().collect();
    let mut all: Vec<RuleId> = RULES.iter().map(|r| r.id).collect();
    all.sort();
    assert_eq!(broken, all);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// No rule's mode, in a configured namespace or any other, gets weaker
    /// when one key gets stricter.
    #[test]
    fn tightening_one_key_never_weakens_a_mode(policy in policy()) {
        for key in keys() {
            for tighter in tightenings(&policy, key) {
                for ns in LOOKED_AT {
                    for rule in RULES.iter().map(|r| r.id) {
                        let (before, after) = (policy.mode(ns, rule), tighter.mode(ns, rule));
                        prop_assert!(
                            after >= before,
                            "{key:?} made {rule} in {ns} {after:?} (was {before:?})\nbefore: {policy:?}\nafter: {tighter:?}"
                        );
                    }
                }
            }
        }
    }

    /// Likewise for what the review does: a denial stays a denial, a
    /// warning never becomes audit.
    #[test]
    fn tightening_one_key_never_weakens_an_action(policy in policy()) {
        let sts = breaks_everything();
        for ns in LOOKED_AT {
            let before = actions(&policy, &sts, ns);
            for key in keys() {
                for tighter in tightenings(&policy, key) {
                    let after = actions(&tighter, &sts, ns);
                    for (rule, was) in &before {
                        prop_assert!(
                            after[rule] >= *was,
                            "{key:?} weakened {rule} in {ns}: {was} -> {}\nbefore: {policy:?}\nafter: {tighter:?}",
                            after[rule]
                        );
                    }
                }
            }
        }
    }

    /// `new-rule-default` only where a mode would have enforced a newer
    /// rule: naming the rule (`rules.<rule>: enforce`) makes it deny; and
    /// `warn-mode` only where a key says warn.
    #[test]
    fn a_warning_says_why(policy in policy()) {
        for ns in LOOKED_AT {
            for rule in RULES {
                let decided = policy.rule_mode(ns, rule.id);
                if decided.new_rule_default {
                    prop_assert!(rule.denies_only_when_named, "{}", rule.id);
                    prop_assert_eq!(decided.mode, Mode::Warn);
                    let mut named = policy.clone();
                    named.spec.rules.insert(rule.id, Mode::Enforce);
                    prop_assert_eq!(named.mode(ns, rule.id), Mode::Enforce, "{} in {}", rule.id, ns);
                } else if decided.mode == Mode::Warn {
                    let applicable = [
                        get(&policy, Key::Mode),
                        get(&policy, Key::Rule(rule.id)),
                        policy.spec.namespaces.get(ns).and_then(|n| n.mode),
                        policy.spec.namespaces.get(ns).and_then(|n| n.rules.get(&rule.id).copied()),
                    ];
                    prop_assert!(applicable.contains(&Some(Mode::Warn)), "{} in {}: {:?}", rule.id, ns, policy);
                }
            }
            let sts = breaks_everything();
            let request = Request {
                object: ObjectRef { namespace: ns, name: "web" },
                sts: &sts,
                old: None,
                operation: Operation::Create,
                dry_run: false,
        now: jiff::Timestamp::now(),
            };
            for outcome in review::validate(&request, &policy, &NoLookups).outcomes {
                let capped = policy.rule_mode(ns, outcome.finding.rule).new_rule_default;
                let says_new_rule = outcome.action == Action::Warn(WarnReason::NewRuleDefault);
                prop_assert_eq!(capped, says_new_rule, "{}", outcome.finding.rule);
            }
        }
    }
}

/// The case: a rule the policy enforces by name, and a namespace
/// set to enforce. Before the fix the namespace's mode capped it at warn.
#[test]
fn a_namespace_in_enforce_keeps_denying_a_rule_named_globally() {
    let policy = Policy::from_yaml(
        "rules: {probe-port: enforce}\nnamespaces: {ns1: {mode: enforce}}\n",
        "t",
    )
    .unwrap();
    let sts = breaks_everything();
    let probe_port = RuleId("probe-port");
    assert_eq!(actions(&policy, &sts, "ns1")[&probe_port], 3, "denied");
    assert_eq!(
        actions(&policy, &sts, "elsewhere")[&probe_port],
        3,
        "denied"
    );
}
