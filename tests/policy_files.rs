//! The policy files we ship and document must parse with the same parser
//! `serve` uses, or the first reload in a cluster would be refused.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;
use sts_guard::policy::{Exempting, Mode, Policy};
use sts_guard::rules::RuleId;

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

#[test]
fn the_shipped_policy_object_parses_and_starts_in_audit() {
    let path = "deploy/base/policy.yaml";
    let policy = Policy::from_yaml(&repo(path), path).unwrap();
    for rule in [
        RuleId("liveness-probe"),
        RuleId("readiness-probe"),
        RuleId("headless-service"),
    ] {
        assert_eq!(policy.mode("any", rule), Mode::Audit, "safe start");
    }
    assert!(!policy.exemption_objects_allowed("any"));
}

/// The opt-in ConfigMap way (deploy/components/policy-file) ships the same
/// policy as the StatefulSetPolicy, key for key.
#[test]
fn the_shipped_configmap_policy_parses_and_starts_in_audit() {
    let configmap: serde_json::Value =
        serde_saphyr::from_str(&repo("deploy/components/policy-file/policy-configmap.yaml"))
            .unwrap();
    let text = configmap["data"]["policy.yaml"].as_str().unwrap();
    let policy = Policy::from_yaml(text, "policy-configmap.yaml").unwrap();
    for rule in [
        RuleId("liveness-probe"),
        RuleId("readiness-probe"),
        RuleId("headless-service"),
    ] {
        assert_eq!(policy.mode("any", rule), Mode::Audit, "safe start");
    }
    let file: Value = serde_saphyr::from_str(text).unwrap();
    let object: Value = serde_saphyr::from_str(&repo("deploy/base/policy.yaml")).unwrap();
    assert_eq!(
        file, object["spec"],
        "the ConfigMap's policy and the object's differ"
    );
}

#[test]
fn the_example_policy_parses_as_documented() {
    let policy = Policy::from_yaml(&repo("examples/policy.yaml"), "examples/policy.yaml").unwrap();
    assert_eq!(policy.mode("legacy", RuleId("liveness-probe")), Mode::Warn);
    assert_eq!(
        policy.mode("sandbox", RuleId("headless-service")),
        Mode::Audit
    );
    assert_eq!(
        policy.mode("shop", RuleId("headless-service")),
        Mode::Enforce
    );
    // The comments' claims on the newer rules.
    let startup = RuleId("startup-budget");
    assert_eq!(policy.mode("shop", startup), Mode::Enforce);
    assert_eq!(policy.mode("other", startup), Mode::Warn);
    assert_eq!(policy.mode("sandbox", startup), Mode::Audit);
    assert_eq!(policy.mode("other", RuleId("probe-port")), Mode::Enforce);
    assert_eq!(policy.mode("legacy", RuleId("probe-port")), Mode::Warn);
    assert!(policy.mutations("batch").startup_probe);
    assert!(matches!(
        policy.exemption(
            "batch",
            "queue-worker",
            RuleId("headless-service"),
            jiff::Timestamp::now()
        ),
        Some(Exempting::Honoured(_))
    ));
}

/// Every key path of `value`, map entries under `namespaces` and list items
/// written as `*`: `namespaces.*.mutations.parallel`, `exemptions.*.reason`.
fn key_paths(value: &Value, prefix: &str, paths: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let key = if prefix.ends_with("namespaces") || prefix.ends_with("rules") {
                    "*"
                } else {
                    key
                };
                let path = if prefix.is_empty() {
                    key.to_string()
                } else {
                    format!("{prefix}.{key}")
                };
                paths.insert(path.clone());
                key_paths(child, &path, paths);
            }
        }
        Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{prefix}.*"), paths);
            }
        }
        _ => {}
    }
}

/// README says every key is shown in examples/policy.yaml: every key the
/// parser knows (every property of the schema generated from its types,
/// which is also the StatefulSetPolicy CRD's `spec`) is there.
#[test]
fn the_example_policy_shows_every_key() {
    let crd = serde_json::to_value(&sts_guard::policy::objects::crds()[0]).unwrap();
    let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
    let mut known = BTreeSet::new();
    schema_paths(spec, "", &mut known);

    let example: Value = serde_saphyr::from_str(&repo("examples/policy.yaml")).unwrap();
    let mut shown = BTreeSet::new();
    key_paths(&example, "", &mut shown);
    let missing: Vec<&String> = known.difference(&shown).collect();
    assert!(missing.is_empty(), "examples/policy.yaml lacks {missing:?}");
    for key in [
        "namespaces.*.startupBudget.minSeconds",
        "mutations.startupTimeout",
        "exemptions.*.reason",
        "namespaces.*.rules.*",
    ] {
        assert!(known.contains(key), "{key} not in {known:?}");
    }
}

/// Every key path a schema describes, written as [`key_paths`] writes
/// them (map entries and list items as `*`).
fn schema_paths(schema: &Value, prefix: &str, paths: &mut BTreeSet<String>) {
    let join = |key: &str| {
        if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        }
    };
    if let Some(properties) = schema["properties"].as_object() {
        for (key, child) in properties {
            // A `rules` map's schema names each rule id as a property.
            let key = if prefix.ends_with("rules") { "*" } else { key };
            let path = join(key);
            paths.insert(path.clone());
            schema_paths(child, &path, paths);
        }
    }
    // A map's entries are keys; a list's items are not (key_paths alike).
    if schema["additionalProperties"].is_object() {
        paths.insert(join("*"));
        schema_paths(&schema["additionalProperties"], &join("*"), paths);
    }
    if schema["items"].is_object() {
        schema_paths(&schema["items"], &join("*"), paths);
    }
}

/// deploy/ and the chart ship the CRDs `sts-guard policy crds` prints
/// (generated from the Rust types), after a comment header.
#[test]
fn the_shipped_crds_are_the_generated_ones() {
    let generated = sts_guard::commands::policy::crds_yaml().unwrap();
    for file in [
        "deploy/base/crds.yaml",
        "charts/sts-guard/crds/sts-guard.io.yaml",
    ] {
        let shipped = repo(file);
        let body: String = shipped
            .lines()
            .skip_while(|l| l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(
            body == generated,
            "{file} is not what `sts-guard policy crds` prints; regenerate it (its header says how)"
        );
    }
}

/// `policy convert` says what the file says: the same decision for every
/// rule in every namespace the example names, and the exemptions the
/// policy lets namespaces own become objects there.
#[test]
fn policy_convert_keeps_every_decision() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.yaml");
    std::fs::write(
        &file,
        repo("examples/policy.yaml")
            + "  - namespace: sandbox\n    rules: [liveness-probe]\n    reason: owned by sandbox\n",
    )
    .unwrap();
    let converted = sts_guard::commands::policy::convert(&file).unwrap();
    let docs: Vec<&str> = converted.split("\n---\n").collect();
    assert_eq!(docs.len(), 2, "{converted}");
    let from_object = Policy::from_yaml(docs[0], "converted").unwrap();
    let from_file = Policy::load(&file).unwrap();
    let exemption: sts_guard::policy::objects::StatefulSetExemption =
        serde_saphyr::from_str(docs[1]).unwrap();
    assert_eq!(exemption.metadata.namespace.as_deref(), Some("sandbox"));
    assert_eq!(exemption.spec.stateful_set, "*");
    let from_object = from_object.with_exemption_objects([exemption], "sts-guard");
    let now = jiff::Timestamp::now();
    for ns in ["shop", "legacy", "sandbox", "batch", "other"] {
        for rule in sts_guard::rules::RULES {
            assert_eq!(
                from_object.rule_mode(ns, rule.id),
                from_file.rule_mode(ns, rule.id),
                "{ns} {}",
                rule.id
            );
            for name in ["queue-worker", "web"] {
                let honoured = |p: &Policy| {
                    matches!(
                        p.exemption(ns, name, rule.id, now),
                        Some(Exempting::Honoured(_))
                    )
                };
                assert_eq!(
                    honoured(&from_object),
                    honoured(&from_file),
                    "{ns}/{name} {}",
                    rule.id
                );
            }
        }
        assert_eq!(from_object.mutations(ns), from_file.mutations(ns));
    }
}
