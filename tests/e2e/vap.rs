//! `sts-guard policy vap` proven equal to the webhook's rules on a real API
//! server: for every StatefulSet of the corpus (`../shared/corpus/charts/`,
//! read as `check -f` reads it) and the rules' own cases, under three
//! policies, the decision the generated ValidatingAdmissionPolicies give
//! (denied, warned, allowed) is the one `sts-guard check -o json` gives
//! (a finding's `action`), rule by rule, and so is the message.
//!
//! A control plane of its own, with no webhook registered: what denies or
//! warns here is the API server's CEL alone.
//!
//! Rule by rule: the API server shows only the first denial when several
//! policies deny, so one rule's policy and bindings are applied at a time
//! (each pass: apply, wait until a probe dry-run in a namespace of its own
//! is denied, one batched `kubectl apply --dry-run=server` per namespace,
//! delete, wait until the probe is allowed again). Only CREATE is compared:
//! `check` judges objects as on create.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::control_plane::{
    ControlPlane, Output, random_suffix, run, stop_at_exit, sts_guard_bin, wait_for,
};

/// sts-guard's own namespace, as `--platform-namespace` names it.
const PLATFORM: &str = "sts-guard";
/// Where the pass's probe binding denies: in no policy.
const PROBE_NS: &str = "vap-probe";

struct Cluster {
    cp: ControlPlane,
}

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    static STOP_AT_EXIT: std::sync::Once = std::sync::Once::new();
    match CLUSTER.get_or_init(|| {
        ControlPlane::start()
            .map(|cp| Cluster { cp })
            .map_err(|e| format!("{e:#}"))
    }) {
        Ok(c) => {
            // A static is never dropped: stop it when the process exits.
            STOP_AT_EXIT.call_once(|| stop_at_exit(&c.cp));
            c
        }
        Err(e) => panic!("the vap cluster did not start: {e}"),
    }
}

fn kubectl(args: &[&str]) -> Output {
    cluster().cp.kubectl(args)
}

/// One test at a time applies and deletes the generated objects.
fn applying() -> std::sync::MutexGuard<'static, ()> {
    static APPLYING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    APPLYING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Applies `rule`'s generated objects for `policy_file` (failurePolicy
/// Fail: see below) with the probe binding, and waits until the API server
/// enforces them.
fn apply_rule(policy_file: &Path, rule: &str) {
    // failurePolicy Fail here, not the generated Ignore: a CEL error then
    // shows as a denial or a warning the check does not give (with Ignore
    // it would pass as "allowed").
    let generated = generated(policy_file, rule);
    assert!(generated.contains("failurePolicy: Ignore"), "{generated}");
    let docs = format!(
        "{}---\n{}",
        generated.replace("failurePolicy: Ignore", "failurePolicy: Fail"),
        probe_binding(rule)
    );
    let out = cluster()
        .cp
        .kubectl_with_input(&["apply", "-f", "-"], &docs);
    assert!(
        out.code == 0,
        "the API server refused the generated objects of {rule}: {}",
        out.stderr.chars().take(3000).collect::<String>()
    );
    wait_for(
        "the API server to enforce the generated policy",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok(probe_denied(rule)),
    )
    .unwrap();
}

/// Deletes every generated object and waits until the API server no
/// longer enforces `rule`'s.
fn delete_rule(rule: &str) {
    kubectl(&[
        "delete",
        "validatingadmissionpolicybindings,validatingadmissionpolicies",
        "-l",
        "app.kubernetes.io/managed-by=sts-guard",
        "--wait",
    ])
    .assert_exit(0);
    wait_for(
        "the API server to drop the generated policy",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok(!probe_denied(rule)),
    )
    .unwrap();
}

/// Creates `namespaces` unless they exist.
fn namespaces<'a>(namespaces: impl IntoIterator<Item = &'a str>) {
    for ns in namespaces {
        let out = kubectl(&["create", "namespace", ns]);
        assert!(
            out.code == 0 || out.stderr.contains("AlreadyExists"),
            "{out}"
        );
    }
}

/// What the API server (or `check`) did with one rule's findings on one
/// object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Decision {
    Allowed,
    /// With the message.
    Warned(String),
    Denied(String),
}

/// A policy of the proof and the namespaces it is compared in.
struct Case {
    name: &'static str,
    policy: &'static str,
    namespaces: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "enforce everywhere",
        // The newer rules named, so they deny too.
        policy: "mode: enforce\nrules: {identical-probes: enforce, probe-port: enforce, startup-budget: enforce}\n",
        namespaces: &["vap-enforce"],
    },
    Case {
        name: "warn, one namespace enforced, exemptions",
        // identical-probes is not named: in vap-strict its enforce is capped
        // at warn. Owners may exempt themselves in vap-strict only.
        policy: "mode: warn\n\
                 startupBudget: {minSeconds: 45}\n\
                 namespaces:\n\
                 \x20 vap-strict:\n\
                 \x20   mode: enforce\n\
                 \x20   rules: {probe-port: enforce, startup-budget: enforce}\n\
                 \x20   startupBudget: {minSeconds: 90}\n\
                 \x20   allowOwnerExemptions: true\n\
                 exemptions:\n\
                 \x20 - {namespace: vap-strict, name: case-exempted, rules: [liveness-probe, readiness-probe], reason: e2e}\n\
                 \x20 - {namespace: vap-lax, rules: [startup-budget], reason: e2e}\n",
        namespaces: &["vap-strict", "vap-lax"],
    },
    Case {
        name: "audit",
        policy: "mode: audit\n",
        namespaces: &["vap-audit"],
    },
];

/// The generated policies of every rule with CEL, in rule order.
fn rules_with_cel() -> Vec<&'static str> {
    sts_guard::rules::RULES
        .iter()
        .filter(|r| r.cel.is_some())
        .map(|r| r.id.as_str())
        .collect()
}

/// Every StatefulSet of the corpus, as `check -f` reads it, then the
/// rules' cases; names made unique (one dry-run batch holds them all).
fn objects() -> Vec<Value> {
    let corpus = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/charts");
    assert!(
        corpus.is_dir(),
        "the corpus is missing: {}",
        corpus.display()
    );
    let mut found = Vec::new();
    let read = sts_guard::manifest::read_objects(&[corpus], "default", |object| {
        if let sts_guard::manifest::InputObject::StatefulSet(s) = object {
            found.push(s.node.to_json());
        }
    });
    assert!(read.errors.is_empty(), "{:?}", read.errors);
    assert_eq!(found.len(), 66, "the corpus README counts 66 StatefulSets");
    found.extend(cases());
    let mut seen = BTreeMap::<String, usize>::new();
    for (i, object) in found.iter_mut().enumerate() {
        unique_containers(object, i);
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or("sts")
            .to_string();
        let n = seen.entry(name.clone()).or_default();
        *n += 1;
        if *n > 1 {
            object["metadata"]["name"] = json!(format!("{name}-{n}"));
        }
    }
    found
}

/// Prefixes the container names of object `i` with `o<i>-`: kubectl
/// prints a warning only once per run, and the messages name the
/// container, so each object's messages differ from every other's.
fn unique_containers(object: &mut Value, i: usize) {
    let pod = &mut object["spec"]["template"]["spec"];
    for list in ["containers", "initContainers"] {
        for c in pod[list].as_array_mut().into_iter().flatten() {
            let name = format!("o{i}-{}", c["name"].as_str().unwrap_or(""));
            c["name"] = json!(
                name.chars()
                    .take(63)
                    .collect::<String>()
                    .trim_end_matches('-')
            );
        }
    }
}

/// A StatefulSet of one case: `containers`, `init` containers, extra
/// annotations.
fn sts(name: &str, containers: Value, init: Value, annotations: Value) -> Value {
    let mut pod = json!({"containers": containers});
    if !init.is_null() {
        pod["initContainers"] = init;
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": format!("case-{name}"), "annotations": annotations},
        "spec": {
            "serviceName": "case",
            "selector": {"matchLabels": {"app": "case"}},
            "template": {"metadata": {"labels": {"app": "case"}}, "spec": pod},
        },
    })
}

/// `containers` with the `image` the API server asks of each.
fn with_images(containers: Value) -> Value {
    let mut containers = containers;
    for c in containers.as_array_mut().into_iter().flatten() {
        if c.get("image").is_none() {
            c["image"] = json!("app");
        }
    }
    containers
}

/// Every case of every rule's case table (src/rules/*.rs, the table the
/// unit tests hold the Rust to), then the policy's own cases.
fn cases() -> Vec<Value> {
    let mut out = Vec::new();
    for rule in sts_guard::rules::RULES {
        let Some(cel) = rule.cel else { continue };
        for case in (cel.cases)() {
            out.push(sts(
                &format!("{}-{}", rule.id, case.name),
                with_images(case.containers),
                with_images(case.init_containers),
                Value::Null,
            ));
        }
    }
    let tcp = |port: Value| json!({"tcpSocket": {"port": port}});
    // Every rule at once: no probes at all.
    out.push(sts(
        "no-probes",
        json!([{"name": "app", "image": "app"}, {"name": "b", "image": "b"}]),
        Value::Null,
        Value::Null,
    ));
    // Exemptions: by name (vap-strict's), by the owner's annotation.
    out.push(sts(
        "exempted",
        json!([{"name": "app", "image": "app"}]),
        Value::Null,
        Value::Null,
    ));
    out.push(sts(
        "owner-exempt",
        json!([{"name": "app", "image": "app", "livenessProbe": tcp(json!(1)), "readinessProbe": tcp(json!(1))}]),
        Value::Null,
        json!({"sts-guard.io/exempt": "readiness-probe, startup-budget,nonsense"}),
    ));
    out.push(sts(
        "owner-exempt-all",
        json!([{"name": "app", "image": "app"}]),
        Value::Null,
        json!({"sts-guard.io/exempt": "all"}),
    ));
    out.extend(hostile());
    out
}

/// The hostile inputs of tests/hostile.rs that reach the rules: objects no
/// chart holds but the API server stores, at its size limits, at the
/// types' ends, with text a message carries. (The others never reach a
/// rule on a real API server: see
/// `hostile_objects_the_api_server_refuses_reach_no_policy`.)
fn hostile() -> Vec<Value> {
    let tcp = |port: Value| json!({"tcpSocket": {"port": port}});
    let bare = |n: usize| -> Value {
        (0..n)
            .map(|i| json!({"name": format!("c{i:04}"), "image": "busybox"}))
            .collect()
    };
    let mut out = vec![
        // 5,000 containers without probes: 10,000 findings.
        sts(
            "hostile-5000-containers",
            bare(5000),
            Value::Null,
            Value::Null,
        ),
        // A 104 KB owner's exemption naming no rule (twice that with
        // kubectl's last-applied-configuration).
        sts(
            "hostile-huge-exempt",
            bare(1),
            Value::Null,
            json!({"sts-guard.io/exempt": vec!["no-such-rule"; 8_000].join(",")}),
        ),
        // int32's ends and the longest names the API takes.
        sts(
            "hostile-ends",
            json!([{"name": "c".repeat(60), "image": "app",
                    "ports": [{"name": "abcdefghijklmno", "containerPort": 65535}],
                    "livenessProbe": {"httpGet": {"port": "abcdefghijklmnp"}, "initialDelaySeconds": 2147483647,
                                      "periodSeconds": 2147483647, "failureThreshold": 2147483647},
                    "readinessProbe": {"httpGet": {"port": 65535}}},
                   {"name": "d", "image": "app", "livenessProbe": tcp(json!(65534)), "readinessProbe": tcp(json!("abcdefghijklmnq")),
                    "ports": [{"name": "abcdefghijklmnq", "containerPort": 65534}]}]),
            Value::Null,
            Value::Null,
        ),
        // Text the identical-probes message quotes: not ASCII, quotes,
        // backslashes, a long word.
        sts(
            "hostile-exec-text",
            json!([{"name": "a", "image": "app",
                    "livenessProbe": {"exec": {"command": ["données \"vérifiées\" \\ ✓"]}},
                    "readinessProbe": {"exec": {"command": ["données \"vérifiées\" \\ ✓"]}}},
                   {"name": "b", "image": "app",
                    "livenessProbe": {"exec": {"command": ["x".repeat(2000)]}},
                    "readinessProbe": {"exec": {"command": ["x".repeat(2000)]}}}]),
            Value::Null,
            Value::Null,
        ),
    ];
    // 100 annotations of 1 KB (the API server takes 256 KB in all, and
    // kubectl apply doubles them in last-applied-configuration).
    let mut annotated = sts(
        "hostile-many-annotations",
        bare(1),
        Value::Null,
        Value::Null,
    );
    annotated["metadata"]["annotations"] = (0..100)
        .map(|i| (format!("example.com/k{i}"), json!("v".repeat(1000))))
        .collect::<serde_json::Map<_, _>>()
        .into();
    out.push(annotated);
    out
}

/// The objects in namespace `ns`, as one YAML stream.
fn stream(objects: &[Value], ns: &str) -> String {
    objects
        .iter()
        .map(|o| {
            let mut o = o.clone();
            o["metadata"]["namespace"] = json!(ns);
            serde_saphyr::to_string(&o).unwrap()
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// `sts-guard policy vap` for `policy`: the documents of `rule`'s policy
/// and bindings.
fn generated(policy_file: &Path, rule: &str) -> String {
    let out = run(
        cluster().cp.command(sts_guard_bin()).args([
            "policy",
            "vap",
            "--config",
            policy_file.to_str().unwrap(),
            "--platform-namespace",
            PLATFORM,
        ]),
        None,
    );
    out.assert_exit(0);
    let name = format!("sts-guard-{rule}");
    out.stdout
        .split("---\n")
        .filter(|doc| {
            doc.lines()
                .any(|l| l == format!("  name: {name}") || l == format!("  policyName: {name}"))
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A binding of `rule`'s policy that denies in the probe namespace only,
/// so the test sees when the API server enforces the pass's objects.
fn probe_binding(rule: &str) -> String {
    format!(
        "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\n\
         metadata:\n  name: vap-test-probe\n  labels: {{app.kubernetes.io/managed-by: sts-guard}}\n\
         spec:\n  policyName: sts-guard-{rule}\n  validationActions: [Deny]\n\
         \x20 matchResources:\n    namespaceSelector:\n      matchLabels: {{kubernetes.io/metadata.name: {PROBE_NS}}}\n"
    )
}

/// Breaks every rule with CEL (no probes; a named port no one declares,
/// the same check twice, 30 s before a restart).
fn probe() -> String {
    let bad = json!({"tcpSocket": {"port": "nope"}});
    stream(
        &[sts(
            "probe",
            json!([{"name": "a", "image": "a"}, {"name": "b", "image": "b", "livenessProbe": bad, "readinessProbe": bad}]),
            Value::Null,
            Value::Null,
        )],
        PROBE_NS,
    )
}

fn probe_denied(rule: &str) -> bool {
    let out = cluster()
        .cp
        .kubectl_with_input(&["apply", "--dry-run=server", "-f", "-"], &probe());
    out.code != 0 && out.stderr.contains(&format!("'sts-guard-{rule}'"))
}

/// The decisions of the API server for `rule`, per object name, from one
/// batched dry-run of `file` (stdout and stderr in one stream, so each
/// `Warning:` comes just before the line of the object it is about).
fn api_decisions(file: &Path, rule: &str) -> BTreeMap<String, Decision> {
    let script = format!("kubectl apply --dry-run=server -f {} 2>&1", file.display());
    let out = run(cluster().cp.command("sh").args(["-c", &script]), None);
    let policy = format!("ValidatingAdmissionPolicy 'sts-guard-{rule}' with binding ");
    let mut decisions = BTreeMap::new();
    let mut pending: Option<String> = None;
    for line in out.stdout.lines() {
        if let Some(rest) = line.strip_prefix("Warning: Validation failed for ") {
            let rest = rest
                .strip_prefix(&policy)
                .unwrap_or_else(|| panic!("another policy warned: {line}"));
            let message = rest.split_once("': ").map(|(_, m)| m).unwrap_or(rest);
            assert!(pending.is_none(), "two warnings in a row:\n{}", out.stdout);
            pending = Some(message.to_string());
        } else if let Some(rest) = line.strip_prefix("statefulset.apps/") {
            let name = rest.split(' ').next().unwrap().to_string();
            let decision = pending.take().map_or(Decision::Allowed, Decision::Warned);
            decisions.insert(name, decision);
        } else if line.starts_with("Error from server") {
            let (_, rest) = line
                .split_once("statefulsets.apps \"")
                .unwrap_or_else(|| panic!("{line}"));
            let (name, rest) = rest.split_once('"').unwrap();
            let (_, message) = rest
                .split_once("denied request: ")
                .unwrap_or_else(|| panic!("not a policy's denial: {line}"));
            assert!(rest.contains(&policy), "another policy denied: {line}");
            decisions.insert(name.to_string(), Decision::Denied(message.to_string()));
        } else if !line.trim().is_empty() {
            panic!("unexpected kubectl line: {line}\n{}", out.stdout);
        }
    }
    assert!(
        pending.is_none(),
        "a warning about no object:\n{}",
        out.stdout
    );
    decisions
}

/// `check`'s decisions for `rule`, per object name: denied where a finding
/// of the rule denies, warned where one warns (the first such finding's
/// message, as the webhook would word it), else allowed.
fn check_decisions(file: &Path, policy_file: &Path, rule: &str) -> BTreeMap<String, Decision> {
    let out = run(
        cluster().cp.command(sts_guard_bin()).args([
            "check",
            "-o",
            "json",
            "--config",
            policy_file.to_str().unwrap(),
            "--platform-namespace",
            PLATFORM,
            "-f",
            file.to_str().unwrap(),
        ]),
        None,
    );
    assert!(out.code == 0 || out.code == 1, "check failed\n{out}");
    let report: Value = serde_json::from_str(&out.stdout).expect("check's JSON");
    let mut decisions = BTreeMap::new();
    for object in report["objects"].as_array().unwrap() {
        let name = object["name"].as_str().unwrap().to_string();
        let findings: Vec<&Value> = object["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["rule"] == rule)
            .collect();
        let first = |action: &str| {
            findings
                .iter()
                .find(|f| f["action"] == action)
                .map(|f| f["message"].as_str().unwrap().to_string())
        };
        let decision = match (first("deny"), first("warn")) {
            (Some(m), _) => Decision::Denied(m),
            (None, Some(m)) => Decision::Warned(m),
            (None, None) => Decision::Allowed,
        };
        decisions.insert(name, decision);
    }
    decisions
}

/// Every rule with CEL, under every policy of [`CASES`], in every
/// namespace of it, on every object: the API server's decision is
/// `check`'s.
#[test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
fn generated_policies_decide_as_the_webhook_rules_on_the_corpus_and_the_cases() {
    let _applying = applying();
    let started = std::time::Instant::now();
    let c = cluster();
    let work = c.cp.work().join(format!("vap-{}", random_suffix(4)));
    std::fs::create_dir_all(&work).unwrap();
    for ns in CASES
        .iter()
        .flat_map(|case| case.namespaces.iter())
        .chain([&PROBE_NS, &PLATFORM])
    {
        let out = kubectl(&["create", "namespace", ns]);
        assert!(
            out.code == 0 || out.stderr.contains("AlreadyExists"),
            "{out}"
        );
    }
    let objects = objects();
    let rules = rules_with_cel();
    assert_eq!(rules.len(), 5, "{rules:?}");
    let (mut compared, mut differences) = (0usize, Vec::new());
    let mut tally: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, case) in CASES.iter().enumerate() {
        let policy_file = work.join(format!("policy-{i}.yaml"));
        std::fs::write(&policy_file, case.policy).unwrap();
        let files: Vec<(&str, PathBuf)> = case
            .namespaces
            .iter()
            .map(|ns| {
                let file = work.join(format!("objects-{ns}.yaml"));
                std::fs::write(&file, stream(&objects, ns)).unwrap();
                (*ns, file)
            })
            .collect();
        for rule in &rules {
            apply_rule(&policy_file, rule);
            for (ns, file) in &files {
                let api = api_decisions(file, rule);
                let check = check_decisions(file, &policy_file, rule);
                assert_eq!(api.len(), objects.len(), "kubectl's lines for {ns}");
                assert_eq!(check.len(), objects.len(), "check's objects for {ns}");
                for (name, expected) in &check {
                    compared += 1;
                    let got = &api[name];
                    *tally
                        .entry(match expected {
                            Decision::Allowed => "allowed",
                            Decision::Warned(_) => "warned",
                            Decision::Denied(_) => "denied",
                        })
                        .or_default() += 1;
                    if got != expected {
                        differences.push(format!(
                            "{} / {ns} / {rule} / {name}:\n  check: {expected:?}\n  api:   {got:?}",
                            case.name
                        ));
                    }
                }
            }
            delete_rule(rule);
        }
    }
    println!(
        "vap equivalence: {} objects x {} rules x {} (policy, namespace) pairs = {compared} decisions ({tally:?}), {} differences, in {:.0?}",
        objects.len(),
        rules.len(),
        CASES.iter().map(|c| c.namespaces.len()).sum::<usize>(),
        differences.len(),
        started.elapsed()
    );
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// `policy` in a file of its own, in a new folder `<prefix>-<random>` of
/// the work directory.
fn written_policy(prefix: &str, policy: &str) -> PathBuf {
    let work = cluster()
        .cp
        .work()
        .join(format!("{prefix}-{}", random_suffix(4)));
    std::fs::create_dir_all(&work).unwrap();
    let file = work.join("policy.yaml");
    std::fs::write(&file, policy).unwrap();
    file
}

/// `kubectl apply -n ns FLAGS -f -` of `object`.
fn apply_one(object: &Value, ns: &str, flags: &[&str]) -> Output {
    let mut args = vec!["apply", "-n", ns];
    args.extend_from_slice(flags);
    args.extend(["-f", "-"]);
    cluster()
        .cp
        .kubectl_with_input(&args, &stream(std::slice::from_ref(object), ns))
}

/// UPDATE where a rule denies: a finding the stored object already had
/// does not deny (the webhook would warn "already so before this update";
/// the policy says nothing), a new one does, for a rule of one finding per
/// container and for probe-port (one per probe).
#[test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
fn on_update_only_new_findings_deny() {
    let _applying = applying();
    let ns = "vap-ratchet";
    namespaces([ns, PROBE_NS]);
    let policy_file = written_policy("ratchet", CASES[0].policy);
    let ready = json!({"tcpSocket": {"port": 1}});
    let missing = json!({"tcpSocket": {"port": "missing"}});
    let apply = |object: &Value, flags: &[&str]| apply_one(object, ns, flags);
    let cases: [(&str, Value, Value, &str); 2] = [
        (
            "liveness-probe",
            // Stored without a liveness probe on "a"; the update adds "b",
            // without one too.
            json!([{"name": "a", "image": "a", "readinessProbe": ready}]),
            json!([{"name": "a", "image": "a", "readinessProbe": ready},
                   {"name": "b", "image": "b", "readinessProbe": ready}]),
            r#"[liveness-probe] spec.template.spec.containers[1] "b" has no livenessProbe"#,
        ),
        (
            "probe-port",
            // Stored with a readiness probe naming an undeclared port; the
            // update adds a liveness probe naming one, on the same container.
            json!([{"name": "a", "image": "a", "readinessProbe": missing}]),
            json!([{"name": "a", "image": "a", "readinessProbe": missing, "livenessProbe": missing}]),
            r#"[probe-port] spec.template.spec.containers[0] "a" livenessProbe names port "missing", which the container does not declare"#,
        ),
    ];
    for (rule, stored, updated, message) in cases {
        let object = sts(rule, stored.clone(), Value::Null, Value::Null);
        apply(&object, &[]).assert_exit(0);
        apply_rule(&policy_file, rule);
        // The same object, relabelled: its old finding stays, allowed.
        let mut relabelled = object.clone();
        relabelled["metadata"]["labels"] = json!({"changed": "yes"});
        let out = apply(&relabelled, &["--dry-run=server"]);
        out.assert_exit(0);
        assert!(!out.stderr.contains("sts-guard-"), "{out}");
        // A new finding: denied, named.
        let grown = sts(rule, updated, Value::Null, Value::Null);
        let out = apply(&grown, &["--dry-run=server"]);
        out.assert_exit(1);
        assert!(out.stderr.contains(message), "{out}");
        // On CREATE the old finding denies.
        let mut fresh = object.clone();
        fresh["metadata"]["name"] = json!(format!("case-{rule}-new"));
        apply(&fresh, &["--dry-run=server"]).assert_exit(1);
        delete_rule(rule);
    }
}

/// The other hostile inputs of tests/hostile.rs never reach a rule on a
/// real API server: it refuses them while decoding or validating, before
/// any admission policy runs, here with every generated policy denying.
#[test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
fn hostile_objects_the_api_server_refuses_reach_no_policy() {
    let _applying = applying();
    let ns = "vap-refused";
    namespaces([ns, PROBE_NS]);
    let policy_file = written_policy("refused", CASES[0].policy);
    let probed = |extra: Value| {
        let mut c = json!({"name": "app", "image": "app",
            "livenessProbe": {"tcpSocket": {"port": 1}}, "readinessProbe": {"tcpSocket": {"port": 2}}});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        json!([c])
    };
    // (case, containers, init containers, what the API server says)
    let refused: [(&str, Value, Value, &str); 6] = [
        (
            "control-characters-in-a-name",
            json!([{"name": "a\u{1}b", "image": "app"}]),
            Value::Null,
            "is invalid",
        ),
        (
            "slash-and-tilde-in-a-name",
            json!([{"name": "a/~b", "image": "app"}]),
            Value::Null,
            "is invalid",
        ),
        ("no-containers", json!([]), Value::Null, "is invalid"),
        (
            "negative-probe-period",
            probed(json!({"livenessProbe": {"tcpSocket": {"port": 1}, "periodSeconds": -1}})),
            Value::Null,
            "is invalid",
        ),
        (
            "probe-period-past-int32",
            probed(
                json!({"livenessProbe": {"tcpSocket": {"port": 1}, "periodSeconds": 2147483648u64}}),
            ),
            Value::Null,
            "2147483648",
        ),
        (
            "probe-on-a-plain-init-container",
            probed(json!({})),
            json!([{"name": "migrate", "image": "m", "livenessProbe": {"tcpSocket": {"port": 1}}}]),
            "is invalid",
        ),
    ];
    for rule in rules_with_cel() {
        apply_rule(&policy_file, rule);
        // apply_rule waited until the rule's policy denies (the probe).
        for (case, containers, init, says) in &refused {
            let object = sts(case, containers.clone(), init.clone(), Value::Null);
            let out = apply_one(&object, ns, &["--dry-run=server"]);
            assert_eq!(out.code, 1, "{rule} / {case}: {out}");
            assert!(out.stderr.contains(says), "{rule} / {case}: {out}");
            assert!(
                !out.stderr.contains("ValidatingAdmissionPolicy"),
                "{rule} / {case}: {out}"
            );
        }
        delete_rule(rule);
    }
}
