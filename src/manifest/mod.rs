//! Reading manifests the way kubectl reads them, for `check` and
//! `serve --services-from`: files, folders (recursively: .yaml, .yml,
//! .json), `-` for stdin; multi-document YAML, concatenated JSON objects,
//! `kind: List` and `*List` items. Kinds other than StatefulSets and the
//! kinds rules look up (Services, PodDisruptionBudgets) are skipped.
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
//!
//! Here the entry points and what they return, and the threads; `files`
//! finds the inputs, `stream` splits a text into documents, `kinds` turns
//! a document into objects by kind, `required` holds the fields the API
//! server requires, `wording` puts decoder messages in a user's words,
//! `node` is the parsed tree with positions.

mod files;
mod kinds;
mod node;
mod required;
mod stream;
mod wording;

use std::path::PathBuf;

use thiserror::Error;

use files::{files_under, read_input};
pub use node::{Node, NodeValue, Position};
use stream::read_documents;

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

/// A policy object (`sts-guard.io/v1alpha1`), as read.
#[derive(Debug)]
pub enum PolicyObject {
    Policy(Box<crate::policy::objects::StatefulSetPolicy>),
    Exemption(Box<crate::policy::objects::StatefulSetExemption>),
}

/// One object of interest, in input order.
#[derive(Debug)]
pub enum InputObject {
    StatefulSet(Box<InputStatefulSet>),
    Invalid(InvalidObject),
    LookedUp(Box<InputLookedUp>),
    PolicyObject(PolicyObject, Source),
    /// A policy object that does not decode: nothing can be judged as the
    /// cluster would without it, so it is an input error.
    BadPolicyObject(InputError),
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

#[cfg(test)]
mod tests;
