//! `disruption-budget`: a StatefulSet with more than one replica has a
//! PodDisruptionBudget selecting its pods. Without one, a node drain can
//! take several replicas of a quorum (etcd, ZooKeeper, Kafka) at once.

use super::{FieldPath, Finding, FindingKind, Rule, RuleId, Subject};
use crate::lookup::{BudgetsState, DisruptionBudgets, Kind, Need, look_up};
use crate::view::StatefulSet;

pub const RULE: Rule = Rule {
    id: RuleId("disruption-budget"),
    summary: "A StatefulSet with more than one replica has a PodDisruptionBudget",
    help: "Create a policy/v1 PodDisruptionBudget in the same namespace whose selector matches spec.template.metadata.labels (maxUnavailable: 1 suits most quorums). Without one, a node drain or cluster upgrade may evict several replicas at once and break the quorum of etcd, ZooKeeper or Kafka.",
    needs,
    check,
    denies_only_when_named: true,
    // Reads another object: a ValidatingAdmissionPolicy cannot.
    cel: None,
};

fn replicas(sts: &StatefulSet) -> i32 {
    // Unset is 1, the API's default.
    sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

fn needs(sts: &StatefulSet, namespace: &str) -> Vec<Need> {
    if replicas(sts) > 1 {
        vec![Need::DisruptionBudgets(namespace.into())]
    } else {
        Vec::new()
    }
}

fn check(subject: &Subject<'_>) -> Vec<Finding> {
    let n = replicas(subject.sts);
    if n <= 1 {
        return Vec::new();
    }
    let finding = |kind, problem: String, fix: &str| Finding {
        rule: RULE.id,
        kind,
        path: FieldPath::of(&["spec", "replicas"]),
        container: None,
        problem,
        fix: fix.into(),
        key: RULE.id.to_string(),
    };
    let empty = Default::default();
    let labels = subject.sts.template_labels().unwrap_or(&empty);
    match look_up::<DisruptionBudgets>(subject.lookups, subject.namespace.into()) {
        BudgetsState::Found(budgets) if budgets.iter().any(|b| b.selects(labels)) => Vec::new(),
        BudgetsState::Found(_) => vec![finding(
            FindingKind::Missing(&DisruptionBudgets::INFO),
            format!("is {n} and no PodDisruptionBudget selects the pods"),
            "create a PodDisruptionBudget (maxUnavailable: 1) selecting spec.template.metadata.labels",
        )],
        BudgetsState::Unknown(why) => vec![finding(
            FindingKind::Unknown(&DisruptionBudgets::INFO),
            format!("is {n}; PodDisruptionBudgets could not be checked ({why})"),
            "make sure a PodDisruptionBudget selects the pods; sts-guard will check again on the next change",
        )],
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;
    use serde_json::{Value, json};

    use std::sync::Arc;

    use super::RULE;
    use crate::lookup::{Answer, Lookups, Need, Object, Objects};
    use crate::view::StatefulSet;

    fn sts(replicas: Value) -> StatefulSet {
        serde_json::from_value(json!({"spec": {"replicas": replicas, "template": {
            "metadata": {"labels": {"app": "zk", "tier": "db"}}, "spec": {"containers": []}}}}))
        .unwrap()
    }

    fn budget(selector: Value) -> Objects {
        let mut m = Objects::default();
        let b = serde_json::from_value(json!({"namespace": "shop", "name": "b", "selector": selector})).unwrap();
        m.insert(Object::DisruptionBudgets(Arc::new(b)), String::new());
        m
    }

    fn found(sts: &StatefulSet, lookups: &dyn Lookups) -> Vec<String> {
        crate::rules::tests::run(&RULE, sts, lookups).into_iter().map(|(_, p)| p).collect()
    }

    #[rstest]
    #[case::match_labels(json!({"matchLabels": {"app": "zk"}}), true)]
    #[case::match_expressions(json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]}), true)]
    #[case::exists(json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]}), true)]
    #[case::empty_selects_all(json!({}), true)]
    #[case::misses(json!({"matchLabels": {"app": "kafka"}}), false)]
    #[case::not_in(json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}), false)]
    #[case::does_not_exist(json!({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}), false)]
    #[case::null_selects_none(json!(null), false)]
    fn three_replicas_and_a_budget_selecting(#[case] selector: Value, #[case] covered: bool) {
        let problems = found(&sts(json!(3)), &budget(selector));
        if covered {
            assert!(problems.is_empty(), "{problems:?}");
        } else {
            assert_eq!(problems, vec!["is 3 and no PodDisruptionBudget selects the pods"]);
        }
    }

    #[rstest]
    #[case::unset(json!(null))]
    #[case::one(json!(1))]
    #[case::zero(json!(0))]
    fn one_replica_or_fewer_needs_no_budget(#[case] replicas: Value) {
        let s = sts(replicas);
        assert!(found(&s, &Objects::default()).is_empty());
        assert!((RULE.needs)(&s, "shop").is_empty(), "nothing looked up");
    }

    #[test]
    fn a_failed_lookup_says_so() {
        struct Down;
        impl Lookups for Down {
            fn answer(&self, need: &Need) -> Answer {
                need.unknown("API server error".into())
            }
        }
        assert_eq!(
            found(&sts(json!(2)), &Down),
            vec!["is 2; PodDisruptionBudgets could not be checked (API server error)"]
        );
    }
}
