//! Splitting a text into documents, as kubectl's YAMLOrJSONDecoder does:
//! a YAML stream or concatenated JSON objects; the YAML parser's options
//! and its errors in a user's words.

use super::kinds::add_document;
use super::wording::plain_words;
use super::{FileRead, InputError, Node, Position};

/// kubectl's YAMLOrJSONDecoder: a stream that starts with `{` is JSON.
pub(super) fn read_documents(text: &str, file: &str, default_namespace: &str, out: &mut FileRead) {
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
            Ok(node) => add_counted(node, file, default_namespace, out),
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
        add_counted(node, file, default_namespace, out);
    }
}

/// Counts a document and adds its objects.
fn add_counted(node: Node, file: &str, default_namespace: &str, out: &mut FileRead) {
    out.documents += 1;
    add_document(
        node,
        file,
        out.documents,
        default_namespace,
        &mut out.objects,
    );
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
