//! `sts-guard check` as CI runs it: the built binary over the fixture trees
//! in tests/fixtures/check/, asserting exit codes, the text people read and
//! the JSON schema machines read.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/check")
}

/// Runs `sts-guard check ARGS` from the fixtures folder, so reported file
/// names are short and stable (`noncompliant/app.yaml`).
fn check(args: &[&str]) -> Output {
    check_with_stdin(args, None)
}

fn check_with_stdin(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sts-guard"))
        .arg("check")
        .args(args)
        .current_dir(fixtures())
        .env_remove("STS_GUARD_CONFIG")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sts-guard");
    if let Some(bytes) = stdin {
        child.stdin.take().unwrap().write_all(bytes).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", stdout(out)))
}

/// The lines of the text report that belong to one object's group.
fn group<'a>(text: &'a str, header_start: &str) -> Vec<&'a str> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with(header_start));
    let header = lines
        .next()
        .unwrap_or_else(|| panic!("no group {header_start:?} in:\n{text}"));
    std::iter::once(header)
        .chain(lines.take_while(|l| l.starts_with(' ')))
        .collect()
}

#[test]
fn compliant_manifests_exit_0() {
    let out = check(&["-f", "compliant"]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    assert!(
        text.contains("shop/web StatefulSet, compliant/web.yaml:17:1 (document 2): ok"),
        "{text}"
    );
    assert!(
        text.contains("shop/postgres StatefulSet, compliant/postgres.yml:14:1 (document 2)"),
        "{text}"
    );
    assert_eq!(
        text.lines().last(),
        Some("2 StatefulSets checked: 0 would be denied, 0 warned, 2 ok")
    );
}

#[test]
fn noncompliant_manifests_exit_1_naming_rule_container_file_and_document() {
    let out = check(&["-f", "noncompliant"]);
    let text = stdout(&out);
    assert_eq!(code(&out), 1, "{text}{}", stderr(&out));

    let web = group(
        &text,
        "shop/web StatefulSet, noncompliant/app.yaml:11:1 (document 2)",
    );
    let web = web.join("\n");
    assert!(web.contains("would be denied"), "{web}");
    for expected in [
        // Each finding at the line and column of what it is about.
        r#"denied   noncompliant/app.yaml:32:11 [readiness-probe] spec.template.spec.containers[0] "app" has no readinessProbe"#,
        r#"denied   noncompliant/app.yaml:28:11 [liveness-probe] spec.template.spec.initContainers[0] "envoy" has no livenessProbe"#,
        r#"denied   noncompliant/app.yaml:28:11 [readiness-probe] spec.template.spec.initContainers[0] "envoy" has no readinessProbe"#,
        r#"denied   noncompliant/app.yaml:17:16 [headless-service] spec.serviceName "web" names no Service in namespace "shop""#,
        "fix: add a readinessProbe",
    ] {
        assert!(web.contains(expected), "missing {expected:?} in:\n{web}");
    }
    assert!(!web.contains(r#""app" has no livenessProbe"#), "{web}");

    let redis = group(&text, "cache/redis StatefulSet, noncompliant/redis.yaml:").join("\n");
    assert!(
        redis.contains(r#"[headless-service] spec.serviceName Service "redis" is not headless (clusterIP: 10.96.12.7)"#),
        "{redis}"
    );
    assert_eq!(
        text.lines().last(),
        Some("2 StatefulSets checked: 2 would be denied, 0 warned, 0 ok")
    );
}

#[test]
fn folders_are_read_recursively_and_services_count_wherever_they_are() {
    let out = check(&["-f", "mixed"]);
    let text = stdout(&out);
    assert_eq!(code(&out), 1, "{text}{}", stderr(&out));
    // Sorted path order: apps/backend before apps/frontend; the Services in
    // base/ and zz-late/ come after the StatefulSets that use them.
    let headers: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" StatefulSet, "))
        .collect();
    assert_eq!(
        headers,
        vec![
            "shop/cache StatefulSet, mixed/apps/backend/cache.json:1:1 (document 1): ok",
            "shop/queue StatefulSet, mixed/apps/backend/queue.yml:1:1 (document 1): would be denied",
            "shop/frontend StatefulSet, mixed/apps/frontend/statefulset.yaml:1:1 (document 1): ok",
        ],
        "{text}"
    );
    assert!(
        text.contains(
            r#"[liveness-probe] spec.template.spec.containers[0] "rabbitmq" has no livenessProbe"#
        ),
        "{text}"
    );
    // The worker container has both probes: one container's probe never
    // stands in for another's.
    assert!(!text.contains(r#""worker" has no"#), "{text}");
    // README.md, the Deployment and the Kustomization are not reviewed.
    assert!(!text.contains("README") && !text.contains("api"), "{text}");
    assert_eq!(
        text.lines().last(),
        Some("3 StatefulSets checked: 1 would be denied, 0 warned, 2 ok")
    );
}

#[test]
fn list_kinds_are_unpacked() {
    let out = check(&["-f", "list/list.yaml", "-o", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = json(&out);
    let objects = report["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0]["name"], "kafka");
    assert_eq!(objects[0]["verdict"], "ok");
    assert_eq!(objects[0]["source"]["document"], 1);
    assert_eq!(objects[0]["source"]["item"], 2);
    // A StatefulSetList item, checked against the Service from the List.
    assert_eq!(objects[1]["name"], "zookeeper");
    assert_eq!(objects[1]["source"]["document"], 2);
    assert_eq!(objects[1]["source"]["item"], 1);
    let rules: Vec<&str> = objects[1]["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, vec!["liveness-probe", "headless-service"]);
    let problem = objects[1]["findings"][1]["problem"].as_str().unwrap();
    assert!(problem.contains("selects app=kafka"), "{problem}");
}

#[test]
fn helm_template_output_is_read_from_stdin() {
    let rendered = std::fs::read(fixtures().join("helm/rendered.yaml")).unwrap();
    let out = check_with_stdin(&["-f", "-", "--namespace", "vault"], Some(&rendered));
    let text = stdout(&out);
    assert_eq!(code(&out), 1, "{text}{}", stderr(&out));
    // Helm leaves namespaces out; --namespace puts the StatefulSet and its
    // headless Service together, so only the missing liveness probe remains.
    let vault = group(&text, "vault/vault StatefulSet, <stdin>:63:1 (document 5)").join("\n");
    assert!(
        vault.contains(r#"denied   <stdin>:103:11 [liveness-probe] spec.template.spec.containers[0] "vault" has no livenessProbe"#),
        "{vault}"
    );
    assert!(!vault.contains("headless-service"), "{vault}");
    // The owner asked for a startup probe: copied from the readiness probe,
    // allowing 10m at a 5s period.
    assert!(
        vault.contains("mutate.sts-guard.io would apply: startup-probe"),
        "{vault}"
    );
    assert!(vault.contains(r#""failureThreshold":120"#), "{vault}");
}

#[test]
fn invalid_yaml_exits_2_naming_file_line_and_column_beside_the_other_files_report() {
    let out = check(&["-f", "invalid"]);
    assert_eq!(code(&out), 2);
    let text = stdout(&out);
    // The file that reads fine is still checked and reported.
    assert!(
        text.contains("shop/postgres StatefulSet, invalid/a-fine.yaml:"),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("error: invalid/broken.yaml:8:12: ")),
        "{text}"
    );
    assert!(text.ends_with("; 1 input could not be read\n"), "{text}");

    // JSON and SARIF carry it too, and stderr says it for the CI log.
    let out = check(&["-f", "invalid", "-o", "json"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).starts_with("error: invalid/broken.yaml:8:12: "),
        "{}",
        stderr(&out)
    );
    let report = json(&out);
    assert_eq!(report["summary"]["checked"], 1);
    let error = &report["errors"][0];
    assert_eq!(
        (&error["file"], &error["line"], &error["column"]),
        (
            &Value::from("invalid/broken.yaml"),
            &Value::from(8),
            &Value::from(12)
        )
    );
    let sarif = json(&check(&["-f", "invalid", "-o", "sarif"]));
    let run = &sarif["runs"][0];
    assert_eq!(run["invocations"][0]["executionSuccessful"], false);
    let unreadable = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "unreadable-input")
        .expect("a result for the unreadable file");
    let region = &unreadable["locations"][0]["physicalLocation"]["region"];
    assert_eq!(
        (&region["startLine"], &region["startColumn"]),
        (&Value::from(8), &Value::from(12))
    );
}

#[test]
fn statefulsets_that_do_not_decode_are_reported_as_invalid() {
    let out = check(&["-f", "undecodable", "-o", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = json(&out);
    let objects = report["objects"].as_array().unwrap();
    let by_name = |name: &str| {
        objects
            .iter()
            .find(|o| o["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    for (name, error) in [
        (
            "numeric",
            "spec: expected StatefulSetSpec, found integer `5`",
        ),
        ("empty-pod", "has no spec.template.spec.containers"),
        ("ancient", "apps/v1beta2"),
    ] {
        let o = by_name(name);
        assert_eq!(o["verdict"], "invalid", "{o}");
        let message = o["error"].as_str().unwrap();
        assert!(message.contains(error), "{name}: {message}");
    }
    assert_eq!(report["summary"]["denied"], 3);
    assert_eq!(report["summary"]["invalid"], 3);

    let text = stdout(&check(&["-f", "undecodable"]));
    assert!(
        text.contains("shop/numeric StatefulSet, undecodable/bad.yaml:2:1 (document 1): would be denied (invalid)"),
        "{text}"
    );
    assert!(
        text.ends_with("3 StatefulSets checked: 3 would be denied (3 invalid), 0 warned, 0 ok\n"),
        "{text}"
    );
}

#[test]
fn policy_modes_and_exemptions_decide_what_fails() {
    let out = check(&["-f", "policy/manifests", "--config", "policy/policy.yaml"]);
    let text = stdout(&out);
    assert_eq!(code(&out), 0, "{text}{}", stderr(&out));
    let staging = group(&text, "staging/web StatefulSet").join("\n");
    assert!(staging.contains("admitted with warnings"), "{staging}");
    assert!(
        staging.contains(r#"warning  policy/manifests/staging.yaml:28:11 [readiness-probe] spec.template.spec.containers[0] "app" has no readinessProbe (warn mode)"#),
        "{staging}"
    );
    let legacy = group(&text, "legacy/ledger StatefulSet").join("\n");
    assert!(
        legacy.contains(
            r#"[liveness-probe] spec.template.spec.containers[0] "ledger" has no livenessProbe"#
        ) && legacy.contains("audit    policy/manifests/"),
        "{legacy}"
    );
    let batch = group(&text, "batch/queue-worker StatefulSet").join("\n");
    assert!(
        batch.contains("[headless-service]")
            && batch.contains("exempt   policy/manifests/")
            && batch.contains("(exempt: drains a queue; nothing addresses its pods by name)"),
        "{batch}"
    );
    assert!(
        text.ends_with("3 StatefulSets checked: 0 would be denied, 1 warned, 2 ok\n"),
        "{text}"
    );

    // Without the policy every rule is enforced.
    assert_eq!(code(&check(&["-f", "policy/manifests"])), 1);
}

#[test]
fn namespace_flag_places_objects_that_name_none() {
    let args = [
        "-f",
        "policy/no-namespace.yaml",
        "--config",
        "policy/policy.yaml",
    ];
    let default = check(&args);
    assert_eq!(code(&default), 1, "enforced in namespace default");
    assert!(stdout(&default).contains("default/search StatefulSet"));

    let staging = check(&[&args[..], &["-n", "staging"]].concat());
    let text = stdout(&staging);
    assert_eq!(code(&staging), 0, "warn mode in staging: {text}");
    // The Service went to staging too, so serviceName resolves.
    assert!(text.contains("staging/search StatefulSet"), "{text}");
    assert!(!text.contains("headless-service"), "{text}");
}

#[test]
fn mutations_are_listed_in_text_and_json() {
    let text = stdout(&check(&["-f", "mutate"]));
    assert!(
        text.contains("mutate.sts-guard.io would apply: parallel, startup-probe"),
        "{text}"
    );
    assert!(
        text.contains(r#"{"op":"add","path":"/spec/podManagementPolicy","value":"Parallel"}"#),
        "{text}"
    );

    let out = check(&["-f", "mutate", "-o", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let report = json(&out);
    let es = &report["objects"][0];
    assert_eq!(
        es["mutations"],
        serde_json::json!(["parallel", "startup-probe"])
    );
    let patch = es["patch"].as_array().unwrap();
    assert_eq!(patch[0]["path"], "/spec/podManagementPolicy");
    assert_eq!(
        patch[1]["path"],
        "/spec/template/spec/containers/0/startupProbe"
    );
    // 5m at the liveness probe's 20s period.
    assert_eq!(patch[1]["value"]["failureThreshold"], 15);
    assert_eq!(patch[1]["value"]["tcpSocket"]["port"], 9300);
    assert_eq!(report["summary"]["mutated"], 1);
}

#[test]
fn json_report_follows_schema_version_1() {
    let out = check(&[
        "-f",
        "noncompliant",
        "-f",
        "policy/manifests",
        "--config",
        "policy/policy.yaml",
        "-o",
        "json",
    ]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = json(&out);
    assert_eq!(report["schemaVersion"], 1);
    assert_eq!(report["command"], "check");
    assert_eq!(report["tool"]["name"], "sts-guard");
    let summary = &report["summary"];
    for field in ["checked", "denied", "invalid", "warned", "ok", "mutated"] {
        assert!(summary[field].is_u64(), "summary.{field}: {summary}");
    }
    assert_eq!(summary["checked"], 5);
    assert_eq!(summary["denied"], 2);
    assert_eq!(summary["warned"], 1);
    assert_eq!(summary["ok"], 2);
    for field in ["deny", "warn", "audit", "exempt"] {
        assert!(summary["findings"][field].is_u64(), "{summary}");
    }

    let objects = report["objects"].as_array().unwrap();
    for o in objects {
        assert_eq!(o["kind"], "StatefulSet");
        for field in ["namespace", "name", "verdict"] {
            assert!(o[field].is_string(), "{field}: {o}");
        }
        assert_eq!(o["source"]["type"], "file");
        assert!(o["source"]["file"].is_string() && o["source"]["line"].is_u64());
        assert!(o["findings"].is_array() && o["mutations"].is_array() && o["notes"].is_array());
        assert!(o["error"].is_null());
        assert!(o.get("patch").is_some(), "patch is always present: {o}");
    }
    let web = objects
        .iter()
        .find(|o| o["namespace"] == "shop" && o["name"] == "web")
        .unwrap();
    assert_eq!(web["source"]["file"], "noncompliant/app.yaml");
    assert_eq!(web["source"]["document"], 2);
    assert_eq!(web["source"]["line"], 11);
    assert_eq!(web["verdict"], "denied");
    let first = &web["findings"][0];
    assert_eq!(first["rule"], "liveness-probe");
    assert_eq!(first["container"], "envoy");
    assert_eq!(first["action"], "deny");
    assert!(first["reason"].is_null());
    assert!(
        first["fix"]
            .as_str()
            .unwrap()
            .starts_with("add a livenessProbe")
    );
    assert_eq!(
        first["message"],
        r#"[liveness-probe] spec.template.spec.initContainers[0] "envoy" has no livenessProbe"#
    );
    let service = web["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "headless-service")
        .unwrap();
    assert!(service["container"].is_null());

    // The probe-quality rules the policy does not name only warn: as
    // newer rules under `mode: enforce`, or because staging says warn.
    let newer = [
        "identical-probes",
        "probe-port",
        "startup-budget",
        "disruption-budget",
    ];
    // (namespace, finding) of every finding.
    let all: Vec<(&Value, &Value)> = objects
        .iter()
        .flat_map(|o| {
            let ns = &o["namespace"];
            o["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |f| (ns, f))
        })
        .collect();
    let is_newer = |f: &Value| newer.contains(&f["rule"].as_str().unwrap());
    let newer_findings: Vec<(&Value, &Value)> =
        all.iter().copied().filter(|(_, f)| is_newer(f)).collect();
    assert!(newer_findings.iter().any(|(ns, _)| *ns == "staging"));
    assert!(newer_findings.iter().any(|(ns, _)| *ns != "staging"));
    for (ns, f) in newer_findings {
        let reason = if ns == "staging" {
            "warn-mode"
        } else {
            "new-rule-default"
        };
        assert_eq!(
            (&f["action"], &f["reason"]),
            (&Value::from("warn"), &Value::from(reason)),
            "{ns}: {f}"
        );
    }
    let first_rules = all.iter().map(|(_, f)| *f).filter(|f| !is_newer(f));
    let reasons: Vec<(&str, &str)> = first_rules
        .filter(|f| f["action"] != "deny")
        .map(|f| (f["action"].as_str().unwrap(), f["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            (
                "exempt",
                "drains a queue; nothing addresses its pods by name"
            ),
            ("audit", "audit-mode"),
            ("warn", "warn-mode"),
        ]
    );
}

#[test]
fn sarif_places_findings_at_their_line_and_column() {
    let out = check(&["-f", "noncompliant", "-o", "sarif"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let sarif = json(&out);
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "sts-guard");
    let rule_ids: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        rule_ids,
        vec![
            "liveness-probe",
            "readiness-probe",
            "headless-service",
            "identical-probes",
            "probe-port",
            "startup-budget",
            "disruption-budget",
            "unreadable-input",
            "invalid-object"
        ]
    );
    let results = run["results"].as_array().unwrap();
    let errors = results.iter().filter(|r| r["level"] == "error").count();
    assert_eq!(errors, 5, "4 denials for web, 1 for redis");
    // The probe-quality rules warn: web has 2 replicas and no budget, and a
    // 30 s liveness budget; redis the same check twice, 30 s, no budget.
    let warnings: Vec<&str> = results
        .iter()
        .filter(|r| r["level"] == "warning")
        .map(|r| r["ruleId"].as_str().unwrap())
        .collect();
    assert_eq!(
        warnings,
        vec![
            "startup-budget",
            "disruption-budget",
            "identical-probes",
            "startup-budget",
            "disruption-budget"
        ]
    );
    let first = &results[0];
    assert_eq!(first["ruleId"], "liveness-probe");
    assert_eq!(first["level"], "error");
    let physical = &first["locations"][0]["physicalLocation"];
    assert_eq!(physical["artifactLocation"]["uri"], "noncompliant/app.yaml");
    // At the envoy sidecar's entry, not the document's first line.
    assert_eq!(physical["region"]["startLine"], 28);
    assert_eq!(physical["region"]["startColumn"], 11);
    assert_eq!(
        first["locations"][0]["logicalLocations"][0]["fullyQualifiedName"],
        "shop/web"
    );

    // Exempt findings are suppressed results, not silently dropped.
    let out = check(&[
        "-f",
        "policy/manifests",
        "--config",
        "policy/policy.yaml",
        "-o",
        "sarif",
    ]);
    let sarif = json(&out);
    let exempt = sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["properties"]["action"] == "exempt")
        .unwrap();
    assert_eq!(exempt["suppressions"][0]["kind"], "external");
}

#[test]
fn unreadable_input_and_bad_usage_exit_2() {
    let missing = check(&["-f", "does-not-exist.yaml"]);
    assert_eq!(code(&missing), 2);
    assert!(
        stdout(&missing).contains("error: cannot read does-not-exist.yaml"),
        "{}",
        stdout(&missing)
    );

    let bad_policy = check(&["-f", "compliant", "--config", "compliant/web.yaml"]);
    assert_eq!(code(&bad_policy), 2);
    assert!(
        stderr(&bad_policy).contains("invalid policy file compliant/web.yaml"),
        "{}",
        stderr(&bad_policy)
    );

    assert_eq!(code(&check(&[])), 2, "-f is required");
    assert_eq!(code(&check(&["-f", "compliant", "-o", "xml"])), 2);
}

#[test]
fn input_without_statefulsets_is_fine() {
    let out = check_with_stdin(
        &["-f", "-"],
        Some(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\nfoo: bar\n"),
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "0 StatefulSets checked: 0 would be denied, 0 warned, 0 ok\n"
    );
}

#[test]
fn empty_input_is_said_on_stderr_and_keeps_exit_0() {
    // `false | sts-guard check -f -`: a failed render without pipefail.
    let out = check_with_stdin(&["-f", "-"], Some(b""));
    assert_eq!(code(&out), 0);
    assert!(
        stderr(&out).contains("no objects were read from the input"),
        "{}",
        stderr(&out)
    );
    // Objects of other kinds are input: nothing to say.
    let out = check_with_stdin(&["-f", "-"], Some(b"apiVersion: v1\nkind: ConfigMap\n"));
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
}

/// The same Service twice (two environments rendered into one namespace):
/// one headless, one not. Whichever order the files come in, the
/// StatefulSet is judged against both and the report names both places.
#[test]
fn a_service_defined_twice_gives_one_answer_whatever_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let service = |cluster_ip: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: shop}}\nspec:\n  clusterIP: {cluster_ip}\n  selector: {{app: web}}\n"
        )
    };
    let sts = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web, namespace: shop}\nspec:\n  serviceName: web\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n        - name: app\n          livenessProbe: {tcpSocket: {port: 80}}\n          readinessProbe: {tcpSocket: {port: 80}}\n";
    std::fs::write(dir.path().join("a.yaml"), service("None")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), sts).unwrap();
    std::fs::write(dir.path().join("c.yaml"), service("10.0.0.1")).unwrap();
    let path = |f: &str| dir.path().join(f).display().to_string();

    let mut answers = Vec::new();
    for order in [
        ["a.yaml", "b.yaml", "c.yaml"],
        ["c.yaml", "b.yaml", "a.yaml"],
    ] {
        let args: Vec<String> = order
            .iter()
            .flat_map(|f| ["-f".to_string(), path(f)])
            .collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = check(&[&args[..], &["-o", "json"]].concat());
        assert_eq!(code(&out), 1, "{}", stdout(&out));
        let report = json(&out);
        let finding = &report["objects"][0]["findings"][0];
        answers.push(finding["problem"].as_str().unwrap().to_string());
        let places = report["duplicates"][0]["places"].as_array().unwrap();
        assert_eq!(places.len(), 2, "{report}");
        assert!(
            places
                .iter()
                .any(|p| p.as_str().unwrap().contains("a.yaml:1:1"))
                && places
                    .iter()
                    .any(|p| p.as_str().unwrap().contains("c.yaml:1:1")),
            "{places:?}"
        );
    }
    assert_eq!(answers[0], answers[1], "order-independent");
    assert_eq!(
        answers[0],
        r#"Service "web" is not headless (clusterIP: 10.0.0.1) in one of its 2 definitions"#
    );

    let text = stdout(&check(&["-f", &path("a.yaml"), "-f", &path("c.yaml")]));
    assert!(
        text.contains("shop/web Service is defined 2 times: "),
        "{text}"
    );
}

#[test]
fn concatenated_json_from_stdin_is_checked_object_by_object() {
    let one = r#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"NAME","namespace":"shop"},"spec":{"serviceName":"","selector":{},"template":{"spec":{"containers":[{"name":"app"}]}}}}"#;
    let stream = format!("{}{}\n", one.replace("NAME", "a"), one.replace("NAME", "b"));
    let out = check_with_stdin(&["-f", "-", "-o", "json"], Some(stream.as_bytes()));
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let report = json(&out);
    let names: Vec<&str> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["a", "b"]);
    // The second object starts right after the first, on line 1.
    let first = one.replace("NAME", "a");
    assert_eq!(report["objects"][1]["source"]["column"], first.len() + 1);
    let finding = &report["objects"][1]["findings"][0];
    assert_eq!(finding["rule"], "liveness-probe");
    assert_eq!(finding["line"], 1);
}

/// The whole SARIF document, byte for byte (key order included), for inputs
/// giving every kind of result: deny, warn, audit, exempt, an invalid
/// object, an unreadable file, stdin, a Service defined twice.
/// tests/fixtures/sarif/every-result.sarif was written by the
/// `serde_json::json!` version that serde-sarif's types replaced.
#[test]
fn sarif_document_is_pinned() {
    let stdin = std::fs::read(fixtures().join("noncompliant/app.yaml")).unwrap();
    let out = check_with_stdin(
        &[
            "-f",
            "policy/manifests",
            "--config",
            "policy/policy.yaml",
            "-f",
            "invalid",
            "-f",
            "undecodable",
            "-f",
            "mixed",
            "-f",
            "mixed/base",
            "-f",
            "-",
            "-o",
            "sarif",
        ],
        Some(&stdin),
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    let pinned = std::fs::read_to_string(fixtures().join("../sarif/every-result.sarif"))
        .unwrap()
        .replace("@VERSION@", env!("CARGO_PKG_VERSION"));
    assert_eq!(stdout(&out), pinned);
}
