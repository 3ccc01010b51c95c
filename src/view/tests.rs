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

/// A probe reads as k8s-openapi's `Probe` reads it, for every field the
/// view holds: the same value where both accept the probe, refused where
/// k8s-openapi refuses it. Only the unread fields (`successThreshold`,
/// `terminationGracePeriodSeconds`) may hold anything.
#[test]
fn a_probe_reads_as_k8s_openapi_reads_it() {
    use k8s_openapi::api::core::v1::Probe as KubeProbe;
    let accepted = [
        json!({}),
        json!({"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTPS", "host": "h"}}),
        json!({"httpGet": {"port": "http"}, "periodSeconds": 5, "failureThreshold": 3}),
        json!({"httpGet": {}}),
        json!({"httpGet": {"port": null, "path": null}}),
        json!({"httpGet": {"port": 2147483647}}),
        json!({"httpGet": {"port": -1}}),
        json!({"httpGet": {"port": "a-port-name-longer-than-twenty-four-bytes"}}),
        json!({"httpGet": {"port": 80, "httpHeaders": [{"name": "X", "value": "1"}, {}, {"name": null, "value": null}]}}),
        json!({"httpGet": {"port": 80, "httpHeaders": null}}),
        json!({"tcpSocket": {"port": 5432, "host": "db"}}),
        json!({"tcpSocket": {}}),
        json!({"exec": {"command": ["pg_isready", "-U", "postgres"]}}),
        json!({"exec": {"command": null}}),
        json!({"exec": {}}),
        json!({"grpc": {"port": 9000, "service": "health"}}),
        json!({"grpc": {"port": null}}),
        json!({"initialDelaySeconds": 10, "timeoutSeconds": 1, "periodSeconds": null}),
        json!({"httpGet": {"port": 80, "unknown": {"any": ["thing"]}}, "unknown": 1}),
        json!({"successThreshold": 1, "terminationGracePeriodSeconds": 30}),
    ];
    for probe in accepted {
        let kube: KubeProbe = serde_json::from_value(probe.clone()).unwrap();
        let seen_by_kube: Probe =
            serde_json::from_value(serde_json::to_value(&kube).unwrap()).unwrap();
        let ours: Probe = serde_json::from_value(probe.clone()).unwrap();
        assert_eq!(ours, seen_by_kube, "{probe}");
    }
    let refused = [
        json!({"httpGet": {"port": 2147483648_u64}}),
        json!({"httpGet": {"port": -2147483649_i64}}),
        json!({"httpGet": {"port": 80.5}}),
        json!({"httpGet": {"port": true}}),
        json!({"httpGet": {"port": [80]}}),
        json!({"httpGet": {"port": 80, "path": 1}}),
        json!({"httpGet": {"port": 80, "httpHeaders": [{"name": 1}]}}),
        json!({"tcpSocket": {"port": {}}}),
        json!({"exec": {"command": "pg_isready"}}),
        json!({"grpc": {"port": "9000"}}),
        json!({"periodSeconds": "10"}),
        json!({"failureThreshold": 3000000000_u64}),
        json!({"httpGet": "/healthz"}),
    ];
    for probe in refused {
        assert!(
            serde_json::from_value::<KubeProbe>(probe.clone()).is_err(),
            "kube accepts {probe}"
        );
        assert!(
            serde_json::from_value::<Probe>(probe.clone()).is_err(),
            "{probe} is accepted"
        );
    }
}

/// A probe the startup-probe mutation copies is written back as
/// k8s-openapi writes the probe it was read from.
#[test]
fn a_handler_converts_back_to_k8s_openapi_unchanged() {
    use k8s_openapi::api::core::v1 as k8s;
    let probe = json!({
        "exec": {"command": ["sh", "-c", "true"]},
        "httpGet": {"path": "/", "port": "http", "scheme": "HTTP", "host": "h",
                    "httpHeaders": [{"name": "X", "value": "1"}]},
        "tcpSocket": {"port": 5432, "host": "db"},
        "grpc": {"port": 9000, "service": "s"},
    });
    let kube: k8s::Probe = serde_json::from_value(probe.clone()).unwrap();
    let ours: Probe = serde_json::from_value(probe).unwrap();
    assert_eq!(ours.exec.as_ref().map(k8s::ExecAction::from), kube.exec);
    assert_eq!(
        ours.http_get.as_ref().map(k8s::HTTPGetAction::from),
        kube.http_get
    );
    assert_eq!(
        ours.tcp_socket.as_ref().map(k8s::TCPSocketAction::from),
        kube.tcp_socket
    );
    assert_eq!(ours.grpc.as_ref().map(k8s::GRPCAction::from), kube.grpc);
}
