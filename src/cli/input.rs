//! Reading manifests for `check` (and `serve --services-from`): files,
//! folders (recursively: .yaml, .yml, .json), `-` for stdin; multi-document
//! YAML; `kind: List` and `*List` items. Unknown kinds are ignored.

use std::io::Read;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use serde_json::Value;
use thiserror::Error;

use crate::lookup::ManifestServices;

/// Where an object came from: `app.yaml document 2`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Source {
    pub file: String,
    /// 1-based document number within the file.
    pub document: usize,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} document {}", self.file, self.document)
    }
}

#[derive(Debug)]
pub struct InputStatefulSet {
    pub sts: StatefulSet,
    pub namespace: String,
    pub source: Source,
}

/// A StatefulSet that does not decode (missing or mistyped fields).
#[derive(Debug)]
pub struct InvalidObject {
    pub source: Source,
    pub name: String,
    pub namespace: String,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Inputs {
    pub statefulsets: Vec<InputStatefulSet>,
    pub invalid: Vec<InvalidObject>,
    pub services: ManifestServices,
}

#[derive(Debug, Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
}

/// Reads every path; `default_namespace` is given to objects that have none.
pub fn read_inputs(
    paths: &[PathBuf],
    default_namespace: Option<&str>,
) -> Result<Inputs, InputError> {
    let ns = default_namespace.unwrap_or("default");
    let mut inputs = Inputs::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| InputError::Read {
                    path: "<stdin>".into(),
                    source,
                })?;
            add_text(&mut inputs, &text, "<stdin>", ns)?;
            continue;
        }
        for file in files_under(path)? {
            let shown = file.display().to_string();
            let text = std::fs::read_to_string(&file).map_err(|source| InputError::Read {
                path: shown.clone(),
                source,
            })?;
            add_text(&mut inputs, &text, &shown, ns)?;
        }
    }
    Ok(inputs)
}

/// A file as itself; a folder as its manifest files, sorted, recursively.
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
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            ) {
                found.push(p);
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Parses one file's text (YAML is a superset of JSON) document by document.
pub fn add_text(
    inputs: &mut Inputs,
    text: &str,
    file: &str,
    default_namespace: &str,
) -> Result<(), InputError> {
    let documents: Vec<Value> =
        serde_saphyr::from_multiple(text).map_err(|e| InputError::Parse {
            file: file.to_string(),
            message: e.to_string(),
        })?;
    for (i, doc) in documents.into_iter().enumerate() {
        let source = Source {
            file: file.to_string(),
            document: i + 1,
        };
        add_object(inputs, doc, &source, default_namespace);
    }
    Ok(())
}

fn add_object(inputs: &mut Inputs, doc: Value, source: &Source, default_namespace: &str) {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    match (api_version, kind) {
        (_, k) if k == "List" || k.ends_with("List") => {
            if let Some(Value::Array(items)) = doc.get("items") {
                for item in items.clone() {
                    add_object(inputs, item, source, default_namespace);
                }
            }
        }
        ("apps/v1", "StatefulSet") => {
            let name = meta_str(&doc, "name");
            let namespace = meta_str(&doc, "namespace");
            let namespace = if namespace.is_empty() {
                default_namespace.to_string()
            } else {
                namespace
            };
            match serde_json::from_value::<StatefulSet>(doc) {
                Ok(sts) => inputs.statefulsets.push(InputStatefulSet {
                    sts,
                    namespace,
                    source: source.clone(),
                }),
                Err(e) => inputs.invalid.push(InvalidObject {
                    source: source.clone(),
                    name,
                    namespace,
                    message: e.to_string(),
                }),
            }
        }
        ("v1", "Service") => {
            if let Ok(svc) = serde_json::from_value::<Service>(doc) {
                inputs.services.insert(svc, default_namespace);
            }
        }
        // Anything else is not ours to check.
        _ => {}
    }
}

fn meta_str(doc: &Value, field: &str) -> String {
    doc.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}
