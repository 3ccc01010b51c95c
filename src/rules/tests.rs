//! The rule mechanism itself: ids, and that every rule looks up only what
//! it declared (the webhook fetches exactly that and nothing else).

use std::cell::RefCell;

use serde_json::json;

use super::*;
use crate::lookup::{Answer, NoLookups};

/// Answers every query, and remembers it.
#[derive(Default)]
struct Recording(RefCell<Vec<Need>>);

impl Lookups for Recording {
    fn answer(&self, need: &Need) -> Answer {
        self.0.borrow_mut().push(need.clone());
        NoLookups.answer(need)
    }
}

fn statefulsets() -> Vec<StatefulSet> {
    [
        json!({}),
        json!({"spec": {}}),
        json!({"spec": {"serviceName": ""}}),
        json!({"spec": {"serviceName": "web", "template": {"spec": {"containers": [{"name": "app"}]}}}}),
        json!({"metadata": {"namespace": "elsewhere"}, "spec": {"serviceName": "db"}}),
        json!({"spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "app"}]}}}}),
        json!({"spec": {"replicas": 1}}),
    ]
    .into_iter()
    .map(|v| serde_json::from_value(v).unwrap())
    .collect()
}

#[test]
fn every_lookup_a_rule_makes_was_declared() {
    for sts in statefulsets() {
        for rule in RULES {
            let recording = Recording::default();
            (rule.check)(&Subject {
                sts: &sts,
                namespace: "shop",
                lookups: &recording,
                settings: RuleSettings::default(),
            });
            let declared = (rule.needs)(&sts, "shop");
            for asked in recording.0.into_inner() {
                assert!(
                    declared.contains(&asked),
                    "{} looked up {asked:?} without declaring it (declared {declared:?})",
                    rule.id
                );
            }
        }
    }
}

/// Every rule with CEL finds on each case of its table what the table says
/// (tests/e2e/vap.rs holds the CEL to the Rust on the same cases).
#[test]
fn every_rule_finds_what_its_case_table_says() {
    for rule in RULES {
        let Some(cel) = rule.cel else { continue };
        let cases = (cel.cases)();
        assert!(cases.len() >= 5, "{}: {} cases", rule.id, cases.len());
        let mut names = std::collections::HashSet::new();
        for case in cases {
            assert!(names.insert(case.name), "{} / {} twice", rule.id, case.name);
            assert!(
                case.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            );
            let sts = pod(case.containers, case.init_containers);
            let expected: Vec<(String, String)> = case
                .findings
                .into_iter()
                .map(|(c, p)| (c.to_string(), p))
                .collect();
            assert_eq!(
                run(rule, &sts, &NoLookups),
                expected,
                "{} / {}",
                rule.id,
                case.name
            );
        }
    }
}

#[test]
fn ids_are_unique_kebab_case_and_parse_back() {
    let mut seen = std::collections::HashSet::new();
    for rule in RULES {
        let id = rule.id.as_str();
        assert!(seen.insert(id), "{id} twice");
        assert!(
            id.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
            "{id}"
        );
        assert_eq!(RuleId::parse(id), Some(rule.id));
        assert!(!rule.summary.is_empty() && !rule.help.is_empty(), "{id}");
    }
    assert_eq!(RuleId::parse("all"), None);
}

#[test]
fn an_unknown_rule_id_in_a_policy_names_the_known_ones() {
    let err = serde_json::from_value::<RuleId>(json!("liveness")).unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown rule id `liveness`, expected one of liveness-probe"),
        "{err}"
    );
}

/// A StatefulSet whose pod has `containers` and `init` containers.
pub(super) fn pod(containers: serde_json::Value, init: serde_json::Value) -> StatefulSet {
    serde_json::from_value(json!({
        "spec": {"replicas": 1, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": containers, "initContainers": init}
        }}
    }))
    .unwrap()
}

/// What `rule` finds on `sts` with the default settings: (container, problem).
pub(super) fn run(rule: &Rule, sts: &StatefulSet, lookups: &dyn Lookups) -> Vec<(String, String)> {
    (rule.check)(&Subject {
        sts,
        namespace: "shop",
        lookups,
        settings: RuleSettings::default(),
    })
    .into_iter()
    .map(|f| (f.container.unwrap_or_default(), f.problem))
    .collect()
}
