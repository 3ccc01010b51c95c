//! Reading manifests the way kubectl reads them, for `check` and
//! `serve --services-from`: files, folders (recursively: .yaml, .yml,
//! .json), `-` for stdin; multi-document YAML, concatenated JSON objects,
//! `kind: List` and `*List` items. Kinds other than StatefulSets, Services
//! and PodDisruptionBudgets are skipped.
//!
//! What kubectl (sigs.k8s.io/yaml over go-yaml v2, and apimachinery's
//! YAMLOrJSONDecoder) accepts, this accepts too:
//! - YAML 1.1 scalars: `defaultMode: 0755` is the octal 493, `yes`/`on`
//!   are booleans;
//! - a repeated mapping key keeps its last value;
//! - a file whose first character is `{` is a stream of JSON objects, one
//!   after another with or without whitespace between them;
//! - a byte-order mark at the start of any line (`cat a.yaml b.yaml` where
//!   b.yaml starts with one) is dropped;
//! - bytes that are not UTF-8 become U+FFFD: in a comment they change
//!   nothing; in a value the API reads, the value keeps the replacement
//!   character where kubectl would send the raw byte.
//!
//! A file that still cannot be read (a syntax error, a missing path) is
//! reported as `file:line:column: reason`, and every other file is read
//! anyway: the caller gets the objects and the errors side by side.

mod node;

use std::path::{Path, PathBuf};

use thiserror::Error;

pub use node::{Node, NodeValue, Position};

use crate::rules::FieldPath;
use crate::view::StatefulSet;

/// How stdin is named in messages and reports.
pub const STDIN_NAME: &str = "<stdin>";

/// Where an object came from: `app.yaml:34:1 (document 2)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    pub file: String,
    /// 1-based number of the document within the file, counting only
    /// non-empty documents (a `---` followed by comments alone is skipped).
    pub document: usize,
    /// Where the object itself starts (a List item: the item).
    pub line: u64,
    pub column: u64,
    /// 1-based position within a `List`'s items, when the object came from one.
    pub item: Option<usize>,
}

impl Source {
    pub fn position(&self) -> Position {
        Position {
            line: self.line,
            column: self.column,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{} (document {}",
            self.file, self.line, self.column, self.document
        )?;
        if let Some(item) = self.item {
            write!(f, ", item {item}")?;
        }
        f.write_str(")")
    }
}

/// A StatefulSet as read, with the tree it was read from so findings can
/// be placed on their line.
#[derive(Debug)]
pub struct InputStatefulSet {
    pub sts: StatefulSet,
    pub namespace: String,
    pub source: Source,
    pub node: Node,
}

/// A StatefulSet that does not decode (missing or mistyped fields, or an
/// apiVersion the API no longer serves).
#[derive(Debug)]
pub struct InvalidObject {
    pub source: Source,
    pub name: String,
    pub namespace: String,
    pub message: String,
    /// Where the problem is (the field that does not decode).
    pub at: Position,
}

/// An object of a kind rules look up (a Service, a PodDisruptionBudget),
/// as read: what the rules read of it.
#[derive(Debug)]
pub struct InputLookedUp {
    pub object: crate::lookup::Object,
    pub source: Source,
}

/// One object of interest, in input order.
#[derive(Debug)]
pub enum InputObject {
    StatefulSet(Box<InputStatefulSet>),
    Invalid(InvalidObject),
    LookedUp(Box<InputLookedUp>),
}

#[derive(Debug, Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// `file:line:column: message`, the form editors and CI logs link.
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        file: String,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
}

impl InputError {
    /// The file (or folder) the error is about.
    pub fn file(&self) -> &str {
        match self {
            InputError::Read { path, .. } => path,
            InputError::Syntax { file, .. } | InputError::Parse { file, .. } => file,
        }
    }

    /// Line and column, when the error has one.
    pub fn position(&self) -> Option<Position> {
        match self {
            InputError::Syntax { line, column, .. } => Some(Position {
                line: *line,
                column: *column,
            }),
            _ => None,
        }
    }

    /// The reason alone, without the file and position.
    pub fn reason(&self) -> String {
        match self {
            InputError::Read { source, .. } => format!("cannot read: {source}"),
            InputError::Syntax { message, .. } | InputError::Parse { message, .. } => {
                message.clone()
            }
        }
    }
}

/// What a whole read came to, besides the objects handed on.
#[derive(Debug, Default)]
pub struct ReadSummary {
    /// Non-empty documents (and JSON values) read, of any kind.
    pub documents: usize,
    /// Files or folders that could not be read, in input order. Every other
    /// file was read.
    pub errors: Vec<InputError>,
}

/// The Services and PodDisruptionBudgets (every looked-up kind) of
/// manifest files, as lookups answer them (`serve --services-from`,
/// tests); the first input error stops it (a server must not start on half
/// its input).
pub fn read_lookups(paths: &[PathBuf]) -> Result<crate::lookup::Objects, InputError> {
    let mut objects = crate::lookup::Objects::default();
    let read = read_objects(paths, "default", |object| {
        if let InputObject::LookedUp(o) = object {
            objects.insert(o.object, o.source.to_string());
        }
    });
    match read.errors.into_iter().next() {
        Some(e) => Err(e),
        None => Ok(objects),
    }
}

/// Streams every object of every path to `visit`, in input order, and
/// returns what could not be read.
///
/// Parsing is most of the work, so files are parsed a few at a time on
/// their own threads; their objects are still handed on in input order.
pub fn read_objects(
    paths: &[PathBuf],
    default_namespace: &str,
    mut visit: impl FnMut(InputObject),
) -> ReadSummary {
    let mut summary = ReadSummary::default();
    let mut inputs = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            inputs.push(None);
        } else {
            match files_under(path) {
                Ok(files) => inputs.extend(files.into_iter().map(Some)),
                Err(e) => summary.errors.push(e),
            }
        }
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    for batch in inputs.chunks(workers) {
        let parsed: Vec<FileRead> = if let [only] = batch {
            vec![read_input(only.as_deref(), default_namespace)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|input| {
                        scope.spawn(move || read_input(input.as_deref(), default_namespace))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    })
                    .collect()
            })
        };
        for file in parsed {
            summary.documents += file.documents;
            file.objects.into_iter().for_each(&mut visit);
            summary.errors.extend(file.error);
        }
    }
    summary
}

/// The objects of one text, and the error that stopped it if any; `file`
/// names it in sources and messages. For tests and in-memory callers.
pub fn read_text(text: &str, file: &str, default_namespace: &str) -> FileRead {
    let mut read = FileRead::default();
    read_documents(text, file, default_namespace, &mut read);
    read
}

/// What one file gave.
#[derive(Debug, Default)]
pub struct FileRead {
    pub documents: usize,
    pub objects: Vec<InputObject>,
    pub error: Option<InputError>,
}

/// One file, or stdin when `None`.
fn read_input(file: Option<&Path>, default_namespace: &str) -> FileRead {
    let (shown, bytes) = match file {
        None => {
            let mut bytes = Vec::new();
            let result = std::io::Read::read_to_end(&mut std::io::stdin().lock(), &mut bytes);
            (STDIN_NAME.to_string(), result.map(|_| bytes))
        }
        Some(file) => (file.display().to_string(), std::fs::read(file)),
    };
    match bytes {
        Ok(bytes) => read_text(&text_of(&bytes), &shown, default_namespace),
        Err(source) => FileRead {
            error: Some(InputError::Read {
                path: shown,
                source,
            }),
            ..FileRead::default()
        },
    }
}

/// The text of a file: bytes that are not UTF-8 replaced by U+FFFD.
fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A byte-order mark at the start of any line dropped, as kubectl's
/// document splitter drops it at the start of each document.
fn without_byte_order_marks(text: &str) -> std::borrow::Cow<'_, str> {
    const BOM: char = '\u{feff}';
    if !text.contains(BOM) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        out.push_str(line.strip_prefix(BOM).unwrap_or(line));
    }
    out.into()
}

/// A file as itself; a folder as its manifest files, sorted, recursively.
/// A path given by the user is followed even if it is a symlink.
fn files_under(path: &Path) -> Result<Vec<PathBuf>, InputError> {
    let read_error = |p: &Path, source| InputError::Read {
        path: p.display().to_string(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(|e| read_error(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|e| read_error(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| read_error(&dir, e))?;
            let p = entry.path();
            // Symlinked folders are not followed (a link to a parent would
            // never end), as kubectl's -R does not; symlinked files are read.
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if is_dir {
                stack.push(p);
            } else if is_manifest(&p) && p.is_file() {
                found.push(p);
            }
        }
    }
    found.sort();
    Ok(found)
}

fn is_manifest(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// kubectl's YAMLOrJSONDecoder: a stream that starts with `{` is JSON.
fn read_documents(text: &str, file: &str, default_namespace: &str, out: &mut FileRead) {
    let text = &*without_byte_order_marks(text);
    if text.trim_start().starts_with('{') {
        read_json_stream(text, file, default_namespace, out);
    } else {
        read_yaml_stream(text, file, default_namespace, out);
    }
}

fn read_yaml_stream(text: &str, file: &str, default_namespace: &str, out: &mut FileRead) {
    let mut bytes = text.as_bytes();
    let documents = serde_saphyr::read_with_options::<_, Node>(&mut bytes, options());
    for doc in documents {
        match doc {
            Ok(node) if node.is_null() => {}
            Ok(node) => {
                out.documents += 1;
                add_document(
                    node,
                    file,
                    out.documents,
                    default_namespace,
                    &mut out.objects,
                );
            }
            Err(e) => {
                out.error = Some(syntax_error(file, &e));
                return;
            }
        }
    }
}

/// Concatenated JSON values. serde_json finds where each ends (and words
/// the syntax errors); each value is then read again by the YAML parser,
/// of which JSON is a subset, to learn where its nodes are.
fn read_json_stream(text: &str, file: &str, default_namespace: &str, out: &mut FileRead) {
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
    let mut start = 0;
    loop {
        match stream.next() {
            None => return,
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                out.error = Some(InputError::Syntax {
                    file: file.to_string(),
                    line: e.line() as u64,
                    column: e.column() as u64,
                    message: plain_words(
                        &e.to_string()
                            .replace(&format!(" at line {} column {}", e.line(), e.column()), ""),
                    ),
                });
                return;
            }
        }
        let end = stream.byte_offset();
        let value = &text[start..end];
        let skipped = value.len() - value.trim_start().len();
        let at = position_at(text, start + skipped);
        let value = value.trim_start();
        start = end;
        let node = match serde_saphyr::from_str_with_options::<Node>(value, options()) {
            Ok(mut node) => {
                node.shift(at.line - 1, at.column - 1);
                node
            }
            // JSON the YAML parser does not take (a tab inside a flow
            // collection, say): the values without their own positions.
            Err(_) => match serde_json::from_str(value) {
                Ok(json) => Node::from_json(json, at),
                Err(_) => continue,
            },
        };
        out.documents += 1;
        add_document(
            node,
            file,
            out.documents,
            default_namespace,
            &mut out.objects,
        );
    }
}

/// 1-based line and column of a byte offset.
fn position_at(text: &str, offset: usize) -> Position {
    let before = &text[..offset];
    let line = before.matches('\n').count() as u64 + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Position {
        line,
        column: before[line_start..].chars().count() as u64 + 1,
    }
}

/// go-yaml v2's resolution (what kubectl uses). Size limits are off: a
/// manifest is the user's own, and `kubectl get -A -o yaml` of a large
/// cluster is one `List` of millions of nodes. Nesting stays bounded
/// (values are built recursively) and so do aliases (a few lines can
/// otherwise expand to gigabytes).
fn options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: None,
            max_documents: usize::MAX,
            max_events: usize::MAX,
            max_nodes: usize::MAX,
            max_total_scalar_bytes: usize::MAX,
            max_depth: 256,
        },
    };
    options.legacy_octal_numbers = true;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::LastWins;
    options.with_snippet = false;
    options.alias_limits.max_total_replayed_events = 1_000_000;
    options
}

/// The parser puts ` at line L, column C` at the end of its messages; we
/// put the position first, as `file:line:column: message`.
fn syntax_error(file: &str, e: &serde_saphyr::Error) -> InputError {
    let message = e.to_string();
    let message = if message.starts_with("budget breached") {
        // The parser names its internal counter; say what it means.
        "aliases (*name) expand this document beyond a million nodes; write the repeated parts out, or use fewer nested aliases".to_string()
    } else {
        message.lines().next().unwrap_or_default().to_string()
    };
    match e.location() {
        Some(loc) if loc.line() > 0 => {
            let suffix = format!(" at line {}, column {}", loc.line(), loc.column());
            let message = message.strip_suffix(&suffix).unwrap_or(&message);
            InputError::Syntax {
                file: file.to_string(),
                line: loc.line(),
                column: loc.column(),
                message: plain_words(message),
            }
        }
        _ => {
            let cause = std::error::Error::source(e).map(|c| format!(": {c}"));
            InputError::Parse {
                file: file.to_string(),
                message: plain_words(&format!("{message}{}", cause.unwrap_or_default())),
            }
        }
    }
}

/// serde's wording in a user's: `invalid type: string "80", expected i32`
/// becomes `expected an integer, found the string "80"`.
fn plain_words(message: &str) -> String {
    let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    else {
        return message.to_string();
    };
    let Some((found, expected)) = rest.split_once(", expected ") else {
        return message.to_string();
    };
    let expected = match expected {
        "i32" | "i64" | "u32" | "u64" | "u16" | "u8" | "i16" | "i8" => "an integer",
        "f64" | "f32" => "a number",
        "a boolean" => "true or false",
        other => other,
    };
    let found = found
        .replace("floating point", "the number")
        .replace("string", "the string");
    let found = match found.as_str() {
        "map" => "a mapping".to_string(),
        "sequence" => "a list".to_string(),
        "null" | "unit value" => "nothing (null)".to_string(),
        "boolean `true`" | "boolean `false`" => found.replace("boolean ", "").replace('`', ""),
        _ => found,
    };
    format!("expected {expected}, found {found}")
}

fn add_document(
    node: Node,
    file: &str,
    document: usize,
    default_namespace: &str,
    out: &mut Vec<InputObject>,
) {
    let source = Source {
        file: file.to_string(),
        document,
        line: node.at.line,
        column: node.at.column,
        item: None,
    };
    add_object(node, source, default_namespace, out);
}

fn add_object(node: Node, source: Source, default_namespace: &str, out: &mut Vec<InputObject>) {
    let kind = node.get("kind").and_then(Node::as_str).unwrap_or("");
    let api_version = node.get("apiVersion").and_then(Node::as_str).unwrap_or("");
    if kind.ends_with("List") {
        let NodeValue::Map(entries) = node.value else {
            return;
        };
        let items = entries.into_iter().find(|(k, _)| k == "items");
        if let Some((
            _,
            Node {
                value: NodeValue::Seq(items),
                ..
            },
        )) = items
        {
            for (i, item) in items.into_iter().enumerate() {
                let source = Source {
                    item: Some(i + 1),
                    line: item.at.line,
                    column: item.at.column,
                    ..source.clone()
                };
                add_object(item, source, default_namespace, out);
            }
        }
        return;
    }
    match (api_version, kind) {
        ("apps/v1", "StatefulSet") => out.push(statefulset(node, source, default_namespace)),
        // The StatefulSets of other API groups (OpenKruise's, say) are not
        // ours; an old or missing apps version is a mistake worth reporting,
        // not something to pass silently.
        (v, "StatefulSet") if v.is_empty() || v.starts_with("apps/") => {
            let (name, namespace) = identity(&node, default_namespace);
            let message = if v.is_empty() {
                "has no apiVersion; use apps/v1".to_string()
            } else {
                format!("uses apiVersion {v}, which the API no longer serves; use apps/v1")
            };
            let at = node.get("apiVersion").map_or(node.at, |n| n.at);
            out.push(InputObject::Invalid(InvalidObject {
                source,
                name,
                namespace,
                message,
                at,
            }));
        }
        // A Service or PodDisruptionBudget that does not decode is the API
        // server's to reject; here it simply does not exist.
        (v, k) => {
            if let Some(Some(object)) =
                crate::lookup::Object::from_manifest(v, k, || node.to_json(), default_namespace)
            {
                out.push(InputObject::LookedUp(Box::new(InputLookedUp {
                    object,
                    source,
                })));
            }
        }
    }
}

fn statefulset(node: Node, source: Source, default_namespace: &str) -> InputObject {
    let (name, namespace) = identity(&node, default_namespace);
    let invalid = |message: String, at: Position| {
        InputObject::Invalid(InvalidObject {
            source: source.clone(),
            name: name.clone(),
            namespace: namespace.clone(),
            message,
            at,
        })
    };
    if let Some((message, path)) = missing_required(&node) {
        return invalid(message, node.position_of(&path));
    }
    let json = node.to_json();
    // The whole object as the API server would decode it, so a field of the
    // wrong type anywhere is reported as the API server would refuse it;
    // then the part the review reads.
    let decoded =
        serde_path_to_error::deserialize::<_, k8s_openapi::api::apps::v1::StatefulSet>(&json)
            .and_then(|_| serde_path_to_error::deserialize::<_, StatefulSet>(&json));
    match decoded {
        Ok(sts) => InputObject::StatefulSet(Box::new(InputStatefulSet {
            sts,
            namespace,
            source,
            node,
        })),
        Err(e) => {
            let at = position_of_error(&node, e.path());
            let path = e.path().to_string();
            let reason = plain_words(&e.into_inner().to_string());
            let message = if path == "." || path.is_empty() {
                format!("does not decode as an apps/v1 StatefulSet: {reason}")
            } else {
                format!("{path}: {reason}")
            };
            invalid(message, at)
        }
    }
}

/// The node a decode error names, or the deepest one on the way.
fn position_of_error(node: &Node, path: &serde_path_to_error::Path) -> Position {
    use serde_path_to_error::Segment as S;
    let mut here = node;
    for segment in path.iter() {
        let next = match (segment, &here.value) {
            (S::Map { key }, NodeValue::Map(_)) => here.get(key),
            (S::Seq { index }, NodeValue::Seq(items)) => items.get(*index),
            _ => None,
        };
        match next {
            Some(n) => here = n,
            None => break,
        }
    }
    here.at
}

/// The required fields the API server insists on but the typed decoder
/// fills with defaults when absent (a missing `containers` decodes as an
/// empty list, and a pod without containers would pass every probe rule).
/// Fields of the wrong type are left to the decoder, which names the type.
fn missing_required(doc: &Node) -> Option<(String, FieldPath)> {
    let absent = |n: Option<&Node>| n.is_none_or(Node::is_null);
    let pod = FieldPath::of(&["spec", "template", "spec"]);
    let (problem, path) = 'found: {
        let spec = doc.get("spec");
        if absent(spec) {
            break 'found ("has no spec", FieldPath::of(&["spec"]));
        }
        let spec = spec?;
        if !matches!(spec.value, NodeValue::Map(_)) {
            return None;
        }
        if absent(spec.get("selector")) {
            break 'found ("has no spec.selector", FieldPath::of(&["spec", "selector"]));
        }
        let template = spec.get("template");
        if absent(template) {
            break 'found ("has no spec.template", FieldPath::of(&["spec", "template"]));
        }
        let pod_spec = template.and_then(|t| t.get("spec"));
        if absent(pod_spec) {
            break 'found ("has no spec.template.spec", pod);
        }
        let containers = pod_spec.and_then(|p| p.get("containers"));
        if absent(containers) {
            break 'found (
                "has no spec.template.spec.containers",
                pod.field("containers"),
            );
        }
        let Some(Node {
            value: NodeValue::Seq(list),
            ..
        }) = containers
        else {
            return None;
        };
        if list.is_empty() {
            break 'found (
                "has an empty spec.template.spec.containers",
                pod.field("containers"),
            );
        }
        let unnamed = list.iter().position(|c| {
            matches!(c.value, NodeValue::Map(_))
                && c.get("name")
                    .and_then(Node::as_str)
                    .is_none_or(str::is_empty)
        });
        match unnamed {
            Some(i) => {
                break 'found (
                    "has a container without a name",
                    pod.field("containers").index(i),
                );
            }
            None => return None,
        }
    };
    Some((format!("{problem}; the API server requires it"), path))
}

/// Name and namespace read before decoding, so an object that does not
/// decode can still be named.
fn identity(doc: &Node, default_namespace: &str) -> (String, String) {
    let meta = |field: &str| {
        doc.get("metadata")
            .and_then(|m| m.get(field))
            .and_then(Node::as_str)
            .unwrap_or("")
            .to_string()
    };
    let namespace = Some(meta("namespace"))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| default_namespace.to_string());
    (meta("name"), namespace)
}

#[cfg(test)]
mod tests;
