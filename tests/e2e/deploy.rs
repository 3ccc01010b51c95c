//! deploy/: every overlay renders, and every object it renders is accepted
//! by this API server (schema, defaulting, admission, Pod Security).

use std::path::Path;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::support::control_plane::{ControlPlane, repo_root, run, sts_guard_bin};
use crate::{assert_has, assert_lacks, cluster, kubectl};

const OVERLAYS: [&str; 4] = [
    "",
    "overlays/self-managed",
    "overlays/cert-manager",
    "overlays/audit-reports",
];

/// The overlays that keep the base's managed certificates.
const MANAGED: [&str; 2] = ["", "overlays/audit-reports"];

/// A copy of deploy/ with certificates for the self-managed overlay (which
/// reads them from overlays/self-managed/certs).
pub(crate) fn deploy_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo_root().join("deploy"), dir.path());
    let certs = dir.path().join("overlays/self-managed/certs");
    // Fresh ones: a CA generated there in the checkout (certs/README.md
    // says how) is not the test's, and `certs --out` never overwrites one.
    let _ = std::fs::remove_dir_all(&certs);
    let out = run(
        std::process::Command::new(sts_guard_bin())
            .args(["certs", "--dns", "sts-guard.sts-guard.svc"])
            .args(["--dns", "sts-guard.sts-guard.svc.cluster.local", "--out"])
            .arg(&certs),
        None,
    );
    out.assert_exit(0);
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

pub(crate) fn kustomize(dir: &Path) -> crate::support::control_plane::Output {
    kubectl(&["kustomize", dir.to_str().unwrap()])
}

/// Namespace sts-guard (Pod Security `restricted` enforced, as deploy/
/// labels it) and its ServiceAccount, for real, so namespaced objects and
/// pods can be dry-run into it. Once per run: two tests share it.
pub(crate) fn sts_guard_namespace() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let ns = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": "sts-guard",
                "labels": {"pod-security.kubernetes.io/enforce": "restricted"}
            }
        });
        cluster()
            .cp
            .kubectl_with_input(&["apply", "-f", "-"], &ns.to_string())
            .assert_exit(0);
        kubectl(&[
            "create",
            "serviceaccount",
            "-n",
            "sts-guard",
            "sts-guard",
            "--save-config",
        ])
        .assert_exit(0);
    });
}

/// The documents of a rendered overlay without the policy objects' CRDs
/// and objects. The shared cluster does not get the CRDs: a CRD appearing
/// mid-run is a moment other tests' `sts-guard audit` would meet half
/// served. They and StatefulSetPolicy/default are applied for real on a
/// control plane of their own instead
/// ([`readme_install_creates_the_policy_and_editors_may_exempt_only_when_opted_in`]).
pub(crate) fn without_policy_objects(rendered: &str) -> String {
    documents_without(rendered, |d| {
        d.lines().any(|l| {
            l == "kind: CustomResourceDefinition" || l.starts_with("apiVersion: sts-guard.io/")
        })
    })
}

/// The documents of a rendered overlay, without cert-manager's kinds
/// (this control plane has not their CRDs).
pub(crate) fn without_cert_manager(rendered: &str) -> String {
    documents_without(rendered, |d| {
        d.lines()
            .any(|l| l.starts_with("apiVersion: cert-manager.io/"))
    })
}

fn documents_without(rendered: &str, drop: impl Fn(&str) -> bool) -> String {
    let mut docs = vec![String::new()];
    for line in rendered.lines() {
        if line == "---" {
            docs.push(String::new());
        } else {
            let doc = docs.last_mut().unwrap();
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.retain(|d| !drop(d));
    docs.join("---\n")
}

#[test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
fn every_deploy_overlay_renders_with_kustomize() {
    let deploy = deploy_copy();
    for overlay in OVERLAYS {
        let out = kustomize(&deploy.path().join(overlay));
        out.assert_exit(0);
        assert_has(&out.stdout, "kind: Deployment");
        // The policy is StatefulSetPolicy/default, shipped with its CRDs;
        // the pods read no file and know their platform namespace.
        assert_has(&out.stdout, "name: statefulsetpolicies.sts-guard.io\n");
        assert_has(&out.stdout, "name: statefulsetexemptions.sts-guard.io\n");
        assert_has(&out.stdout, "kind: StatefulSetPolicy\nmetadata:\n");
        assert_has(&out.stdout, "name: STS_GUARD_PLATFORM_NAMESPACE\n");
        assert_lacks(&out.stdout, "STS_GUARD_CONFIG");
        assert_lacks(&out.stdout, "sts-guard-policy\n");
        // Exemption editing is not aggregated into admin/edit unless asked.
        assert_lacks(&out.stdout, "aggregate-to-edit");
        if MANAGED.contains(&overlay) {
            // The base manages its own certificates: nothing to mount.
            assert_has(&out.stdout, "STS_GUARD_TLS_SECRET");
            assert_has(&out.stdout, "name: sts-guard-certificates");
            assert_lacks(&out.stdout, "STS_GUARD_CERT\n");
            assert_lacks(&out.stdout, "secretName: sts-guard-tls");
        } else {
            // Files from a Secret, and none of the managed mode's RBAC.
            assert_has(&out.stdout, "name: STS_GUARD_CERT\n");
            assert_has(&out.stdout, "secretName: sts-guard-tls");
            assert_lacks(&out.stdout, "STS_GUARD_TLS_SECRET");
            assert_lacks(&out.stdout, "sts-guard-certificates");
        }
    }
}

#[test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
fn every_deploy_overlay_is_accepted_by_the_api_server() {
    let deploy = deploy_copy();
    sts_guard_namespace();
    for overlay in OVERLAYS {
        let rendered = kustomize(&deploy.path().join(overlay));
        rendered.assert_exit(0);
        assert_has(&rendered.stdout, "kind: CustomResourceDefinition");
        let core = without_policy_objects(&without_cert_manager(&rendered.stdout));
        let out = cluster()
            .cp
            .kubectl_with_input(&["apply", "--dry-run=server", "-f", "-"], &core);
        out.assert_exit(0);
        assert_has(
            &out.stdout,
            "deployment.apps/sts-guard created (server dry run)",
        );
        assert_lacks(&out.stderr, "Warning");
    }
}

#[test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
fn the_deployments_pod_passes_pod_security_restricted() {
    // Deployments only warn about Pod Security; a Pod of the same template
    // is what the restricted namespace really enforces.
    let deploy = deploy_copy();
    sts_guard_namespace();
    let rendered = kustomize(&deploy.path().join("overlays/self-managed"));
    rendered.assert_exit(0);
    // kubectl maps every kind it reads: not the policy objects' here.
    let objects = cluster().cp.kubectl_with_input(
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        &without_policy_objects(&rendered.stdout),
    );
    objects.assert_exit(0);
    let deployment = serde_json::Deserializer::from_str(&objects.stdout)
        .into_iter::<Value>()
        .map(Result::unwrap)
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment");
    let template = &deployment["spec"]["template"];
    let pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "sts-guard-pss",
            "namespace": "sts-guard",
            "labels": template["metadata"]["labels"],
        },
        "spec": template["spec"],
    });
    let out = cluster()
        .cp
        .kubectl_with_input(&["apply", "--dry-run=server", "-f", "-"], &pod.to_string());
    out.assert_exit(0);
    assert_lacks(&out.stderr, "violate");
}

/// An overlay `overlays/<name>` in the copy `deploy`: `resources` plus the
/// opt-in `components`, as README tells users to write one.
pub(crate) fn overlay_with(
    deploy: &Path,
    name: &str,
    resources: &[&str],
    components: &[&str],
) -> std::path::PathBuf {
    let dir = deploy.join("overlays").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|i| format!("  - {i}\n"))
            .collect::<String>()
    };
    std::fs::write(
        dir.join("kustomization.yaml"),
        format!(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n\
             resources:\n{}components:\n{}",
            list(resources),
            list(components)
        ),
    )
    .unwrap();
    dir
}

#[test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
fn the_opt_in_components_render_the_policy_file_and_aggregated_exemption_editing() {
    let deploy = deploy_copy();
    let dir = overlay_with(
        deploy.path(),
        "opt-in",
        &["../audit-reports"],
        &[
            "../../components/policy-file",
            "../../components/exemptions-for-editors",
        ],
    );
    let out = kustomize(&dir);
    out.assert_exit(0);
    let objects = cluster().cp.kubectl_with_input(
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        &out.stdout,
    );
    objects.assert_exit(0);
    let objects: Vec<Value> = serde_json::Deserializer::from_str(&objects.stdout)
        .into_iter::<Value>()
        .map(Result::unwrap)
        .collect();
    let find = |kind: &str, name: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
    };
    // The file instead of the object: ConfigMap, --config, the volume; no
    // StatefulSetPolicy (it would be ignored), the CRDs stay (exemption
    // objects are still watched).
    assert!(find("StatefulSetPolicy", "default").is_none());
    assert!(
        find(
            "CustomResourceDefinition",
            "statefulsetexemptions.sts-guard.io"
        )
        .is_some()
    );
    let configmap = find("ConfigMap", "sts-guard-policy").expect("the policy ConfigMap");
    assert_has(
        configmap["data"]["policy.yaml"].as_str().unwrap(),
        "mode: audit\n",
    );
    let deployment = find("Deployment", "sts-guard").unwrap();
    let cronjob = find("CronJob", "sts-guard-audit").unwrap();
    for pod in [
        &deployment["spec"]["template"]["spec"],
        &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"],
    ] {
        let container = &pod["containers"][0];
        let env = container["env"].to_string();
        assert_has(
            &env,
            r#"{"name":"STS_GUARD_CONFIG","value":"/etc/sts-guard/policy/policy.yaml"}"#,
        );
        assert_has(&env, "STS_GUARD_PLATFORM_NAMESPACE");
        assert_eq!(
            container["volumeMounts"][0]["mountPath"],
            "/etc/sts-guard/policy"
        );
        assert_eq!(pod["volumes"][0]["configMap"]["name"], "sts-guard-policy");
    }
    let editor = find("ClusterRole", "sts-guard-exemption-editor").unwrap();
    for to in ["admin", "edit"] {
        assert_eq!(
            editor["metadata"]["labels"][format!("rbac.authorization.k8s.io/aggregate-to-{to}")],
            "true",
            "aggregated to {to}"
        );
    }
}

/// README's install, run line by line from its `sh` block under
/// "## Install it in a cluster" (in the repository's root), except
/// `rollout status`: no kubelet here, so no pod ever becomes ready.
fn readme_install(cp: &ControlPlane) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let section = &readme[readme
        .find("## Install it in a cluster")
        .expect("the install section")..];
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block");
    let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.first().copied(),
        Some("kubectl apply -f deploy/base/crds.yaml"),
        "README installs the CRDs first"
    );
    let mut stdout = String::new();
    for line in lines {
        if line.contains("rollout status") {
            continue;
        }
        let mut cmd = cp.command("sh");
        cmd.args(["-c", line]).current_dir(repo_root());
        let out = run(&mut cmd, None);
        out.assert_exit(0);
        assert_lacks(&out.stderr, "Warning");
        stdout.push_str(&out.stdout);
    }
    stdout
}

/// The union of the rules of the ClusterRoles matching the aggregationRule
/// of ClusterRole `name`, written into it: what kube-controller-manager's
/// clusterrole-aggregation controller does (this control plane runs no
/// controller-manager). The API server's own RBAC authorizer then decides.
fn aggregate(cp: &ControlPlane, name: &str) {
    let get = |args: &[&str]| -> Value {
        let out = cp.kubectl(args);
        out.assert_exit(0);
        serde_json::from_str(&out.stdout).unwrap()
    };
    let role = get(&["get", "clusterrole", name, "-o", "json"]);
    let mut rules = Vec::new();
    for selector in role["aggregationRule"]["clusterRoleSelectors"]
        .as_array()
        .expect("an aggregated ClusterRole")
    {
        let labels: Vec<String> = selector["matchLabels"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
            .collect();
        let matching = get(&["get", "clusterroles", "-l", &labels.join(","), "-o", "json"]);
        for source in matching["items"].as_array().unwrap() {
            if source["metadata"]["name"] != name {
                rules.extend(source["rules"].as_array().cloned().unwrap_or_default());
            }
        }
    }
    let patch = json!({"rules": rules}).to_string();
    cp.kubectl(&["patch", "clusterrole", name, "--type=merge", "-p", &patch])
        .assert_exit(0);
}

/// `kubectl auth can-i VERB RESOURCE --as USER [-n NS]`: yes or no.
fn can_i(cp: &ControlPlane, user: &str, verb: &str, resource: &str, ns: Option<&str>) -> bool {
    let mut args = vec!["auth", "can-i", verb, resource, "--as", user];
    if let Some(ns) = ns {
        args.extend(["-n", ns]);
    }
    let out = cp.kubectl(&args);
    match out.stdout.trim() {
        "yes" => true,
        "no" => false,
        _ => panic!("kubectl auth can-i: {out}"),
    }
}

const EXEMPTIONS: &str = "statefulsetexemptions.sts-guard.io";
const POLICIES: &str = "statefulsetpolicies.sts-guard.io";

#[test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
fn readme_install_creates_the_policy_and_editors_may_exempt_only_when_opted_in() {
    // A control plane of its own: this installs deploy/ for real (its
    // webhook configurations, StatefulSetPolicy/default), which would
    // replace the shared cluster's registration and policy object.
    let cp = ControlPlane::start().unwrap();
    // Why README installs the CRDs first: on a fresh cluster one apply
    // of a CRD and an object of it refuses the object.
    let out = cp.kubectl(&["apply", "-k", repo_root().join("deploy").to_str().unwrap()]);
    out.assert_exit(1);
    assert_has(&out.stderr, "ensure CRDs are installed first");
    let out = readme_install(&cp);
    assert_has(&out, "statefulsetpolicy.sts-guard.io/default created");
    // Twice: an upgrade is the same commands, and changes nothing here.
    let out = readme_install(&cp);
    assert_has(&out, "statefulsetpolicy.sts-guard.io/default unchanged");
    let out = cp.kubectl(&["get", "stspolicy", "default", "-o", "jsonpath={.spec.mode}"]);
    out.assert_exit(0);
    assert_eq!(out.stdout, "audit", "deploy/ ships audit mode");

    // alice may edit namespace shop; bob is the platform team.
    cp.kubectl(&["create", "namespace", "shop"]).assert_exit(0);
    cp.kubectl(&[
        "create",
        "rolebinding",
        "alice-edit",
        "-n",
        "shop",
        "--clusterrole=edit",
        "--user=alice",
    ])
    .assert_exit(0);
    cp.kubectl(&[
        "create",
        "clusterrolebinding",
        "bob-policy",
        "--clusterrole=sts-guard-policy-editor",
        "--user=bob",
    ])
    .assert_exit(0);
    let aggregate_all = || {
        // view first: edit aggregates view, admin aggregates edit.
        for role in ["view", "edit", "admin"] {
            aggregate(&cp, role);
        }
    };
    aggregate_all();
    let alice = |verb: &str, resource: &str| can_i(&cp, "alice", verb, resource, Some("shop"));
    // Without the opt-in: alice sees exemptions (view), makes none.
    assert!(alice("list", EXEMPTIONS));
    assert!(!alice("create", EXEMPTIONS));
    assert!(!alice("delete", EXEMPTIONS));
    let exemption = "apiVersion: sts-guard.io/v1alpha1\nkind: StatefulSetExemption\n\
        metadata: {name: web, namespace: shop}\n\
        spec: {statefulSet: web, rules: [headless-service], reason: e2e}\n";
    let out = cp.kubectl_with_input(&["apply", "--as", "alice", "-f", "-"], exemption);
    out.assert_exit(1);
    assert_has(&out.stderr, "forbidden");

    // With it (components/exemptions-for-editors in an overlay).
    let deploy = deploy_copy();
    let dir = overlay_with(
        deploy.path(),
        "editors",
        &["../../base"],
        &["../../components/exemptions-for-editors"],
    );
    cp.kubectl(&["apply", "-k", dir.to_str().unwrap()])
        .assert_exit(0);
    aggregate_all();
    for verb in [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ] {
        assert!(
            alice(verb, EXEMPTIONS),
            "alice may not {verb} exemptions in shop"
        );
    }
    let out = cp.kubectl_with_input(&["apply", "--as", "alice", "-f", "-"], exemption);
    out.assert_exit(0);
    assert_has(&out.stdout, "statefulsetexemption.sts-guard.io/web created");
    // Only in her namespace, never the policy, never the status (sts-guard's).
    assert!(!can_i(&cp, "alice", "create", EXEMPTIONS, Some("default")));
    let status = cp.kubectl(&[
        "auth",
        "can-i",
        "patch",
        EXEMPTIONS,
        "--subresource=status",
        "--as",
        "alice",
        "-n",
        "shop",
    ]);
    assert_eq!(
        status.stdout.trim(),
        "no",
        "alice may patch an exemption's status"
    );
    for verb in ["create", "update", "patch", "delete"] {
        assert!(
            !can_i(&cp, "alice", verb, POLICIES, None),
            "alice may {verb} the policy"
        );
    }
    let out = cp.kubectl(&[
        "patch",
        "stspolicy",
        "default",
        "--as",
        "alice",
        "--type=merge",
        "-p",
        r#"{"spec":{"mode":"enforce"}}"#,
    ]);
    out.assert_exit(1);
    assert_has(&out.stderr, "forbidden");
    // The platform team edits the policy and exemptions everywhere.
    for verb in [
        "get", "list", "watch", "create", "update", "patch", "delete",
    ] {
        assert!(
            can_i(&cp, "bob", verb, POLICIES, None),
            "bob may not {verb} the policy"
        );
        assert!(
            can_i(&cp, "bob", verb, EXEMPTIONS, Some("shop")),
            "bob: {verb} exemptions"
        );
    }
    let out = cp.kubectl(&[
        "patch",
        "stspolicy",
        "default",
        "--as",
        "bob",
        "--type=merge",
        "-p",
        r#"{"spec":{"mode":"warn"}}"#,
    ]);
    out.assert_exit(0);
}
