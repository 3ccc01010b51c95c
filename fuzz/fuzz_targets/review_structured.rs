//! Structure-aware: mutations of a real review
//! (tests/fixtures/admission/create-web.json) chosen by the fuzzer, so the
//! inputs stay JSON AdmissionReviews and reach the rules, the policy paths
//! and the patch builder instead of dying in the JSON parser.
//!
//! Every body sent is within the webhook's limit as written (pretty or
//! compact): the HTTP edge answers 413 to a larger one before decoding, so
//! building one would fuzz only this harness. Building is bounded as it
//! goes, not checked after: each mutation is given the room left and adds
//! at most that, measured where it lands (its depth sets a pretty body's
//! indentation); nesting stops a little past serde_json's recursion limit.
//! The bytes sent are checked against the limit once more.
#![no_main]

#[path = "common.rs"]
mod common;

use std::io;
use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value, json};
use sts_guard::webhook::routes::MAX_BODY_BYTES;

/// Containers nested deeper than this are not built: serde_json (the
/// webhook's decode and kube's) refuses a body nested 128 deep, so a little
/// past that reaches the refusal and deeper tests nothing more.
const MAX_NESTING: usize = 130;

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
    /// The value, at most `levels` containers deep (deeper ones become
    /// `null`), its long strings taking at most `room` bytes in all.
    fn build(&self, levels: usize, room: &mut usize) -> Value {
        match self {
            Val::Null => Value::Null,
            Val::Bool(b) => json!(b),
            Val::Int(i) => json!(i),
            Val::Big(u) => json!(u),
            Val::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Val::Str(s) => {
                *room = room.saturating_sub(s.len());
                json!(s)
            }
            Val::Repeat(c, n) => {
                // As written: a control character is escaped to 6 bytes.
                let each = json_len(&c.to_string()) - 2;
                let n = (*n as usize).min(*room / each);
                *room -= n * each;
                json!(c.to_string().repeat(n))
            }
            Val::Arr(_) | Val::Obj(_) if levels == 0 => Value::Null,
            Val::Arr(items) => {
                Value::Array(items.iter().map(|v| v.build(levels - 1, room)).collect())
            }
            Val::Obj(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| {
                        *room = room.saturating_sub(k.len());
                        (k.clone(), v.build(levels - 1, room))
                    })
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
        // Every rule id (`rules::RULES`, never a copy), and two that are
        // not ids.
        let rule_ids: Vec<&str> = sts_guard::rules::RULES
            .iter()
            .map(|r| r.id.as_str())
            .chain(["all", "bogus"])
            .collect();
        match self {
            AnnotationValue::True => "true".into(),
            AnnotationValue::False => "false".into(),
            AnnotationValue::Duration(n, u) => format!("{n}{}", UNITS[*u as usize % UNITS.len()]),
            AnnotationValue::RuleList(ids) => ids
                .iter()
                .map(|i| rule_ids[*i as usize % rule_ids.len()])
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
    /// `spec.replicas` (0, 1 and more: `disruption-budget` reads it).
    Replicas(i8),
}

/// The value found by walking `path` from `node` (each byte picks a child),
/// and how many containers enclose it (`level` of `node` plus the steps).
fn walk<'a>(node: &'a mut Value, path: &[u8], level: usize) -> (&'a mut Value, usize) {
    let Some((step, rest)) = path.split_first() else {
        return (node, level);
    };
    let has_children = match &*node {
        Value::Object(map) => !map.is_empty(),
        Value::Array(items) => !items.is_empty(),
        _ => false,
    };
    if !has_children {
        return (node, level);
    }
    match node {
        Value::Object(map) => {
            let key = map.keys().nth(*step as usize % map.len()).cloned().unwrap();
            walk(map.get_mut(&key).unwrap(), rest, level + 1)
        }
        Value::Array(items) => {
            let len = items.len();
            walk(&mut items[*step as usize % len], rest, level + 1)
        }
        _ => unreachable!(),
    }
}

fn remove(root: &mut Value, path: &[u8]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    match walk(root, parent, 0).0 {
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

const REQUEST: &str = "/request";
const POD: &str = "/request/object/spec/template/spec";
/// How many containers enclose each map these mutations write into: root
/// (0) > request (1) > object (2) > metadata, spec (3) > annotations,
/// template (4) > pod spec (5) > containers (6) > a container (7).
const REQUEST_LEVEL: usize = 1;
const OBJECT_FIELD_LEVEL: usize = 3;
const ANNOTATIONS_LEVEL: usize = 4;
const POD_LEVEL: usize = 5;
const CONTAINER_LEVEL: usize = 7;

fn containers(review: &mut Value) -> Option<&mut Vec<Value>> {
    review
        .pointer_mut(&format!("{POD}/containers"))
        .and_then(Value::as_array_mut)
}

fn request(review: &mut Value) -> Option<&mut Map<String, Value>> {
    review.pointer_mut(REQUEST).and_then(Value::as_object_mut)
}

fn object_field<'a>(review: &'a mut Value, field: &str) -> Option<&'a mut Map<String, Value>> {
    request(review)?
        .get_mut("object")?
        .as_object_mut()?
        .get_mut(field)?
        .as_object_mut()
}

/// Counts the bytes serde_json writes, as if the value were written
/// `indent / 2` levels deep in a pretty body (each newline followed by
/// `indent` more spaces), and fails once past `limit`: measuring costs at
/// most `limit` bytes of formatting, however large the value.
struct Count {
    bytes: usize,
    indent: usize,
    limit: usize,
}

impl io::Write for Count {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_all(buf).map(|()| buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let newlines = match self.indent {
            0 => 0,
            _ => buf.iter().filter(|&&b| b == b'\n').count(),
        };
        self.bytes += buf.len() + newlines * self.indent;
        if self.bytes > self.limit {
            return Err(io::Error::other("over the limit"));
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How many bytes `v` takes in the body (pretty or compact) written `level`
/// containers deep; `None` if more than `limit`.
fn sent_len(v: &Value, pretty: bool, level: usize, limit: usize) -> Option<usize> {
    let mut count = Count {
        bytes: 0,
        indent: if pretty { 2 * level } else { 0 },
        limit,
    };
    let written = if pretty {
        serde_json::to_writer_pretty(&mut count, v)
    } else {
        serde_json::to_writer(&mut count, v)
    };
    written.ok().map(|()| count.bytes)
}

/// A string's length as JSON, quotes and escapes included.
fn json_len(s: &str) -> usize {
    serde_json::to_string(s).map_or(usize::MAX, |j| j.len())
}

/// How containers nest in `v` (a scalar 0, `[]` 1, `[[]]` 2), and how many
/// newlines `v` has when pretty (one before each entry and one before the
/// closing bracket of each non-empty container). No formatting.
fn shape(v: &Value) -> (usize, usize) {
    fn of<'a>(n: usize, children: impl Iterator<Item = &'a Value>) -> (usize, usize) {
        let (nesting, newlines) = children
            .map(shape)
            .fold((0, 0), |(a, b), (c, d)| (a.max(c), b + d));
        let own = if n == 0 { 0 } else { n + 1 };
        (1 + nesting, own + newlines)
    }
    match v {
        Value::Array(items) => of(items.len(), items.iter()),
        Value::Object(map) => of(map.len(), map.values()),
        _ => (0, 0),
    }
}

/// Nothing was changed: the change would not fit in the room left.
struct NoRoom;

/// How the body will be written and how many more bytes it may take.
#[derive(Clone, Copy)]
struct Budget {
    pretty: bool,
    room: usize,
}

impl Budget {
    /// The bytes `v` takes written `level` containers deep, if within the
    /// room.
    fn len(self, v: &Value, level: usize) -> Result<usize, NoRoom> {
        sent_len(v, self.pretty, level, self.room).ok_or(NoRoom)
    }

    /// At most what one more entry `level` deep adds to its container: a
    /// separator, the indentation, the key (in an object) and the value, of
    /// `value_len` bytes as written there (when the container was empty,
    /// its closing bracket moves to a line of its own).
    fn entry(self, level: usize, key: Option<&str>, value_len: usize) -> usize {
        let key = key.map_or(0, |k| json_len(k) + if self.pretty { 2 } else { 1 });
        let framing = if self.pretty { 4 * level + 2 } else { 1 };
        framing + key + value_len
    }

    /// What `[item]` adds around an item written `level` deep.
    fn brackets(self, level: usize) -> usize {
        if self.pretty { 4 * level + 2 } else { 2 }
    }

    fn fits(self, bytes: usize) -> Result<usize, NoRoom> {
        if bytes <= self.room {
            Ok(bytes)
        } else {
            Err(NoRoom)
        }
    }
}

/// `map[key] = value`, `map` being `level` containers deep, if it fits.
fn set_field(
    map: &mut Map<String, Value>,
    level: usize,
    key: &str,
    value: Value,
    budget: Budget,
) -> Result<usize, NoRoom> {
    let added = budget.fits(budget.entry(level + 1, Some(key), budget.len(&value, level + 1)?))?;
    map.insert(key.into(), value);
    Ok(added)
}

/// Applies `m` if what it adds fits in `budget`; returns at most how many
/// bytes the body grew by (a value replaced or removed is not subtracted).
fn apply(review: &mut Value, m: &Mutation, budget: Budget) -> Result<usize, NoRoom> {
    match m {
        Mutation::Set(path, v) => {
            let (node, level) = walk(review, path, 0);
            let mut strings = budget.room;
            let new = v.build(MAX_NESTING.saturating_sub(level), &mut strings);
            // The old value goes: the body grows by at most the new one.
            let added = budget.len(&new, level)?;
            *node = new;
            Ok(added)
        }
        Mutation::Remove(path) => {
            remove(review, path);
            Ok(0)
        }
        Mutation::Duplicate(path, times) => {
            // Usually a few copies, now and then thousands; no more than fit.
            let times = if *times > 0xff00 {
                5000
            } else {
                *times as usize % 64
            };
            if times == 0 {
                return Ok(0);
            }
            let (node, level) = walk(review, path, 0);
            // Each copy is one more entry of a non-empty container, one
            // level down: `,\n` and indentation before it when pretty, `,`
            // when compact.
            let entry = level + 1;
            let (separator, colon) = if budget.pretty {
                (2 + 2 * entry, 2)
            } else {
                (1, 1)
            };
            // Measured where it is, cloned only if a copy fits.
            let mut added = 0;
            match node {
                Value::Array(items) if !items.is_empty() => {
                    let each = separator + budget.len(&items[0], entry)?;
                    let times = times.min(budget.room / each);
                    if times > 0 {
                        let first = items[0].clone();
                        items.extend(std::iter::repeat_n(first, times));
                        added = times * each;
                    }
                }
                Value::Object(map) if !map.is_empty() => {
                    let (k, v) = map.iter().next().unwrap();
                    let each = budget.len(v, entry)?;
                    let mut copies = Vec::new();
                    for i in 0..times.min(200) {
                        let key = format!("{k}{i}");
                        let cost = separator + json_len(&key) + colon + each;
                        if added + cost > budget.room {
                            break;
                        }
                        added += cost;
                        copies.push(key);
                    }
                    if !copies.is_empty() {
                        let v = v.clone();
                        for key in copies {
                            map.insert(key, v.clone());
                        }
                    }
                }
                _ => {}
            }
            Ok(added)
        }
        Mutation::Wrap(path, depth) => {
            let (node, level) = walk(review, path, 0);
            let (nesting, mut newlines) = shape(node);
            let depth = (*depth as usize).min(MAX_NESTING.saturating_sub(level + nesting));
            let mut added = 0;
            for _ in 0..depth {
                // `[`, newline, indentation, the value one level deeper
                // (two more spaces on each of its lines), newline,
                // indentation, `]`.
                let cost = if budget.pretty {
                    4 * level + 6 + 2 * newlines
                } else {
                    2
                };
                if added + cost > budget.room {
                    break;
                }
                added += cost;
                newlines += 2;
                *node = Value::Array(vec![node.take()]);
            }
            Ok(added)
        }
        Mutation::Operation(op) => {
            const OPS: [&str; 5] = ["CREATE", "UPDATE", "DELETE", "CONNECT", "PATCH"];
            let Some(r) = request(review) else {
                return Ok(0);
            };
            let op = json!(OPS[*op as usize % OPS.len()]);
            set_field(r, REQUEST_LEVEL, "operation", op, budget)
        }
        Mutation::DryRun(b) => match request(review) {
            Some(r) => set_field(r, REQUEST_LEVEL, "dryRun", json!(b), budget),
            None => Ok(0),
        },
        Mutation::OldIsObject => {
            let Some(r) = request(review) else {
                return Ok(0);
            };
            let object = r.get("object").unwrap_or(&Value::Null);
            let len = budget.len(object, REQUEST_LEVEL + 1)?;
            let added = budget.fits(budget.entry(REQUEST_LEVEL + 1, Some("oldObject"), len))?;
            let object = object.clone();
            r.insert("oldObject".into(), object);
            Ok(added)
        }
        Mutation::Annotation(key, value) => {
            let Some(meta) = object_field(review, "metadata") else {
                return Ok(0);
            };
            let (key, value) = (key.name(), json!(value.text()));
            // `annotations: {}` first, if there is none.
            let created = match meta.contains_key("annotations") {
                true => 0,
                false => budget.entry(ANNOTATIONS_LEVEL, Some("annotations"), 2),
            };
            let len = budget.len(&value, ANNOTATIONS_LEVEL + 1)?;
            let added =
                budget.fits(created + budget.entry(ANNOTATIONS_LEVEL + 1, Some(&key), len))?;
            let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = annotations.as_object_mut() {
                a.insert(key, value);
            }
            Ok(added)
        }
        Mutation::Namespace(ns) => match request(review) {
            Some(r) => set_field(r, REQUEST_LEVEL, "namespace", json!(ns), budget),
            None => Ok(0),
        },
        Mutation::ServiceName(which) => {
            // Found and headless, found and not headless, defined twice
            // differently, missing (common.rs).
            const NAMES: [&str; 5] = ["web", "plain", "twice", "missing", ""];
            let Some(spec) = object_field(review, "spec") else {
                return Ok(0);
            };
            let name = json!(NAMES[*which as usize % NAMES.len()]);
            set_field(spec, OBJECT_FIELD_LEVEL, "serviceName", name, budget)
        }
        Mutation::RemoveProbe(i, probe) => {
            if let Some(cs) = containers(review).filter(|c| !c.is_empty()) {
                let len = cs.len();
                if let Some(c) = cs[*i as usize % len].as_object_mut() {
                    c.remove(probe.field());
                }
            }
            Ok(0)
        }
        Mutation::Sidecar(i, restartable) => {
            let Some(cs) = containers(review).filter(|c| !c.is_empty()) else {
                return Ok(0);
            };
            let i = *i as usize % cs.len();
            // Written as deep in initContainers as in containers.
            let mut len = budget.len(&cs[i], CONTAINER_LEVEL)?;
            if *restartable {
                len += budget.entry(
                    CONTAINER_LEVEL + 1,
                    Some("restartPolicy"),
                    json_len("Always"),
                );
            }
            let appended = review
                .pointer(&format!("{POD}/initContainers"))
                .is_some_and(Value::is_array);
            let added = budget.fits(match appended {
                true => budget.entry(CONTAINER_LEVEL, None, len),
                false => budget.entry(
                    POD_LEVEL + 1,
                    Some("initContainers"),
                    budget.brackets(CONTAINER_LEVEL) + len,
                ),
            })?;
            let mut c = containers(review).expect("still there")[i].clone();
            if let (true, Some(c)) = (*restartable, c.as_object_mut()) {
                c.insert("restartPolicy".into(), json!("Always"));
            }
            let pod = review
                .pointer_mut(POD)
                .and_then(Value::as_object_mut)
                .expect("holds the containers");
            match pod.get_mut("initContainers").and_then(Value::as_array_mut) {
                Some(init) => init.push(c),
                None => {
                    pod.insert("initContainers".into(), json!([c]));
                }
            }
            Ok(added)
        }
        Mutation::PodManagementPolicy(parallel) => {
            let Some(spec) = object_field(review, "spec") else {
                return Ok(0);
            };
            let policy = json!(if *parallel {
                "Parallel"
            } else {
                "OrderedReady"
            });
            set_field(
                spec,
                OBJECT_FIELD_LEVEL,
                "podManagementPolicy",
                policy,
                budget,
            )
        }
        Mutation::RequestKind(k) => {
            const KINDS: [(&str, &str, &str); 3] = [
                ("apps", "v1", "StatefulSet"),
                ("", "v1", "Pod"),
                ("apps", "v1beta1", "StatefulSet"),
            ];
            let (g, v, kind) = KINDS[*k as usize % KINDS.len()];
            let Some(r) = request(review) else {
                return Ok(0);
            };
            let kind = json!({"group": g, "version": v, "kind": kind});
            set_field(r, REQUEST_LEVEL, "kind", kind, budget)
        }
        Mutation::Replicas(n) => match object_field(review, "spec") {
            Some(spec) => set_field(spec, OBJECT_FIELD_LEVEL, "replicas", json!(n), budget),
            None => Ok(0),
        },
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    policy: u8,
    mutations: Vec<Mutation>,
    /// Serialize pretty or compact.
    pretty: bool,
}

/// The fixture's length as written compact and pretty.
static FIXTURE_LEN: LazyLock<[usize; 2]> = LazyLock::new(|| {
    [false, true].map(|pretty| sent_len(&FIXTURE, pretty, 0, usize::MAX).expect("measured"))
});

fuzz_target!(|input: Input| {
    let pretty = input.pretty;
    let mut review = FIXTURE.clone();
    // At least the body's length as written: exact at first, then raised by
    // at most what each mutation added.
    let mut size = FIXTURE_LEN[pretty as usize];
    let mut exact = true;
    // Measuring the whole body costs up to the limit in formatting: only
    // when a mutation found no room, and twice at most.
    let mut measures = 2;
    let budget = |size: usize| Budget {
        pretty,
        room: MAX_BODY_BYTES - size,
    };
    for m in input.mutations.iter().take(16) {
        if !review.is_object() {
            break;
        }
        let applied = match apply(&mut review, m, budget(size)) {
            Err(NoRoom) if !exact && measures > 0 => {
                // The estimate may be high (what was replaced or removed is
                // not subtracted): measure, and try once more.
                measures -= 1;
                size = sent_len(&review, pretty, 0, MAX_BODY_BYTES).expect("within the limit");
                exact = true;
                apply(&mut review, m, budget(size))
            }
            applied => applied,
        };
        if let Ok(added) = applied {
            size += added;
            exact = false;
        }
    }
    let body = if pretty {
        serde_json::to_vec_pretty(&review)
    } else {
        serde_json::to_vec(&review)
    }
    .expect("value encodes");
    assert!(
        body.len() <= size,
        "harness bug: a {}-byte body, estimated at most {size}",
        body.len()
    );
    // To look at a crash's body: STS_GUARD_FUZZ_DUMP=body.json cargo fuzz run review_structured CRASH
    if let Some(path) = std::env::var_os("STS_GUARD_FUZZ_DUMP") {
        std::fs::write(path, &body).expect("dump body");
    }
    common::check_body(&body, input.policy as usize % common::policies());
});
