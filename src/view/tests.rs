//! The views decode what the API server sends as k8s-openapi would, for
//! the fields they hold.

use serde_json::json;

use super::*;

fn sts(value: serde_json::Value) -> Result<StatefulSet, serde_json::Error> {
    serde_json::from_value(value)
}

#[test]
fn null_and_absent_read_alike() {
    for spec in [
        json!({"template": null}),
        json!({"template": {"spec": {"containers": null, "initContainers": null}}}),
        json!({"template": {"spec": {"containers": [{"name": null}]}}}),
        json!({"serviceName": null}),
    ] {
        let s = sts(json!({"metadata": null, "spec": spec.clone()}));
        assert!(s.is_ok(), "{spec}: {s:?}");
    }
}

#[test]
fn only_sts_guard_annotations_are_kept() {
    let s = sts(json!({"metadata": {"annotations": {
        "kubectl.kubernetes.io/last-applied-configuration": "{...}",
        "sts-guard.io/parallel": "true",
        "example.com/number": 5,
    }}}))
    .unwrap();
    assert_eq!(s.annotation("sts-guard.io/parallel"), Some("true"));
    assert_eq!(s.metadata.annotations.0.len(), 1);
    assert!(sts(json!({"metadata": {"annotations": {"sts-guard.io/parallel": true}}})).is_err());
}

#[test]
fn another_kind_or_version_is_refused() {
    assert!(sts(json!({"apiVersion": "apps/v1", "kind": "StatefulSet"})).is_ok());
    assert!(sts(json!({"kind": "Deployment"})).is_err());
    assert!(sts(json!({"apiVersion": "apps/v1beta1"})).is_err());
}

#[test]
fn what_is_read_is_checked_as_k8s_openapi_checks_it() {
    let container =
        |c: serde_json::Value| sts(json!({"spec": {"template": {"spec": {"containers": [c]}}}}));
    assert!(container(json!({"name": 7})).is_err());
    assert!(container(json!({"name": "a", "livenessProbe": {"periodSeconds": 3.5}})).is_err());
    assert!(container(json!({"name": "a", "restartPolicy": true})).is_err());
    // Unread fields are skipped, whatever they hold.
    assert!(container(json!({"name": "a", "image": {"not": "a string"}})).is_ok());
}
