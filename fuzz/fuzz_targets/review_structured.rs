//! Structure-aware: mutations of a real review
//! (tests/fixtures/admission/create-web.json) chosen by the fuzzer, so the
//! inputs stay JSON AdmissionReviews and reach the rules, the policy paths
//! and the patch builder instead of dying in the JSON parser.
#![no_main]

#[path = "common.rs"]
mod common;

use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};

static FIXTURE: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!(
        "../../tests/fixtures/admission/create-web.json"
    ))
    .expect("fixture is JSON")
});

/// A JSON value the fuzzer builds.
#[derive(Arbitrary, Debug)]
enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Big(u64),
    Float(f64),
    Str(String),
    /// A long string: `count` copies of `c`.
    Repeat(char, u16),
    Arr(Vec<Val>),
    Obj(Vec<(String, Val)>),
}

impl Val {
    fn build(&self) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => json!(b),
            Val::Int(i) => json!(i),
            Val::Big(u) => json!(u),
            Val::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Val::Str(s) => json!(s),
            Val::Repeat(c, n) => json!(c.to_string().repeat(*n as usize)),
            Val::Arr(items) => Value::Array(items.iter().map(Val::build).collect()),
            Val::Obj(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.build()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }
}

/// Keys sts-guard reads, so mutations hit them often.
#[derive(Arbitrary, Debug)]
enum Key {
    Parallel,
    StartupProbe,
    StartupTimeout,
    Exempt,
    Other(String),
}

impl Key {
    fn name(&self) -> String {
        match self {
            Key::Parallel => "sts-guard.io/parallel".into(),
            Key::StartupProbe => "sts-guard.io/startup-probe".into(),
            Key::StartupTimeout => "sts-guard.io/startup-timeout".into(),
            Key::Exempt => "sts-guard.io/exempt".into(),
            Key::Other(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum AnnotationValue {
    True,
    False,
    Duration(u32, u8),
    RuleList(Vec<u8>),
    Any(String),
}

impl AnnotationValue {
    fn text(&self) -> String {
        const UNITS: [&str; 6] = ["s", "m", "h", "d", "ms", "ns"];
        const RULES: [&str; 5] = [
            "liveness-probe",
            "readiness-probe",
            "headless-service",
            "all",
            "bogus",
        ];
        match self {
            AnnotationValue::True => "true".into(),
            AnnotationValue::False => "false".into(),
            AnnotationValue::Duration(n, u) => format!("{n}{}", UNITS[*u as usize % UNITS.len()]),
            AnnotationValue::RuleList(ids) => ids
                .iter()
                .map(|i| RULES[*i as usize % RULES.len()])
                .collect::<Vec<_>>()
                .join(","),
            AnnotationValue::Any(s) => s.clone(),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Probe {
    Liveness,
    Readiness,
    Startup,
}

impl Probe {
    fn field(&self) -> &'static str {
        match self {
            Probe::Liveness => "livenessProbe",
            Probe::Readiness => "readinessProbe",
            Probe::Startup => "startupProbe",
        }
    }
}

/// One change to the review.
#[derive(Arbitrary, Debug)]
enum Mutation {
    /// Replace the value found by walking `path` (each byte picks a child).
    Set(Vec<u8>, Val),
    /// Remove the value found by walking `path`.
    Remove(Vec<u8>),
    /// Append `times` copies of an array element (or of a field, renamed).
    Duplicate(Vec<u8>, u16),
    /// Nest the value `depth` arrays deep.
    Wrap(Vec<u8>, u8),
    Operation(u8),
    DryRun(bool),
    /// oldObject = object (an UPDATE of the same thing).
    OldIsObject,
    Annotation(Key, AnnotationValue),
    Namespace(String),
    ServiceName(u8),
    RemoveProbe(u8, Probe),
    /// A container copied to initContainers, optionally as a restartable sidecar.
    Sidecar(u8, bool),
    PodManagementPolicy(bool),
    RequestKind(u8),
}

fn walk<'a>(node: &'a mut Value, path: &[u8]) -> &'a mut Value {
    let Some((step, rest)) = path.split_first() else {
        return node;
    };
    let has_children = match &*node {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    };
    if !has_children {
        return node;
    }
    match node {
        Value::Object(map) => {
            let key = map.keys().nth(*step as usize % map.len()).cloned().unwrap();
            walk(map.get_mut(&key).unwrap(), rest)
        }
        Value::Array(items) => {
            let len = items.len();
            walk(&mut items[*step as usize % len], rest)
        }
        _ => unreachable!(),
    }
}

fn remove(root: &mut Value, path: &[u8]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    match walk(root, parent) {
        Value::Object(map) if !map.is_empty() => {
            let key = map.keys().nth(*last as usize % map.len()).cloned().unwrap();
            map.remove(&key);
        }
        Value::Array(items) if !items.is_empty() => {
            let len = items.len();
            items.remove(*last as usize % len);
        }
        _ => {}
    }
}

fn containers(review: &mut Value) -> Option<&mut Vec<Value>> {
    review
        .pointer_mut("/request/object/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
}

fn request(review: &mut Value) -> Option<&mut Map<String, Value>> {
    review.get_mut("request").and_then(Value::as_object_mut)
}

fn object_field<'a>(review: &'a mut Value, field: &str) -> Option<&'a mut Map<String, Value>> {
    request(review)?
        .get_mut("object")?
        .as_object_mut()?
        .get_mut(field)?
        .as_object_mut()
}

/// How many copies of `v` fit in a body the webhook accepts (8 MiB): the
/// HTTP edge refuses larger ones before decoding, so they test nothing.
fn fitting(v: &Value) -> usize {
    let each = serde_json::to_vec(v).map_or(usize::MAX, |b| b.len() + 1);
    sts_guard::webhook::routes::MAX_BODY_BYTES / each
}

fn apply(review: &mut Value, m: &Mutation) {
    match m {
        Mutation::Set(path, v) => *walk(review, path) = v.build(),
        Mutation::Remove(path) => remove(review, path),
        Mutation::Duplicate(path, times) => {
            // Usually a few copies, now and then thousands.
            let times = if *times > 0xff00 {
                5000
            } else {
                *times as usize % 64
            };
            match walk(review, path) {
                Value::Array(items) if !items.is_empty() => {
                    let first = items[0].clone();
                    let times = times.min(fitting(&first));
                    items.extend(std::iter::repeat_n(first, times));
                }
                Value::Object(map) if !map.is_empty() => {
                    let (k, v) = map
                        .iter()
                        .next()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .unwrap();
                    for i in 0..times.min(200).min(fitting(&v)) {
                        map.insert(format!("{k}{i}"), v.clone());
                    }
                }
                _ => {}
            }
        }
        Mutation::Wrap(path, depth) => {
            let node = walk(review, path);
            for _ in 0..*depth {
                *node = Value::Array(vec![node.take()]);
            }
        }
        Mutation::Operation(op) => {
            const OPS: [&str; 5] = ["CREATE", "UPDATE", "DELETE", "CONNECT", "PATCH"];
            if let Some(r) = request(review) {
                r.insert("operation".into(), json!(OPS[*op as usize % OPS.len()]));
            }
        }
        Mutation::DryRun(b) => {
            if let Some(r) = request(review) {
                r.insert("dryRun".into(), json!(b));
            }
        }
        Mutation::OldIsObject => {
            if let Some(r) = request(review) {
                let object = r.get("object").cloned().unwrap_or(Value::Null);
                r.insert("oldObject".into(), object);
            }
        }
        Mutation::Annotation(key, value) => {
            if let Some(meta) = object_field(review, "metadata") {
                let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
                if let Some(a) = annotations.as_object_mut() {
                    a.insert(key.name(), json!(value.text()));
                }
            }
        }
        Mutation::Namespace(ns) => {
            if let Some(r) = request(review) {
                r.insert("namespace".into(), json!(ns));
            }
        }
        Mutation::ServiceName(which) => {
            const NAMES: [&str; 4] = ["web", "down", "missing", ""];
            if let Some(spec) = object_field(review, "spec") {
                spec.insert(
                    "serviceName".into(),
                    json!(NAMES[*which as usize % NAMES.len()]),
                );
            }
        }
        Mutation::RemoveProbe(i, probe) => {
            if let Some(cs) = containers(review).filter(|c| !c.is_empty()) {
                let len = cs.len();
                if let Some(c) = cs[*i as usize % len].as_object_mut() {
                    c.remove(probe.field());
                }
            }
        }
        Mutation::Sidecar(i, restartable) => {
            let Some(mut c) = containers(review)
                .filter(|c| !c.is_empty())
                .map(|cs| cs[*i as usize % cs.len()].clone())
            else {
                return;
            };
            if let (true, Some(c)) = (*restartable, c.as_object_mut()) {
                c.insert("restartPolicy".into(), json!("Always"));
            }
            if let Some(pod) = review
                .pointer_mut("/request/object/spec/template/spec")
                .and_then(Value::as_object_mut)
            {
                match pod.get_mut("initContainers").and_then(Value::as_array_mut) {
                    Some(init) => init.push(c),
                    None => {
                        pod.insert("initContainers".into(), json!([c]));
                    }
                }
            }
        }
        Mutation::PodManagementPolicy(parallel) => {
            if let Some(spec) = object_field(review, "spec") {
                spec.insert(
                    "podManagementPolicy".into(),
                    json!(if *parallel {
                        "Parallel"
                    } else {
                        "OrderedReady"
                    }),
                );
            }
        }
        Mutation::RequestKind(k) => {
            const KINDS: [(&str, &str, &str); 3] = [
                ("apps", "v1", "StatefulSet"),
                ("", "v1", "Pod"),
                ("apps", "v1beta1", "StatefulSet"),
            ];
            let (g, v, kind) = KINDS[*k as usize % KINDS.len()];
            if let Some(r) = request(review) {
                r.insert(
                    "kind".into(),
                    json!({"group": g, "version": v, "kind": kind}),
                );
            }
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    policy: u8,
    mutations: Vec<Mutation>,
    /// Serialize pretty or compact.
    pretty: bool,
}

fuzz_target!(|input: Input| {
    let mut review = FIXTURE.clone();
    for m in input.mutations.iter().take(16) {
        if !review.is_object() {
            break;
        }
        apply(&mut review, m);
        // Keep the body within what the webhook accepts (and memory low).
        if matches!(m, Mutation::Duplicate(..))
            && serde_json::to_vec(&review).map_or(true, |b| {
                b.len() > sts_guard::webhook::routes::MAX_BODY_BYTES
            })
        {
            break;
        }
    }
    let body = if input.pretty {
        serde_json::to_vec_pretty(&review)
    } else {
        serde_json::to_vec(&review)
    }
    .expect("value encodes");
    // To look at a crash's body: STS_GUARD_FUZZ_DUMP=body.json cargo fuzz run review_structured CRASH
    if let Some(path) = std::env::var_os("STS_GUARD_FUZZ_DUMP") {
        std::fs::write(path, &body).expect("dump body");
    }
    common::check_body(&body, input.policy as usize % common::policies());
});
