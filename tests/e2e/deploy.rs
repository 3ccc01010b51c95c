//! deploy/: every overlay renders, and every object it renders is accepted
//! by this API server (schema, defaulting, admission, Pod Security).

use std::path::Path;
use std::sync::OnceLock;

use serde_json::{Value, json};

use crate::support::control_plane::{repo_root, run, sts_guard_bin};
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

/// The documents of a rendered overlay, without cert-manager's kinds
/// (this control plane has not their CRDs).
pub(crate) fn without_cert_manager(rendered: &str) -> String {
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
    docs.retain(|d| {
        !d.lines()
            .any(|l| l.starts_with("apiVersion: cert-manager.io/"))
    });
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
        let core = without_cert_manager(&rendered.stdout);
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
    let objects = cluster().cp.kubectl_with_input(
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        &rendered.stdout,
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
