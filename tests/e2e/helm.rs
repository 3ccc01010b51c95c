//! charts/sts-guard, with helm v3 built from the Go module proxy
//! (tests/e2e/build-helm.sh): lint, renders the API server accepts, a
//! release installed, upgraded and uninstalled for real, and the chart's
//! webhook configurations registered and proven to deny and mutate.
//!
//! The chart and deploy/ are both written by hand and kept equal by
//! [`default_values_render_what_deploy_renders_and_each_mode_its_overlay`]:
//! one object at a time, after removing only the labels Helm conventions
//! add. Generating one from the other was the alternative: templating makes
//! kustomize's overlays awkward to read, and kustomize cannot express the
//! chart's values; a comparison keeps both idiomatic and fails on any drift.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::deploy::{
    deploy_copy, kustomize, overlay_with, sts_guard_namespace, without_cert_manager,
    without_policy_objects,
};
use crate::support::control_plane::{
    ControlPlane, Output, helm_bin, random_suffix, repo_root, run, wait_for,
};
use crate::support::webhook::{Registration, WEBHOOK_LABEL, Webhook};
use crate::{Ns, Sts, Svc, accepts, assert_has, assert_lacks, cluster, file, kubectl, rejects};

const MODES: [&str; 3] = ["managed", "certManager", "existingSecret"];

/// The labels the chart adds to what deploy/ renders (Helm's conventions;
/// nothing selects on them). The drift comparison removes exactly these.
const HELM_LABELS: [&str; 4] = [
    "helm.sh/chart",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
];

const REQUESTS: &str = "sts_guard_admission_requests_total";

fn chart() -> String {
    repo_root().join("charts/sts-guard").display().to_string()
}

/// `helm ARGS...` with `--kubeconfig` of the shared control plane, and
/// Helm's cache, configuration and data in its work directory (not $HOME).
fn helm(args: &[&str]) -> Output {
    helm_in(&cluster().cp, args)
}

/// [`helm`] against the control plane `cp`.
fn helm_in(cp: &ControlPlane, args: &[&str]) -> Output {
    let bin = helm_bin().unwrap_or_else(|e| panic!("no helm binary: {e:#}"));
    let home = cp.work().join("helm-home");
    let mut cmd = cp.command(bin);
    cmd.args(args)
        .arg("--kubeconfig")
        .arg(&cp.kubeconfig)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    run(&mut cmd, None)
}

/// The flags selecting `mode`; existingSecret also needs its CA bundle.
fn mode_flags(mode: &str, ca: &Path) -> Vec<String> {
    let mut flags = vec!["--set".to_string(), format!("certificates.mode={mode}")];
    if mode == "existingSecret" {
        flags.push("--set-file".to_string());
        flags.push(format!(
            "certificates.existingSecret.caBundle={}",
            ca.display()
        ));
    }
    flags
}

/// `helm template sts-guard charts/sts-guard -n NAMESPACE FLAGS...`.
fn template(namespace: &str, flags: &[String]) -> String {
    let chart = chart();
    let mut args = vec!["template", "sts-guard", &chart, "-n", namespace];
    args.extend(flags.iter().map(String::as_str));
    let out = helm(&args);
    out.assert_exit(0);
    out.stdout
}

/// `Kind apiVersion namespace/name` of an object (namespace empty when
/// cluster-scoped).
fn identity(obj: &Value) -> String {
    let meta = &obj["metadata"];
    format!(
        "{} {} {}/{}",
        obj["kind"].as_str().unwrap_or("?"),
        obj["apiVersion"].as_str().unwrap_or("?"),
        meta["namespace"].as_str().unwrap_or(""),
        meta["name"].as_str().unwrap_or("?"),
    )
}

/// The objects of a multi-document YAML text by [`identity`], read as
/// kubectl reads YAML (1.1: `defaultMode: 0440` is 288), with Helm's labels
/// removed and caBundle without line breaks (the API decodes the base64
/// either way; kustomize wraps it).
fn objects(yaml: &str) -> BTreeMap<String, Value> {
    let mut options = serde_saphyr::Options::default();
    options.legacy_octal_numbers = true;
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(yaml, options)
        .unwrap_or_else(|e| panic!("not YAML: {e}\n{yaml}"));
    let mut by_id = BTreeMap::new();
    for mut obj in docs.into_iter().filter(|d| !d.is_null()) {
        for pointer in ["/metadata", "/spec/template/metadata"] {
            if let Some(Value::Object(meta)) = obj.pointer_mut(pointer)
                && let Some(Value::Object(labels)) = meta.get_mut("labels")
            {
                labels.retain(|k, _| !HELM_LABELS.contains(&k.as_str()));
                if labels.is_empty() {
                    meta.remove("labels");
                }
            }
        }
        if let Some(Value::Array(hooks)) = obj.get_mut("webhooks") {
            for hook in hooks {
                if let Some(Value::String(ca)) = hook.pointer_mut("/clientConfig/caBundle") {
                    ca.retain(|c| !c.is_whitespace());
                }
            }
        }
        integral_floats_as_integers(&mut obj);
        let id = identity(&obj);
        assert!(by_id.insert(id.clone(), obj).is_none(), "{id} twice");
    }
    by_id
}

/// `0.0` as `0`, as the API server stores either: the CRDs' `minimum:
/// 0.0` (as generated, in the chart's crds/) comes out of kustomize as `0`.
fn integral_floats_as_integers(v: &mut Value) {
    match v {
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap();
            if f.fract() == 0.0 && f.abs() < 1e15 {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

#[test]
#[ignore = "needs the e2e control plane and helm: tests/e2e/run.sh"]
fn default_values_render_what_deploy_renders_and_each_mode_its_overlay() {
    let deploy = deploy_copy();
    // The self-managed overlay's CA, given to the chart as its CA bundle.
    let ca = deploy.path().join("overlays/self-managed/certs/ca.crt");
    let audit_reports = vec!["--set".to_string(), "auditReports.enabled=true".to_string()];
    let prometheus_rule = vec![
        "--set".to_string(),
        "prometheusRule.enabled=true".to_string(),
    ];
    // The opt-ins deploy/ has as components, each in an overlay of the
    // copy as README says to write one.
    let policy_file = vec![
        "--set".to_string(),
        "policyConfigMap.enabled=true".to_string(),
        "--set".to_string(),
        "auditReports.enabled=true".to_string(),
    ];
    overlay_with(
        deploy.path(),
        "e2e-policy-file",
        &["../audit-reports"],
        &["../../components/policy-file"],
    );
    let editors = vec![
        "--set".to_string(),
        "roles.aggregateExemptionsToEdit=true".to_string(),
    ];
    overlay_with(
        deploy.path(),
        "e2e-editors",
        &["../../base"],
        &["../../components/exemptions-for-editors"],
    );
    // (what differs from the defaults, its flags, the deploy/ it must equal)
    let pairs = [
        // managed is the default: no flag at all.
        ("managed", Vec::new(), ""),
        (
            "certManager",
            mode_flags("certManager", &ca),
            "overlays/cert-manager",
        ),
        (
            "existingSecret",
            mode_flags("existingSecret", &ca),
            "overlays/self-managed",
        ),
        // The scheduled audit: managed certificates plus its CronJob,
        // ServiceAccount and RBAC.
        ("auditReports", audit_reports, "overlays/audit-reports"),
        // The alert rules: managed certificates plus the PrometheusRule
        // (deploy/prometheus/alerts.yaml).
        (
            "prometheusRule",
            prometheus_rule,
            "overlays/prometheus-rules",
        ),
        // The ConfigMap way, with the scheduled audit reading it too.
        ("policyConfigMap", policy_file, "overlays/e2e-policy-file"),
        // Exemption editing aggregated into admin and edit.
        ("aggregateExemptionsToEdit", editors, "overlays/e2e-editors"),
    ];
    assert_eq!(
        pairs.iter().map(|p| p.0).take(3).collect::<Vec<_>>(),
        MODES,
        "every mode has its pair"
    );
    for (mode, flags, overlay) in pairs {
        let rendered = kustomize(&deploy.path().join(overlay));
        rendered.assert_exit(0);
        let mut from_deploy = objects(&rendered.stdout);
        // With crds/: deploy/ lists the CRDs as resources.
        let mut flags = flags;
        flags.push("--include-crds".to_string());
        let from_chart = objects(&template("sts-guard", &flags));
        // Only deploy/ renders these, on purpose: the Namespace (Helm
        // installs into the release namespace, made by --create-namespace)
        // and, with your own certificates, the Secret (the chart's
        // existingSecret is one you create).
        let mut only_deploy = vec!["Namespace v1 /sts-guard"];
        if mode == "existingSecret" {
            only_deploy.push("Secret v1 sts-guard/sts-guard-tls");
        }
        for id in only_deploy {
            assert!(
                from_deploy.remove(id).is_some(),
                "deploy/{overlay} no longer renders {id}"
            );
        }
        let ids = |m: &BTreeMap<String, Value>| m.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            ids(&from_deploy),
            ids(&from_chart),
            "{mode}: the chart renders other objects than deploy/{overlay}"
        );
        // Helm installs crds/ as they are, untemplated, so without the
        // part-of label kustomize gives everything in deploy/.
        for (id, obj) in from_deploy.iter_mut() {
            if id.starts_with("CustomResourceDefinition ") {
                let meta = obj["metadata"].as_object_mut().unwrap();
                assert_eq!(
                    meta.remove("labels"),
                    Some(serde_json::json!({"app.kubernetes.io/part-of": "sts-guard"})),
                    "{id}"
                );
            }
        }
        for (id, want) in &from_deploy {
            let got = &from_chart[id];
            assert!(
                want == got,
                "{mode}: {id} differs from deploy/{overlay}\n--- deploy/{overlay}\n{}\n--- chart\n{}",
                pretty(want),
                pretty(got)
            );
        }
    }
}

#[test]
#[ignore = "needs the e2e control plane and helm: tests/e2e/run.sh"]
fn helm_lint_passes_in_every_mode_and_bad_values_fail_in_words() {
    // Chart version and appVersion (the default image tag) follow the crate.
    let meta: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(repo_root().join("charts/sts-guard/Chart.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        meta["version"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml version"
    );
    assert_eq!(
        meta["appVersion"],
        env!("CARGO_PKG_VERSION"),
        "Chart.yaml appVersion"
    );
    let ca = &cluster().webhook.ca;
    let chart = chart();
    for mode in MODES {
        let flags = mode_flags(mode, ca);
        let mut args = vec!["lint", "--strict", &chart];
        args.extend(flags.iter().map(String::as_str));
        let out = helm(&args);
        out.assert_exit(0);
        assert_has(&out.stdout, "1 chart(s) linted, 0 chart(s) failed");
    }
    for format in ["openreports", "wgpolicyk8s"] {
        let format = format!("auditReports.format={format}");
        let out = helm(&[
            "lint",
            "--strict",
            &chart,
            "--set",
            "auditReports.enabled=true",
            "--set",
            &format,
        ]);
        out.assert_exit(0);
        assert_has(&out.stdout, "1 chart(s) linted, 0 chart(s) failed");
    }
    // Bad values fail in words; a lookup deadline that fits renders.
    let template = |sets: &[&str]| {
        let mut args = vec!["template", "sts-guard", chart.as_str()];
        for set in sets {
            args.extend(["--set", set]);
        }
        helm(&args)
    };
    for (sets, refusal) in [
        (
            &[
                "auditReports.enabled=true",
                "auditReports.format=policyreport",
            ][..],
            r#"auditReports.format must be openreports or wgpolicyk8s, not "policyreport""#,
        ),
        (
            &["certificates.mode=selfSigned"][..],
            r#"certificates.mode must be managed, certManager or existingSecret, not "selfSigned""#,
        ),
        (
            &["certificates.mode=existingSecret"][..],
            "certificates.existingSecret.caBundle",
        ),
        // A lookup deadline the API server would not wait for.
        (
            &["lookupTimeoutSeconds=5"][..],
            "lookupTimeoutSeconds 5 leaves less than 1s of webhooks.validate.timeoutSeconds 5",
        ),
    ] {
        let out = template(sets);
        out.assert_exit(1);
        assert_has(&out.stderr, refusal);
    }
    template(&[
        "lookupTimeoutSeconds=5",
        "webhooks.validate.timeoutSeconds=6",
    ])
    .assert_exit(0);
}

/// Every optional value set to something other than its default.
const OPTIONAL_VALUES: &str = r#"
replicas: 3
image: {tag: 9.9.9, pullPolicy: Always, pullSecrets: [{name: regcred}]}
priorityClassName: system-cluster-critical
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: platform, effect: NoSchedule}]
affinity:
  nodeAffinity:
    requiredDuringSchedulingIgnoredDuringExecution:
      nodeSelectorTerms: [{matchExpressions: [{key: kubernetes.io/arch, operator: In, values: [amd64, arm64]}]}]
topologySpreadConstraints:
  - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule}
resources: {requests: {cpu: 100m, memory: 64Mi}, limits: {memory: 256Mi}}
commonLabels: {team: platform}
commonAnnotations: {example.com/owner: platform-team}
podLabels: {tier: admission}
podAnnotations: {example.com/note: chart}
webhooks:
  validate: {failurePolicy: Ignore, timeoutSeconds: 3}
  mutate: {timeoutSeconds: 2}
  excludeNamespaces: [batch]
  namespaceSelectorExpressions: [{key: team, operator: Exists}]
metrics: {port: 9100}
podDisruptionBudget: {minAvailable: 2}
policy: {mode: warn}
auditReports:
  enabled: true
  schedule: "0 * * * *"
  format: wgpolicyk8s
  resources: {requests: {cpu: 10m, memory: 48Mi}, limits: {memory: 512Mi}}
"#;

#[test]
#[ignore = "needs the e2e control plane and helm: tests/e2e/run.sh"]
fn every_mode_with_default_and_optional_values_is_accepted_by_the_api_server() {
    let cp = &cluster().cp;
    sts_guard_namespace();
    let dir = tempfile::tempdir().unwrap();
    let optional = dir.path().join("optional.yaml");
    std::fs::write(&optional, OPTIONAL_VALUES).unwrap();
    // The ConfigMap way takes the policy value as a map too: as the file.
    let flags = [
        "-f".to_string(),
        optional.display().to_string(),
        "--set".to_string(),
        "policyConfigMap.enabled=true".to_string(),
    ];
    let objs = objects(&template("sts-guard", &flags));
    assert_eq!(
        objs["ConfigMap v1 sts-guard/sts-guard-policy"]["data"]["policy.yaml"], "mode: warn\n",
        "policy as a map, in the ConfigMap"
    );
    assert!(!objs.contains_key("StatefulSetPolicy sts-guard.io/v1alpha1 /default"));
    for mode in MODES {
        for values in [None, Some(&optional)] {
            let mut flags = mode_flags(mode, &cluster().webhook.ca);
            if let Some(path) = values {
                flags.extend(["-f".to_string(), path.display().to_string()]);
            }
            let rendered = template("sts-guard", &flags);
            if mode == "certManager" {
                assert_has(&rendered, "kind: Certificate");
            }
            // cert-manager's kinds have no CRDs on this control plane, nor
            // (see without_policy_objects) sts-guard's; a release installs
            // its StatefulSetPolicy for real in the install tests.
            let core = without_policy_objects(&without_cert_manager(&rendered));
            let out = cp.kubectl_with_input(&["apply", "--dry-run=server", "-f", "-"], &core);
            out.assert_exit(0);
            assert_has(
                &out.stdout,
                "deployment.apps/sts-guard created (server dry run)",
            );
            assert_lacks(&out.stderr, "Warning");
            if values.is_some() {
                assert_optional_values_rendered(&objects(&rendered));
            }
        }
    }
}

/// What [`OPTIONAL_VALUES`] asks for is in the objects.
fn assert_optional_values_rendered(objs: &BTreeMap<String, Value>) {
    let deployment = &objs["Deployment apps/v1 sts-guard/sts-guard"];
    let pod = &deployment["spec"]["template"];
    let container = &pod["spec"]["containers"][0];
    let checks: [(&str, &Value, Value); 12] = [
        ("replicas", &deployment["spec"]["replicas"], 3.into()),
        (
            "image",
            &container["image"],
            "ghcr.io/sts-guard/sts-guard:9.9.9".into(),
        ),
        ("pullPolicy", &container["imagePullPolicy"], "Always".into()),
        (
            "pullSecrets",
            &pod["spec"]["imagePullSecrets"][0]["name"],
            "regcred".into(),
        ),
        (
            "priorityClassName",
            &pod["spec"]["priorityClassName"],
            "system-cluster-critical".into(),
        ),
        (
            "nodeSelector",
            &pod["spec"]["nodeSelector"]["kubernetes.io/os"],
            "linux".into(),
        ),
        (
            "tolerations",
            &pod["spec"]["tolerations"][0]["key"],
            "dedicated".into(),
        ),
        (
            "podLabels",
            &pod["metadata"]["labels"]["tier"],
            "admission".into(),
        ),
        (
            "commonLabels",
            &deployment["metadata"]["labels"]["team"],
            "platform".into(),
        ),
        (
            "metrics.port",
            &container["ports"][1]["containerPort"],
            9100.into(),
        ),
        (
            "podDisruptionBudget",
            &objs["PodDisruptionBudget policy/v1 sts-guard/sts-guard"]["spec"]["minAvailable"],
            2.into(),
        ),
        (
            "policy as a map",
            &objs["StatefulSetPolicy sts-guard.io/v1alpha1 /default"]["spec"],
            serde_json::json!({"mode": "warn"}),
        ),
    ];
    for (what, got, want) in checks {
        assert_eq!(got, &want, "{what}");
    }
    let cronjob = &objs["CronJob batch/v1 sts-guard/sts-guard-audit"];
    let audit_pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    let audit = &audit_pod["containers"][0];
    assert_eq!(cronjob["spec"]["schedule"], "0 * * * *");
    assert_eq!(
        audit["args"],
        serde_json::json!(["audit", "--report", "wgpolicyk8s", "--exit-zero"])
    );
    assert_eq!(audit["resources"]["limits"]["memory"], "512Mi");
    // The webhook's image, registry credentials and scheduling.
    assert_eq!(audit["image"], container["image"]);
    assert_eq!(audit["imagePullPolicy"], "Always");
    assert_eq!(
        audit_pod["imagePullSecrets"],
        pod["spec"]["imagePullSecrets"]
    );
    assert_eq!(audit_pod["nodeSelector"], pod["spec"]["nodeSelector"]);
    assert_eq!(audit_pod["tolerations"], pod["spec"]["tolerations"]);
    assert_eq!(cronjob["metadata"]["labels"]["team"], "platform");
    // Only the reports of the chosen format.
    let rules =
        objs["ClusterRole rbac.authorization.k8s.io/v1 /sts-guard-audit"]["rules"].to_string();
    assert_has(
        &rules,
        r#""apiGroups":["wgpolicyk8s.io"],"resources":["policyreports"]"#,
    );
    assert_lacks(&rules, "openreports.io");
    // A constraint without a labelSelector gets the pods' own.
    let spread = &pod["spec"]["topologySpreadConstraints"];
    assert_eq!(spread.as_array().map(Vec::len), Some(1), "{spread}");
    assert_eq!(
        spread[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "webhook"
    );
    let validating =
        &objs["ValidatingWebhookConfiguration admissionregistration.k8s.io/v1 /sts-guard"];
    let hook = &validating["webhooks"][0];
    assert_eq!(hook["failurePolicy"], "Ignore");
    assert_eq!(hook["timeoutSeconds"], 3);
    let exprs = hook["namespaceSelector"]["matchExpressions"].to_string();
    assert_has(&exprs, r#""batch""#);
    assert_has(&exprs, r#"{"key":"team","operator":"Exists"}"#);
    assert_eq!(
        validating["metadata"]["annotations"]["example.com/owner"],
        "platform-team"
    );
}

#[test]
#[ignore = "needs the e2e control plane and helm: tests/e2e/run.sh"]
fn the_service_monitor_scrapes_the_services_metrics_port() {
    let flags = [
        "--set".to_string(),
        "metrics.serviceMonitor.enabled=true".to_string(),
        "--set".to_string(),
        "metrics.serviceMonitor.labels.release=prometheus".to_string(),
    ];
    let objs = objects(&template("sts-guard", &flags));
    let monitor = &objs["ServiceMonitor monitoring.coreos.com/v1 sts-guard/sts-guard"];
    let service = &objs["Service v1 sts-guard/sts-guard"];
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"]
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(service["spec"]["ports"][1]["name"], "metrics");
    // Off by default: the operator's CRDs are often absent.
    assert!(
        !objects(&template("sts-guard", &[]))
            .keys()
            .any(|id| id.starts_with("ServiceMonitor")),
        "a ServiceMonitor by default"
    );
}

/// `kind/name` and `-n NAMESPACE` for kubectl, of a rendered object.
fn kubectl_ref(obj: &Value) -> (String, Vec<String>) {
    let meta = &obj["metadata"];
    let reference = format!(
        "{}/{}",
        obj["kind"].as_str().unwrap(),
        meta["name"].as_str().unwrap()
    );
    let namespace = meta["namespace"]
        .as_str()
        .map(|ns| vec!["-n".to_string(), ns.to_string()])
        .unwrap_or_default();
    (reference, namespace)
}

/// The rendered object `obj` is stored, labelled as release `release`'s.
fn assert_stored_with_release_label(cp: &ControlPlane, obj: &Value, release: &str) {
    let (reference, namespace) = kubectl_ref(obj);
    let mut args = vec!["get", reference.as_str(), "-o", "json"];
    args.extend(namespace.iter().map(String::as_str));
    let out = cp.kubectl(&args);
    out.assert_exit(0);
    let stored: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        stored["metadata"]["labels"]["app.kubernetes.io/instance"], release,
        "{reference}"
    );
}

/// The caBundle of the first webhook of configuration `kind/name`.
fn ca_bundle(cp: &ControlPlane, reference: &str) -> String {
    let out = cp.kubectl(&[
        "get",
        reference,
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle}",
    ]);
    out.assert_exit(0);
    out.stdout
}

/// A namespace made in a control plane of a test's own.
struct Namespaced {
    name: String,
}

impl Namespaced {
    /// A new namespace `<prefix>-<random>` in `cp`.
    fn create(cp: &ControlPlane, prefix: &str) -> Namespaced {
        let name = format!("{prefix}-{}", random_suffix(6));
        cp.kubectl(&["create", "namespace", &name]).assert_exit(0);
        Namespaced { name }
    }
}

/// The base64 of the file at `path`, on one line (a caBundle).
fn base64(path: &Path) -> String {
    let out = run(
        std::process::Command::new("base64").arg("-w0").arg(path),
        None,
    );
    out.assert_exit(0);
    out.stdout
}

#[test]
#[ignore = "needs the e2e control plane and helm: tests/e2e/run.sh"]
fn install_upgrade_and_uninstall_leave_nothing_behind() {
    // A control plane of its own: the release installs the cluster-wide
    // StatefulSetPolicy/default, which other tests' webhooks would read.
    let cp = ControlPlane::start().unwrap();
    let ns = Namespaced::create(&cp, "helm");
    // The release is named like its namespace: its objects are
    // "<release>-sts-guard", cluster-scoped ones included.
    let release = ns.name.clone();
    let fullname = format!("{release}-sts-guard");
    let chart = chart();
    let dir = tempfile::tempdir().unwrap();
    // The installed webhooks point at a Service whose pods never run (this
    // control plane has no kubelet): they must match no namespace, or they
    // would fail every other test's StatefulSet writes closed.
    let isolated = dir.path().join("isolated.yaml");
    std::fs::write(
        &isolated,
        format!(
            "webhooks:\n  namespaceSelectorExpressions:\n    - {{key: e2e.sts-guard.io/release, operator: In, values: [{release}]}}\n"
        ),
    )
    .unwrap();
    let isolated = isolated.display().to_string();
    let base = ["-n", &ns.name, "-f", &isolated];

    let mut args = vec!["install", &release, &chart];
    args.extend(base);
    helm_in(&cp, &args).assert_exit(0);
    let manifest = helm_in(&cp, &["get", "manifest", &release, "-n", &ns.name]);
    manifest.assert_exit(0);
    let created = objects(&manifest.stdout);
    let kinds: std::collections::BTreeSet<&str> = created
        .values()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "Deployment",
            "MutatingWebhookConfiguration",
            "PodDisruptionBudget",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "StatefulSetPolicy",
            "ValidatingWebhookConfiguration",
        ],
        "kinds of the default release"
    );
    assert_eq!(created.len(), 17, "{:#?}", created.keys());
    for obj in created.values() {
        assert_stored_with_release_label(&cp, obj, &release);
    }

    // Managed certificates: the running pod writes the CA into both
    // caBundles. No pod runs here, so do what it does: update them.
    let configurations = [
        format!("validatingwebhookconfiguration/{fullname}"),
        format!("mutatingwebhookconfiguration/{fullname}"),
    ];
    // Any CA will do: the control plane's own.
    let injected = base64(&cp.work().join("pki/ca.crt"));
    assert!(!injected.is_empty(), "a caBundle to inject");
    for reference in &configurations {
        assert_eq!(
            ca_bundle(&cp, reference),
            "",
            "{reference} rendered a caBundle"
        );
        let patch = format!(
            r#"[{{"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "{injected}"}}]"#
        );
        cp.kubectl(&["patch", reference, "--type=json", "-p", &patch])
            .assert_exit(0);
    }

    // An upgrade changing the policy and turning the scheduled audit on:
    // StatefulSetPolicy/default follows, the audit's four objects appear, the injected
    // caBundles stay (Helm's three-way merge leaves fields it never
    // rendered alone).
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "policy: |\n  mode: warn\nauditReports:\n  enabled: true\n",
    )
    .unwrap();
    let policy = policy.display().to_string();
    let mut args = vec!["upgrade", &release, &chart];
    args.extend(base);
    args.extend(["-f", &policy]);
    helm_in(&cp, &args).assert_exit(0);
    let out = cp.kubectl(&["get", "stspolicy", "default", "-o", "jsonpath={.spec}"]);
    out.assert_exit(0);
    assert_eq!(out.stdout, r#"{"mode":"warn"}"#);
    for reference in &configurations {
        assert_eq!(
            ca_bundle(&cp, reference),
            injected,
            "{reference} after upgrade"
        );
    }
    let status = helm_in(&cp, &["status", &release, "-n", &ns.name, "-o", "json"]);
    status.assert_exit(0);
    let status: Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(status["version"], 2);
    assert_eq!(status["info"]["status"], "deployed");
    let manifest = helm_in(&cp, &["get", "manifest", &release, "-n", &ns.name]);
    manifest.assert_exit(0);
    let upgraded = objects(&manifest.stdout);
    let added: Vec<&str> = upgraded
        .keys()
        .filter(|id| !created.contains_key(*id))
        .map(String::as_str)
        .collect();
    let audit = format!("{fullname}-audit");
    let ns_name = &ns.name;
    assert_eq!(
        added,
        [
            format!("ClusterRole rbac.authorization.k8s.io/v1 /{audit}"),
            format!("ClusterRoleBinding rbac.authorization.k8s.io/v1 /{audit}"),
            format!("CronJob batch/v1 {ns_name}/{audit}"),
            format!("ServiceAccount v1 {ns_name}/{audit}"),
        ],
        "objects the scheduled audit adds"
    );
    assert!(
        created.keys().all(|id| upgraded.contains_key(id)),
        "an object of the install gone after the upgrade"
    );
    for id in &added {
        assert_stored_with_release_label(&cp, &upgraded[*id], &release);
    }
    let out = cp.kubectl(&[
        "get",
        "cronjob",
        "-n",
        &ns.name,
        &audit,
        "-o",
        "jsonpath={.spec.jobTemplate.spec.template.spec.containers[0].env}",
    ]);
    out.assert_exit(0);
    // The audit's policy: the release's StatefulSetPolicy and exemption
    // objects, read from the cluster as the webhook reads them (no file).
    assert_eq!(
        out.stdout,
        r#"[{"name":"STS_GUARD_PLATFORM_NAMESPACE","valueFrom":{"fieldRef":{"apiVersion":"v1","fieldPath":"metadata.namespace"}}}]"#,
        "the audit's policy"
    );

    helm_in(&cp, &["uninstall", &release, "-n", &ns.name, "--wait"]).assert_exit(0);
    for obj in upgraded.values() {
        let (reference, namespace) = kubectl_ref(obj);
        let mut args = vec![
            "get",
            reference.as_str(),
            "--ignore-not-found",
            "-o",
            "name",
        ];
        args.extend(namespace.iter().map(String::as_str));
        let out = cp.kubectl(&args);
        out.assert_exit(0);
        assert_eq!(out.stdout, "", "{reference} left behind");
    }
    // Nothing else of the release either, in any namespace, nor Helm's
    // own release records.
    let every_kind = "clusterroles,clusterrolebindings,configmaps,cronjobs,deployments,\
        jobs,mutatingwebhookconfigurations,poddisruptionbudgets,roles,rolebindings,\
        services,serviceaccounts,validatingwebhookconfigurations,secrets,\
        statefulsetpolicies,statefulsetexemptions";
    let selector = format!("app.kubernetes.io/instance={release}");
    let out = cp.kubectl(&["get", every_kind, "-A", "-l", &selector, "-o", "name"]);
    out.assert_exit(0);
    assert_eq!(out.stdout, "", "objects labelled {selector} left behind");
    let out = cp.kubectl(&[
        "get",
        "secrets",
        "-n",
        &ns.name,
        "-l",
        "owner=helm",
        "-o",
        "name",
    ]);
    out.assert_exit(0);
    assert_eq!(out.stdout, "", "Helm release records left behind");
    // Helm never deletes what crds/ installed: the CRDs, and so any
    // exemption objects, outlive the release.
    cp.kubectl(&["get", "crd", "statefulsetpolicies.sts-guard.io"])
        .assert_exit(0);
}

/// A namespace owner's exemption, applied with kubectl (not by Helm).
const USER_EXEMPTION: &str = "\
apiVersion: sts-guard.io/v1alpha1
kind: StatefulSetExemption
metadata:
  name: web-liveness
  namespace: shop
spec:
  statefulSet: web
  rules: [liveness-probe]
  reason: the liveness probe restarted web under load; reworked in SHOP-42
  ticket: SHOP-42
";

#[test]
#[ignore = "needs the e2e control plane and helm: tests/e2e/run.sh"]
fn helm_upgrade_keeps_user_made_exemptions_and_they_stay_honoured() {
    // A control plane of its own: the release installs the cluster-wide
    // StatefulSetPolicy/default.
    let cp = ControlPlane::start().unwrap();
    let chart = chart();
    // The release in namespace sts-guard: the platform namespace of the
    // webhook started below (its default), as of the release's pods.
    for ns in ["sts-guard", "shop"] {
        cp.kubectl(&["create", "namespace", ns]).assert_exit(0);
    }
    let dir = tempfile::tempdir().unwrap();
    let values = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    // The release's webhooks match no namespace: its pods never run here
    // (no kubelet). The webhook this test starts serves in their place,
    // from the cluster's policy objects as the pods would.
    let isolated = values(
        "isolated.yaml",
        "webhooks:\n  namespaceSelectorExpressions:\n    - {key: e2e.sts-guard.io/release, operator: In, values: [guard]}\n",
    );
    let enforce = values(
        "enforce.yaml",
        "policy: |\n  mode: enforce\n  namespaces:\n    shop: {allowExemptionObjects: true}\n",
    );
    let warn = values(
        "warn.yaml",
        "policy: |\n  mode: warn\n  namespaces:\n    shop: {allowExemptionObjects: true}\n",
    );
    let release = |verb: &str, policy: &str| {
        helm_in(
            &cp,
            &[
                verb,
                "guard",
                &chart,
                "-n",
                "sts-guard",
                "-f",
                &isolated,
                "-f",
                policy,
            ],
        )
        .assert_exit(0);
    };
    release("install", &enforce);
    let webhook = Webhook::start(&cp, "sts-guard", None).unwrap();
    webhook.register(&cp, &Registration::shipped()).unwrap();
    let dry_run = |name: &str| {
        cp.kubectl_with_input(
            &["apply", "--dry-run=server", "-n", "shop", "-f", "-"],
            &Sts::new(name).no_liveness().yaml(),
        )
    };
    // Neither StatefulSet has a liveness probe: enforce denies both.
    for name in ["web", "db"] {
        let out = dry_run(name);
        out.assert_exit(1);
        assert_has(&out.stderr, "[liveness-probe]");
    }

    cp.kubectl_with_input(&["apply", "-f", "-"], USER_EXEMPTION)
        .assert_exit(0);
    wait_for(
        "the exemption to be honoured",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || Ok(dry_run("web").code == 0),
    )
    .unwrap();
    let honoured = || {
        let out = dry_run("web");
        out.assert_exit(0);
        assert_lacks(&out.stderr, "liveness-probe");
    };
    honoured();
    dry_run("db").assert_exit(1);
    let exemption = || {
        let out = cp.kubectl(&[
            "get",
            "stsexempt",
            "-n",
            "shop",
            "web-liveness",
            "-o",
            "json",
        ]);
        out.assert_exit(0);
        serde_json::from_str::<Value>(&out.stdout).unwrap()
    };
    let before = exemption();

    // An upgrade with a changed value: warn instead of enforce.
    release("upgrade", &warn);
    wait_for(
        "the upgraded policy",
        Duration::from_secs(10),
        Duration::from_millis(200),
        || Ok(dry_run("db").code == 0),
    )
    .unwrap();
    let out = dry_run("db");
    assert_has(&out.stderr, "Warning: [liveness-probe]");
    // The exemption is the same object, its spec untouched (its status is
    // sts-guard's to write), and still honoured.
    let after = exemption();
    assert_eq!(after["metadata"]["uid"], before["metadata"]["uid"]);
    assert_eq!(after["spec"], before["spec"]);
    honoured();
    // Not the release's: Helm neither owns it nor would delete it.
    let manifest = helm_in(&cp, &["get", "manifest", "guard", "-n", "sts-guard"]);
    manifest.assert_exit(0);
    assert!(
        !objects(&manifest.stdout)
            .keys()
            .any(|id| id.starts_with("StatefulSetExemption ")),
        "an exemption in the release"
    );
    cp.stop_process(webhook.pid);
}

#[tokio::test]
#[ignore = "needs the e2e control plane and helm: tests/e2e/run.sh"]
async fn the_charts_webhook_configurations_deny_and_mutate_through_the_api_server() {
    let cp = &cluster().cp;
    let tag = format!("chart-{}", random_suffix(5));
    // Rendered for a release namespace of this test's: the chart then
    // excludes that namespace, and not `sts-guard`, which the shipped
    // registration of the shared webhook excludes. StatefulSets in
    // namespace sts-guard are so reviewed through the chart's
    // configurations alone.
    let home = Ns::fresh("chart-home").await;
    let rendered = template(
        &home.name,
        &[
            "--show-only".to_string(),
            "templates/webhooks.yaml".to_string(),
        ],
    );
    let webhook = Webhook::start(cp, &tag, None).unwrap();
    let registration = Registration::only_labelled(&tag).with_manifest(&rendered);
    webhook.register(cp, &registration).unwrap();
    sts_guard_namespace();
    let ns = Ns::existing("sts-guard").await;

    let denied = |w: &Webhook| {
        w.metric(
            REQUESTS,
            &[r#"endpoint="validate""#, r#"decision="denied""#],
        )
    };
    let before = denied(&webhook);
    let broken = Sts::new(&tag).no_liveness().label(WEBHOOK_LABEL, &tag);
    let stderr = rejects(&ns, &file(&[Svc::new(&tag).yaml(), broken.yaml()]));
    assert_has(&stderr, "[liveness-probe]");
    assert_eq!(
        denied(&webhook),
        before + 1.0,
        "denials by this test's webhook"
    );
    assert!(ns.statefulset(&tag).await.is_none(), "stored anyway");

    let mutated =
        |w: &Webhook| w.metric(REQUESTS, &[r#"endpoint="mutate""#, r#"decision="mutated""#]);
    let before = mutated(&webhook);
    let parallel = format!("{tag}-parallel");
    accepts(
        &ns,
        &file(&[
            Svc::new(&parallel).yaml(),
            Sts::new(&parallel)
                .annotate("sts-guard.io/parallel", "true")
                .label(WEBHOOK_LABEL, &tag)
                .yaml(),
        ]),
    );
    let stored = ns.statefulset(&parallel).await.expect("stored");
    assert_eq!(
        stored.spec.unwrap().pod_management_policy.as_deref(),
        Some("Parallel")
    );
    assert!(
        mutated(&webhook) > before,
        "no mutation by this test's webhook"
    );

    for reference in [
        format!("statefulset/{parallel}"),
        format!("service/{parallel}"),
        format!("service/{tag}"),
    ] {
        kubectl(&["delete", "-n", "sts-guard", &reference]).assert_exit(0);
    }
    let names = registration.names();
    cp.kubectl(&["delete", &names[0], &names[1]]).assert_exit(0);
    cp.stop_process(webhook.pid);
}
