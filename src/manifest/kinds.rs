//! One document to the objects of interest in it, by kind: a StatefulSet
//! (decoded as the API server would, or why not), an object of a kind the
//! rules look up, the items of a `List`.

use super::node::Step;
use super::required::missing_required;
use super::wording::plain_words;
use super::{
    InputError, InputLookedUp, InputObject, InputStatefulSet, InvalidObject, Node, NodeValue,
    PolicyObject, Position, Source,
};
use crate::view::StatefulSet;

pub(super) fn add_document(
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
        (crate::policy::objects::API_VERSION, "StatefulSetPolicy" | "StatefulSetExemption") => {
            let policy = kind == "StatefulSetPolicy";
            out.push(policy_object(&node, policy, source, default_namespace));
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
    // then the part the review reads. Two passes over `json`: a serde pass
    // drives one type, and building the view from k8s-openapi's type would
    // be a second definition of the view beside its serde one.
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

/// A policy object, decoded as `serve` reads it; one that does not decode
/// is reported where it breaks, as a StatefulSet would be.
fn policy_object(
    node: &Node,
    policy: bool,
    source: Source,
    default_namespace: &str,
) -> InputObject {
    use crate::policy::objects::{StatefulSetExemption, StatefulSetPolicy};
    let (name, namespace) = identity(node, default_namespace);
    let json = node.to_json();
    let kind = if policy {
        "StatefulSetPolicy"
    } else {
        "StatefulSetExemption"
    };
    let at_error = |at: Position, message: String| {
        InputObject::BadPolicyObject(InputError::Syntax {
            file: source.file.clone(),
            line: at.line,
            column: at.column,
            message: format!("{kind} {namespace}/{name}: {message}"),
        })
    };
    if policy && name != crate::policy::objects::POLICY_NAME {
        // The CRD refuses it too.
        return at_error(
            node.get("metadata").map_or(node.at, |m| m.at),
            format!(
                "sts-guard reads only the StatefulSetPolicy named {}",
                crate::policy::objects::POLICY_NAME
            ),
        );
    }
    let decoded = if policy {
        serde_path_to_error::deserialize::<_, StatefulSetPolicy>(&json)
            .map(|p| PolicyObject::Policy(Box::new(p)))
    } else {
        serde_path_to_error::deserialize::<_, StatefulSetExemption>(&json).map(|mut e| {
            e.metadata.namespace = Some(namespace.clone());
            PolicyObject::Exemption(Box::new(e))
        })
    };
    match decoded {
        Ok(object) => InputObject::PolicyObject(object, source),
        Err(e) => {
            let at = position_of_error(node, e.path());
            let path = e.path().to_string();
            let reason = plain_words(&e.into_inner().to_string());
            at_error(at, format!("{path}: {reason}"))
        }
    }
}

/// The node a decode error names, or the deepest one on the way (a
/// segment that is neither a key nor an index ends the way there).
fn position_of_error(node: &Node, path: &serde_path_to_error::Path) -> Position {
    use serde_path_to_error::Segment as S;
    node.position_along(path.iter().map_while(|segment| match segment {
        S::Map { key } => Some(Step::Key(key)),
        S::Seq { index } => Some(Step::Index(*index)),
        _ => None,
    }))
}

/// Name and namespace read before decoding, so an object that does not
/// decode can still be named.
pub(super) fn identity(doc: &Node, default_namespace: &str) -> (String, String) {
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
