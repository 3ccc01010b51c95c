//! The fields the API server requires of a StatefulSet.

use super::{Node, NodeValue};
use crate::rules::FieldPath;

/// The required fields the API server insists on but the typed decoder
/// fills with defaults when absent (a missing `containers` decodes as an
/// empty list, and a pod without containers would pass every probe rule).
/// Fields of the wrong type are left to the decoder, which names the type.
pub(super) fn missing_required(doc: &Node) -> Option<(String, FieldPath)> {
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
