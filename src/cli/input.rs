//! Reading manifests for `check` (and `serve --services-from`): files,
//! folders (recursively: .yaml, .yml, .json), `-` for stdin; multi-document
//! YAML; `kind: List` and `*List` items. Unknown kinds are ignored.
//!
//! Files are streamed one document at a time (YAML is a superset of JSON, so
//! one parser reads both): neither the whole text nor every document's JSON
//! tree is held, only the typed objects handed to the caller.

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use serde_json::Value;
use thiserror::Error;

use crate::lookup::ManifestServices;

/// How stdin is named in messages and reports.
pub const STDIN_NAME: &str = "<stdin>";

/// Where an object came from: `app.yaml document 2 (line 34)`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    pub file: String,
    /// 1-based number of the document within the file, counting only
    /// non-empty documents (a `---` followed by comments alone is skipped).
    pub document: usize,
    /// 1-based line where the document's content starts.
    pub line: u64,
    /// 1-based position within a `List`'s items, when the object came from one.
    pub item: Option<usize>,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} document {}", self.file, self.document)?;
        if let Some(item) = self.item {
            write!(f, " item {item}")?;
        }
        write!(f, " (line {})", self.line)
    }
}

#[derive(Debug)]
pub struct InputStatefulSet {
    pub sts: StatefulSet,
    pub namespace: String,
    pub source: Source,
}

/// A StatefulSet that does not decode (missing or mistyped fields, or an
/// apiVersion the API no longer serves).
#[derive(Debug)]
pub struct InvalidObject {
    pub source: Source,
    pub name: String,
    pub namespace: String,
    pub message: String,
}

/// One object of interest, in input order.
#[derive(Debug)]
pub enum InputObject {
    StatefulSet(Box<InputStatefulSet>),
    Invalid(InvalidObject),
    /// A Service and the namespace it lives in.
    Service(Box<Service>, String),
}

#[derive(Debug, Default)]
pub struct Inputs {
    pub statefulsets: Vec<InputStatefulSet>,
    pub invalid: Vec<InvalidObject>,
    pub services: ManifestServices,
}

impl Inputs {
    /// Files one streamed object where it belongs.
    fn add(&mut self, object: InputObject) {
        match object {
            InputObject::StatefulSet(s) => self.statefulsets.push(*s),
            InputObject::Invalid(i) => self.invalid.push(i),
            InputObject::Service(svc, ns) => self.services.insert(*svc, &ns),
        }
    }
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

/// Reads every path into memory; `default_namespace` is given to objects
/// that have none. `check` uses [`read_objects`] to avoid holding them all.
pub fn read_inputs(
    paths: &[PathBuf],
    default_namespace: Option<&str>,
) -> Result<Inputs, InputError> {
    let ns = default_namespace.unwrap_or("default");
    let mut inputs = Inputs::default();
    read_objects(paths, ns, |object| inputs.add(object))?;
    Ok(inputs)
}

/// Streams every object of every path to `visit`, in input order.
///
/// Parsing is most of the work, so files are parsed a few at a time on
/// their own threads; their objects are still handed on in input order, and
/// the first error in input order is the one reported. A single file (or
/// stdin) is streamed straight to `visit`.
pub fn read_objects(
    paths: &[PathBuf],
    default_namespace: &str,
    mut visit: impl FnMut(InputObject),
) -> Result<(), InputError> {
    let mut inputs = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            inputs.push(None);
        } else {
            inputs.extend(files_under(path)?.into_iter().map(Some));
        }
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    for batch in inputs.chunks(workers) {
        if let [only] = batch {
            read_input(only.as_deref(), default_namespace, &mut visit)?;
            continue;
        }
        let parsed: Vec<Result<Vec<InputObject>, InputError>> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .iter()
                .map(|input| {
                    scope.spawn(move || {
                        let mut objects = Vec::new();
                        read_input(input.as_deref(), default_namespace, &mut |o| {
                            objects.push(o)
                        })
                        .map(|()| objects)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        for objects in parsed {
            objects?.into_iter().for_each(&mut visit);
        }
    }
    Ok(())
}

/// One file, or stdin when `None`.
fn read_input(
    file: Option<&Path>,
    default_namespace: &str,
    visit: &mut impl FnMut(InputObject),
) -> Result<(), InputError> {
    let Some(file) = file else {
        let mut stdin = std::io::stdin().lock();
        return read_stream(&mut stdin, STDIN_NAME, default_namespace, visit);
    };
    let shown = file.display().to_string();
    let handle = std::fs::File::open(file).map_err(|source| InputError::Read {
        path: shown.clone(),
        source,
    })?;
    let mut reader = BufReader::with_capacity(64 * 1024, handle);
    read_stream(&mut reader, &shown, default_namespace, visit)
}

/// A file as itself; a folder as its manifest files, sorted, recursively.
/// A path given by the user is followed even if it is a symlink.
fn files_under(path: &Path) -> Result<Vec<PathBuf>, InputError> {
    let meta = std::fs::metadata(path).map_err(|source| InputError::Read {
        path: path.display().to_string(),
        source,
    })?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut found = Vec::new();
    let mut stack = vec![path.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir).map_err(|source| InputError::Read {
            path: dir.display().to_string(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| InputError::Read {
                path: dir.display().to_string(),
                source,
            })?;
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

/// Parses one stream document by document, handing each object on as soon
/// as its document is read.
fn read_stream(
    reader: &mut impl Read,
    file: &str,
    default_namespace: &str,
    visit: &mut impl FnMut(InputObject),
) -> Result<(), InputError> {
    let documents =
        serde_saphyr::read_with_options::<_, serde_saphyr::Spanned<Value>>(reader, options());
    for (i, doc) in documents.enumerate() {
        let doc = doc.map_err(|e| syntax_error(file, &e))?;
        let source = Source {
            file: file.to_string(),
            document: i + 1,
            line: doc.referenced.line(),
            item: None,
        };
        add_object(doc.value, source, default_namespace, visit);
    }
    Ok(())
}

/// The parser's limits guard against documents built to exhaust memory; a
/// manifest file is the user's own, and `kubectl get -A -o yaml` of a large
/// cluster is one `List` document of millions of nodes, so the size limits
/// are off. Nesting stays bounded: values are built recursively.
fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_reader_input_bytes: None,
            max_documents: usize::MAX,
            max_events: usize::MAX,
            max_nodes: usize::MAX,
            max_total_scalar_bytes: usize::MAX,
            max_depth: 256,
        },
    }
}

/// Parses one in-memory text; see [`read_stream`].
pub fn add_text(
    inputs: &mut Inputs,
    text: &str,
    file: &str,
    default_namespace: &str,
) -> Result<(), InputError> {
    let mut bytes = text.as_bytes();
    read_stream(&mut bytes, file, default_namespace, &mut |object| {
        inputs.add(object)
    })
}

/// serde_saphyr puts ` at line L, column C` at the end of its messages; we
/// put the position first, as `file:line:column: message`.
fn syntax_error(file: &str, e: &serde_saphyr::Error) -> InputError {
    let message = e.to_string();
    match e.location() {
        Some(loc) if loc.line() > 0 => {
            let suffix = format!(" at line {}, column {}", loc.line(), loc.column());
            let message = message
                .strip_suffix(&suffix)
                .unwrap_or(&message)
                .to_string();
            InputError::Syntax {
                file: file.to_string(),
                line: loc.line(),
                column: loc.column(),
                message,
            }
        }
        _ => {
            // I/O failures (invalid UTF-8 among them) say only "IO error";
            // the cause says what.
            let cause = std::error::Error::source(e).map(|c| format!(": {c}"));
            InputError::Parse {
                file: file.to_string(),
                message: format!("{message}{}", cause.unwrap_or_default()),
            }
        }
    }
}

fn add_object(
    doc: Value,
    source: Source,
    default_namespace: &str,
    visit: &mut impl FnMut(InputObject),
) {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if kind.ends_with("List") {
        let Value::Object(mut map) = doc else { return };
        if let Some(Value::Array(items)) = map.remove("items") {
            for (i, item) in items.into_iter().enumerate() {
                let source = Source {
                    item: Some(i + 1),
                    ..source.clone()
                };
                add_object(item, source, default_namespace, visit);
            }
        }
        return;
    }
    match (api_version, kind) {
        ("apps/v1", "StatefulSet") => {
            let (name, namespace) = identity(&doc, default_namespace);
            if let Some(missing) = missing_required(&doc) {
                return visit(InputObject::Invalid(InvalidObject {
                    source,
                    name,
                    namespace,
                    message: missing,
                }));
            }
            match serde_json::from_value::<StatefulSet>(doc) {
                Ok(sts) => visit(InputObject::StatefulSet(Box::new(InputStatefulSet {
                    sts,
                    namespace,
                    source,
                }))),
                Err(e) => visit(InputObject::Invalid(InvalidObject {
                    source,
                    name,
                    namespace,
                    message: format!("does not decode as an apps/v1 StatefulSet: {e}"),
                })),
            }
        }
        // The StatefulSets of other API groups (OpenKruise's, say) are not
        // ours; an old or missing apps version is a mistake worth reporting,
        // not something to pass silently.
        (v, "StatefulSet") if v.is_empty() || v.starts_with("apps/") => {
            let (name, namespace) = identity(&doc, default_namespace);
            let message = if v.is_empty() {
                "has no apiVersion; use apps/v1".to_string()
            } else {
                format!("uses apiVersion {v}, which the API no longer serves; use apps/v1")
            };
            visit(InputObject::Invalid(InvalidObject {
                source,
                name,
                namespace,
                message,
            }));
        }
        ("v1", "Service") => {
            // A Service that does not decode is the API server's to reject;
            // here it simply does not exist.
            if let Ok(svc) = serde_json::from_value::<Service>(doc) {
                let ns = svc
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| default_namespace.to_string());
                visit(InputObject::Service(Box::new(svc), ns));
            }
        }
        // Anything else is not ours to check.
        _ => {}
    }
}

/// The required fields the API server insists on but the typed decoder
/// fills with defaults when absent (a missing `containers` decodes as an
/// empty list, and a pod without containers would pass every probe rule).
/// Fields of the wrong type are left to the decoder, which names the type.
fn missing_required(doc: &Value) -> Option<String> {
    let absent = |v: Option<&Value>| v.is_none_or(Value::is_null);
    let problem = 'found: {
        let spec = doc.get("spec");
        if absent(spec) {
            break 'found "has no spec";
        }
        let spec = spec.and_then(Value::as_object)?;
        if absent(spec.get("selector")) {
            break 'found "has no spec.selector";
        }
        let template = spec.get("template");
        if absent(template) {
            break 'found "has no spec.template";
        }
        let pod = template.and_then(|t| t.get("spec"));
        if absent(pod) {
            break 'found "has no spec.template.spec";
        }
        let containers = pod.and_then(|p| p.get("containers"));
        if absent(containers) {
            break 'found "has no spec.template.spec.containers";
        }
        match containers.and_then(Value::as_array) {
            Some(list) if list.is_empty() => "has an empty spec.template.spec.containers",
            Some(list)
                if list.iter().any(|c| {
                    c.is_object()
                        && c.get("name")
                            .and_then(Value::as_str)
                            .is_none_or(str::is_empty)
                }) =>
            {
                "has a container without a name"
            }
            _ => return None,
        }
    };
    Some(format!("{problem}; the API server requires it"))
}

/// Name and namespace read before decoding, so an object that does not
/// decode can still be named.
fn identity(doc: &Value, default_namespace: &str) -> (String, String) {
    let meta = |field: &str| {
        doc.get("metadata")
            .and_then(|m| m.get(field))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let namespace = Some(meta("namespace"))
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| default_namespace.to_string());
    (meta("name"), namespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Inputs, InputError> {
        let mut inputs = Inputs::default();
        add_text(&mut inputs, text, "app.yaml", "default").map(|()| inputs)
    }

    #[test]
    fn syntax_errors_name_file_line_and_column() {
        let err = read("kind: Service\n---\nkind: x\n  bad: indent\n").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("app.yaml:4:6: "), "{text}");
        assert!(!text.contains("at line"), "{text}");
    }

    #[test]
    fn lists_and_documents_keep_their_place() {
        let text = "---\n# Source: chart/templates/sts.yaml\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n- apiVersion: apps/v1\n  kind: StatefulSet\n  metadata: {name: web}\n  spec: 5\n";
        let inputs = read(text).unwrap();
        let bad = &inputs.invalid[0];
        assert_eq!(bad.name, "web");
        assert_eq!(
            bad.source.to_string(),
            "app.yaml document 1 item 2 (line 4)"
        );
        assert!(bad.message.contains("does not decode"), "{}", bad.message);
    }

    #[test]
    fn folders_skip_other_files_and_symlinked_folders() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("b");
        std::fs::create_dir(&sub).unwrap();
        for name in ["a.yaml", "b/c.yml", "b/d.json", "b/notes.md"] {
            std::fs::write(dir.path().join(name), "{}").unwrap();
        }
        // A link back up would make the walk endless if followed.
        std::os::unix::fs::symlink(dir.path(), sub.join("up")).unwrap();
        let found: Vec<String> = files_under(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(found, vec!["a.yaml", "b/c.yml", "b/d.json"]);
    }

    #[test]
    fn old_apps_versions_are_reported_and_other_groups_ignored() {
        let text = "apiVersion: apps/v1beta2\nkind: StatefulSet\nmetadata: {name: old}\n---\napiVersion: apps.kruise.io/v1beta1\nkind: StatefulSet\nmetadata: {name: kruise}\n";
        let inputs = read(text).unwrap();
        assert_eq!(inputs.invalid.len(), 1);
        assert!(inputs.invalid[0].message.contains("apps/v1beta2"));
        assert!(inputs.statefulsets.is_empty());
    }
}
