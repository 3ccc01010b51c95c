//! The AdmissionReview bodies the load benchmark (`bench/run.sh`) and the
//! criterion benches send, derived from tests/fixtures/admission/
//! create-web.json (a review as the API server sends it: defaulted object,
//! managedFields included), compact JSON:
//!
//! - `typical-validate`: the fixture plus a third container (3 containers,
//!   1 init container), about 8 KiB;
//! - `typical-mutate`: the same with `sts-guard.io/parallel` and
//!   `sts-guard.io/startup-probe` set;
//! - `large-validate`: about 317 KiB: 12 containers, 10 of them with 66 env
//!   vars each, 40 more annotations, a big last-applied-configuration and
//!   managedFields;
//! - `large-mutate`: the same with the mutation annotations.
//!
//! Every object passes every rule against tests/fixtures/admission/
//! services.yaml, so `/validate` takes its full path and allows.
//!
//! Benches include this file with `#[path]`; the example `bench-bodies`
//! writes the bodies into a folder for `bench/run.sh`. Each uses a part of
//! it, hence `dead_code` allowed.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

/// (file stem, body): `typical-validate`, `typical-mutate`,
/// `large-validate`, `large-mutate`.
pub fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission/create-web.json");
    let base: Value =
        serde_json::from_slice(&std::fs::read(&fixture).expect("reading the fixture"))
            .expect("the fixture is JSON");
    let fixture_containers = base["request"]["object"]["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("the fixture has containers")
        .clone();
    let mut typical = fixture_containers.clone();
    typical.push(container("log-shipper", "fluent/fluent-bit:3.1", 2020, 0));
    let mut large = fixture_containers;
    large.extend((0..10).map(|i| {
        container(
            &format!("worker-{i}"),
            &format!("registry.example.com/team/worker:{i}.0"),
            9000 + i,
            66,
        )
    }));
    let mutate = [
        ("sts-guard.io/parallel", "true"),
        ("sts-guard.io/startup-probe", "true"),
    ];
    [
        ("typical-validate", review(&base, &typical, &[], false)),
        ("typical-mutate", review(&base, &typical, &mutate, false)),
        ("large-validate", review(&base, &large, &[], true)),
        ("large-mutate", review(&base, &large, &mutate, true)),
    ]
    .into_iter()
    .map(|(name, body)| {
        (
            name,
            serde_json::to_vec(&body).expect("a JSON value encodes"),
        )
    })
    .collect()
}

/// The body `stem` (`typical-validate`...): read from the folder
/// `STS_GUARD_BENCH_BODIES` names (to compare two trees on the same bytes),
/// else made here.
pub fn body(stem: &str) -> Vec<u8> {
    if let Ok(dir) = std::env::var("STS_GUARD_BENCH_BODIES") {
        let path = Path::new(&dir).join(format!("{stem}.json"));
        return std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    }
    bodies()
        .into_iter()
        .find(|(name, _)| *name == stem)
        .map(|(_, body)| body)
        .unwrap_or_else(|| panic!("no bench body {stem}"))
}

/// Writes [`bodies`] as `<stem>.json` into `dir` (made if missing).
pub fn write(dir: &Path) -> std::io::Result<Vec<(PathBuf, usize)>> {
    std::fs::create_dir_all(dir)?;
    bodies()
        .into_iter()
        .map(|(name, body)| {
            let path = dir.join(format!("{name}.json"));
            std::fs::write(&path, &body)?;
            Ok((path, body.len()))
        })
        .collect()
}

fn container(name: &str, image: &str, port: i64, envs: usize) -> Value {
    let short: String = name.chars().take(15).collect();
    let mut c = json!({
        "name": name,
        "image": image,
        "ports": [{"name": short, "containerPort": port, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        "livenessProbe": {
            "tcpSocket": {"port": port},
            "timeoutSeconds": 1, "periodSeconds": 10,
            "successThreshold": 1, "failureThreshold": 3,
            // 30 s + 3 x 10 s: the default startup budget (60 s), so the
            // object passes every rule and no answer carries a warning.
            "initialDelaySeconds": 30,
        },
        "readinessProbe": {
            "httpGet": {"path": "/ready", "port": port, "scheme": "HTTP"},
            "timeoutSeconds": 1, "periodSeconds": 5,
            "successThreshold": 1, "failureThreshold": 3,
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    });
    if envs > 0 {
        let prefix = name.to_uppercase().replace('-', "_");
        c["env"] = (0..envs)
            .map(|i| {
                json!({"name": format!("{prefix}_SETTING_{i:03}"),
                       "value": format!("value-{i:03}-{}", "x".repeat(120))})
            })
            .collect();
    }
    c
}

/// What a server-side apply records of `containers` in managedFields.
fn managed_fields_for(containers: &[Value]) -> Value {
    let mut entries = Map::new();
    for c in containers {
        let mut entry = json!({
            ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
            "f:livenessProbe": {".": {}, "f:failureThreshold": {}, "f:periodSeconds": {}},
            "f:readinessProbe": {".": {}, "f:failureThreshold": {}, "f:periodSeconds": {}},
            "f:ports": {}, "f:resources": {}, "f:terminationMessagePath": {},
            "f:terminationMessagePolicy": {},
        });
        if let Some(env) = c["env"].as_array() {
            let mut fields = Map::new();
            fields.insert(".".into(), json!({}));
            for e in env {
                let key = format!(
                    "k:{{\"name\":\"{}\"}}",
                    e["name"].as_str().unwrap_or_default()
                );
                fields.insert(key, json!({".": {}, "f:name": {}, "f:value": {}}));
            }
            entry["f:env"] = Value::Object(fields);
        }
        let key = format!(
            "k:{{\"name\":\"{}\"}}",
            c["name"].as_str().unwrap_or_default()
        );
        entries.insert(key, entry);
    }
    Value::Object(entries)
}

fn review(base: &Value, containers: &[Value], extra: &[(&str, &str)], big: bool) -> Value {
    let mut r = base.clone();
    let obj = &mut r["request"]["object"];
    obj["spec"]["template"]["spec"]["containers"] = Value::Array(containers.to_vec());
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = json!({});
    }
    let mut annotations = obj["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for (k, v) in extra {
        annotations.insert((*k).into(), json!(v));
    }
    if big {
        for i in 0..40 {
            annotations.insert(format!("example.com/note-{i:02}"), json!("n".repeat(200)));
        }
    }
    // kubectl apply stores the whole manifest in last-applied-configuration.
    const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
    let mut applied_annotations = annotations.clone();
    applied_annotations.remove(LAST_APPLIED);
    let applied = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "shop",
                     "annotations": applied_annotations,
                     "labels": obj["metadata"]["labels"]},
        "spec": {"replicas": 3, "serviceName": "web",
                 "selector": obj["spec"]["selector"],
                 "template": {"metadata": {"labels": obj["spec"]["template"]["metadata"]["labels"]},
                              "spec": {"containers": containers}}},
    });
    annotations.insert(LAST_APPLIED.into(), json!(format!("{applied}\n")));
    let field_keys: Vec<String> = annotations.keys().map(|k| format!("f:{k}")).collect();
    obj["metadata"]["annotations"] = Value::Object(annotations);
    let fields = &mut obj["metadata"]["managedFields"][0]["fieldsV1"];
    fields["f:spec"]["f:template"]["f:spec"]["f:containers"] = managed_fields_for(containers);
    if let Some(managed) = fields["f:metadata"]["f:annotations"].as_object_mut() {
        for key in field_keys {
            managed.insert(key, json!({}));
        }
    }
    r
}
