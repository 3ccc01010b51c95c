//! `sts-guard audit --report`: policy reports on the real API server, with
//! the CRDs sts-guard's own types generate (`sts-guard reports crd`).
//!
//! The StatefulSets are stored in namespaces the webhook ignores, so any
//! mix can be stored; `audit` reads them under a policy file of the test's
//! own. The garbage collector may delete the report of a deleted
//! StatefulSet (its owner) before `audit` does: either way it is gone.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};
use sts_guard::reports::{PolicyReport, PolicyResult, Report, ReportKind, ReportResult};

use crate::support::control_plane::{
    Output, random_suffix, repo_root, run, sts_guard_bin, wait_for,
};
use crate::{Ns, Sts, Svc, accepts, assert_has, cluster, file, kubectl};

/// `sts-guard audit --report API ARGS...` under `policy`.
fn audit(api: &str, policy: &str, args: &[&str]) -> Output {
    let c = cluster();
    let path =
        c.cp.work()
            .join(format!("reports-policy-{}.yaml", random_suffix(6)));
    std::fs::write(&path, policy).unwrap();
    let mut cmd = c.cp.command(sts_guard_bin());
    cmd.args(["audit", "-o", "json", "--report", api, "--config"])
        .arg(&path)
        .args(args)
        .env_remove("STS_GUARD_CONFIG")
        .env_remove("STS_GUARD_REPORT");
    run(&mut cmd, None)
}

/// Installs the CRD `sts-guard reports crd API` prints, and waits until the
/// API server serves it. Idempotent: tests may share a CRD.
fn install_crd<K: ReportKind>(api: &str) {
    let c = cluster();
    let crd = run(
        c.cp.command(sts_guard_bin()).args(["reports", "crd", api]),
        None,
    );
    crd.assert_exit(0);
    c.cp.kubectl_with_input(&["apply", "--server-side", "-f", "-"], &crd.stdout)
        .assert_exit(0);
    let name = K::API.crd_name();
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=30s",
        &format!("crd/{name}"),
    ])
    .assert_exit(0);
    // Established, then served: discovery catches up a moment later.
    wait_for(
        &format!("{name} to be served"),
        Duration::from_secs(30),
        Duration::from_millis(200),
        || Ok(kubectl(&["get", K::API.plural, "-A"]).code == 0),
    )
    .unwrap();
}

/// Every report of `K` in `ns`, by name.
async fn reports<K: ReportKind>(ns: &Ns) -> BTreeMap<String, K> {
    Api::<K>::namespaced(ns.client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .expect("listing reports")
        .items
        .into_iter()
        .map(|r| (r.meta().name.clone().unwrap_or_default(), r))
        .collect()
}

/// `(rule, result, container)` of every result, in order.
fn outcomes(results: &[ReportResult]) -> Vec<(String, PolicyResult, Option<String>)> {
    results
        .iter()
        .map(|r| {
            (
                r.rule.clone().unwrap_or_default(),
                r.result.expect("a result"),
                r.properties
                    .as_ref()
                    .and_then(|p| p.get("container").cloned()),
            )
        })
        .collect()
}

fn result<'a>(results: &'a [ReportResult], rule: &str) -> &'a ReportResult {
    results
        .iter()
        .find(|r| r.rule.as_deref() == Some(rule))
        .unwrap_or_else(|| panic!("no {rule} result in {results:#?}"))
}

fn pass(rule: &str) -> (String, PolicyResult, Option<String>) {
    (rule.to_string(), PolicyResult::Pass, None)
}

/// Every rule passing except the ones given, in rule order.
fn all_pass_but(
    others: &[(&str, PolicyResult, Option<&str>)],
) -> Vec<(String, PolicyResult, Option<String>)> {
    sts_guard::rules::RULES
        .iter()
        .map(|rule| {
            others
                .iter()
                .find(|(id, ..)| *id == rule.id.as_str())
                .map_or_else(
                    || pass(rule.id.as_str()),
                    |(id, r, c)| (id.to_string(), *r, c.map(String::from)),
                )
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn audit_writes_openreports_and_keeps_them_current() {
    let ns = Ns::ignored("reports").await;
    let warn_ns = Ns::ignored("reports-warn").await;
    let policy = format!(
        "mode: enforce
namespaces:
  {warn}: {{mode: warn}}
  {ns}:
    rules: {{readiness-probe: audit}}
exemptions:
  - namespace: {ns}
    name: no-service
    rules: [headless-service]
    reason: runs without a Service on purpose (e2e)
",
        ns = ns.name,
        warn = warn_ns.name,
    );
    accepts(
        &ns,
        &file(&[
            Svc::new("good").yaml(),
            Sts::new("good").yaml(),
            Svc::new("broken").yaml(),
            Sts::new("broken").no_liveness().yaml(),
            Svc::new("quiet").yaml(),
            Sts::new("quiet").no_readiness().yaml(),
            Sts::new("no-service").yaml(),
        ]),
    );
    accepts(
        &warn_ns,
        &file(&[
            Svc::new("warned").yaml(),
            Sts::new("warned").no_liveness().yaml(),
        ]),
    );

    // No CRD yet: one line naming it, exit 2, nothing on stdout.
    let out = audit("openreports", &policy, &["-n", &ns.name]);
    out.assert_exit(2);
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    assert_has(&out.stderr, "reports.openreports.io");
    assert_eq!(out.stdout, "");
    // --exit-zero forgives findings, not errors.
    let out = audit("openreports", &policy, &["-n", &ns.name, "--exit-zero"]);
    out.assert_exit(2);
    assert_has(&out.stderr, "reports.openreports.io");

    install_crd::<Report>("openreports");
    // Every namespace, as the scheduled audit runs it: with --exit-zero,
    // exit 0 though `broken` would be denied, and the Reports written all
    // the same (none existed before this run).
    let out = audit("openreports", &policy, &["--exit-zero"]);
    out.assert_exit(0);
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("audit's JSON report");
    assert_eq!(json["schemaVersion"], 1);
    assert!(
        json["summary"]["denied"].as_u64() >= Some(1),
        "{}",
        json["summary"]
    );

    let written = reports::<Report>(&ns).await;
    let names: Vec<&str> = written.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "sts-guard-broken",
            "sts-guard-good",
            "sts-guard-no-service",
            "sts-guard-quiet"
        ]
    );
    let sts_uid = |name: &str| {
        let ns = &ns;
        let name = name.to_string();
        async move {
            ns.statefulset(&name)
                .await
                .and_then(|s| s.metadata.uid)
                .expect("a stored StatefulSet")
        }
    };
    for (name, report) in &written {
        let sts = name.trim_start_matches("sts-guard-");
        let uid = sts_uid(sts).await;
        let scope = report.scope.as_ref().expect("a scope");
        assert_eq!(scope.api_version.as_deref(), Some("apps/v1"));
        assert_eq!(scope.kind.as_deref(), Some("StatefulSet"));
        assert_eq!(scope.name.as_deref(), Some(sts));
        assert_eq!(scope.namespace.as_deref(), Some(ns.name.as_str()));
        assert_eq!(scope.uid.as_deref(), Some(uid.as_str()));
        let owners = report.metadata.owner_references.as_ref().expect("an owner");
        assert_eq!(owners.len(), 1);
        assert_eq!(
            (
                owners[0].kind.as_str(),
                owners[0].name.as_str(),
                owners[0].uid.as_str()
            ),
            ("StatefulSet", sts, uid.as_str())
        );
        assert_eq!(report.source, "sts-guard");
        assert_eq!(
            report
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/managed-by"))
                .map(String::as_str),
            Some("sts-guard")
        );
        for r in &report.results {
            assert_eq!(r.source, "sts-guard");
            assert_eq!(Some(r.policy.as_str()), r.rule.as_deref());
            assert!(r.timestamp.is_some_and(|t| t.seconds > 0), "{r:?}");
        }
    }

    let good = &written["sts-guard-good"];
    assert_eq!(outcomes(&good.results), all_pass_but(&[]));
    assert_eq!((good.summary.pass, good.summary.fail), (7, 0));

    let broken = &written["sts-guard-broken"];
    assert_eq!(
        outcomes(&broken.results),
        all_pass_but(&[("liveness-probe", PolicyResult::Fail, Some("app"))])
    );
    let liveness = result(&broken.results, "liveness-probe");
    let props = liveness.properties.as_ref().unwrap();
    assert_eq!(props["path"], "spec.template.spec.containers[0]");
    assert_eq!(props["action"], "deny");
    assert_has(liveness.message.as_deref().unwrap(), "has no livenessProbe");
    assert_eq!((broken.summary.pass, broken.summary.fail), (6, 1));

    // Audit mode: admitted silently, reported as warn with its action.
    let quiet = &written["sts-guard-quiet"];
    assert_eq!(
        outcomes(&quiet.results),
        all_pass_but(&[("readiness-probe", PolicyResult::Warn, Some("app"))])
    );
    let readiness = result(&quiet.results, "readiness-probe");
    assert_eq!(readiness.properties.as_ref().unwrap()["action"], "audit");
    assert_eq!(quiet.summary.warn, 1);

    let exempt = &written["sts-guard-no-service"];
    assert_eq!(
        outcomes(&exempt.results),
        all_pass_but(&[("headless-service", PolicyResult::Skip, None)])
    );
    let skipped = result(&exempt.results, "headless-service");
    assert_eq!(
        skipped.properties.as_ref().unwrap()["reason"],
        "runs without a Service on purpose (e2e)"
    );
    assert_has(
        skipped.message.as_deref().unwrap(),
        "runs without a Service on purpose (e2e)",
    );
    assert_eq!(exempt.summary.skip, 1);

    let warned = reports::<Report>(&warn_ns).await;
    let warned = &warned["sts-guard-warned"];
    assert_eq!(
        outcomes(&warned.results),
        all_pass_but(&[("liveness-probe", PolicyResult::Warn, Some("app"))])
    );
    assert_eq!(
        result(&warned.results, "liveness-probe")
            .properties
            .as_ref()
            .unwrap()["reason"],
        "warn-mode"
    );

    // Without --exit-zero: the same audit, exit 1 as ever, the same Reports.
    let out = audit("openreports", &policy, &[]);
    out.assert_exit(1);
    assert_eq!(
        reports::<Report>(&ns).await.keys().collect::<Vec<_>>(),
        written.keys().collect::<Vec<_>>()
    );

    // What README shows.
    eprintln!(
        "kubectl get reports -A:\n{}\nkubectl get report -n {} sts-guard-broken -o yaml:\n{}",
        kubectl(&["get", "reports", "-A"]).stdout,
        ns.name,
        kubectl(&[
            "get",
            "report",
            "-n",
            &ns.name,
            "sts-guard-broken",
            "-o",
            "yaml"
        ])
        .stdout
    );

    // Fix one, delete another, rerun over one namespace.
    accepts(&ns, &Sts::new("broken").yaml());
    kubectl(&["delete", "statefulset", "-n", &ns.name, "quiet"]).assert_exit(0);
    let out = audit("openreports", &policy, &["-n", &ns.name]);
    out.assert_exit(0);

    let rewritten = reports::<Report>(&ns).await;
    let names: Vec<&str> = rewritten.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["sts-guard-broken", "sts-guard-good", "sts-guard-no-service"]
    );
    let fixed = &rewritten["sts-guard-broken"];
    // The same object, updated in place; the failing result is gone.
    assert_eq!(fixed.metadata.uid, broken.metadata.uid);
    assert_ne!(
        fixed.metadata.resource_version,
        broken.metadata.resource_version
    );
    assert_eq!(outcomes(&fixed.results), all_pass_but(&[]));
    assert_eq!((fixed.summary.pass, fixed.summary.fail), (7, 0));
    assert!(
        fixed.results.iter().all(|r| r.properties.is_none()),
        "a passing result names no container: {:#?}",
        fixed.results
    );
    // Outside the audited namespace: left alone.
    assert!(
        reports::<Report>(&warn_ns)
            .await
            .contains_key("sts-guard-warned")
    );

    // Gone with its last StatefulSet, once audited again.
    kubectl(&["delete", "statefulset", "-n", &warn_ns.name, "warned"]).assert_exit(0);
    audit("openreports", &policy, &["-n", &warn_ns.name]).assert_exit(0);
    assert!(reports::<Report>(&warn_ns).await.is_empty());
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn audit_writes_wgpolicyk8s_policy_reports() {
    let ns = Ns::ignored("policyreports").await;
    accepts(
        &ns,
        &file(&[
            Svc::new("good").yaml(),
            Sts::new("good").yaml(),
            Sts::new("lost").yaml(),
        ]),
    );
    let policy = "mode: enforce\n";

    let out = audit("wgpolicyk8s", policy, &["-n", &ns.name]);
    out.assert_exit(2);
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    assert_has(&out.stderr, "policyreports.wgpolicyk8s.io");

    install_crd::<PolicyReport>("wgpolicyk8s");
    audit("wgpolicyk8s", policy, &["-n", &ns.name]).assert_exit(1);
    let written = reports::<PolicyReport>(&ns).await;
    let names: Vec<&str> = written.keys().map(String::as_str).collect();
    assert_eq!(names, ["sts-guard-good", "sts-guard-lost"]);
    assert_eq!(
        outcomes(&written["sts-guard-good"].results),
        all_pass_but(&[])
    );
    let lost = &written["sts-guard-lost"];
    assert_eq!(
        outcomes(&lost.results),
        all_pass_but(&[("headless-service", PolicyResult::Fail, None)])
    );
    assert_eq!(
        lost.scope.as_ref().and_then(|s| s.name.as_deref()),
        Some("lost")
    );
    assert_eq!(
        result(&lost.results, "headless-service")
            .properties
            .as_ref()
            .unwrap()["path"],
        "spec.serviceName"
    );

    // The Service appears: the same report passes; a deleted one goes.
    accepts(&ns, &Svc::new("lost").yaml());
    kubectl(&["delete", "statefulset", "-n", &ns.name, "good"]).assert_exit(0);
    audit("wgpolicyk8s", policy, &["-n", &ns.name]).assert_exit(0);
    let rewritten = reports::<PolicyReport>(&ns).await;
    let names: Vec<&str> = rewritten.keys().map(String::as_str).collect();
    assert_eq!(names, ["sts-guard-lost"]);
    assert_eq!(rewritten["sts-guard-lost"].metadata.uid, lost.metadata.uid);
    assert_eq!(
        outcomes(&rewritten["sts-guard-lost"].results),
        all_pass_but(&[])
    );
}

/// deploy/overlays/audit-reports: the CronJob runs `audit --report
/// openreports` on the webhook's image and policy, under an account that
/// can do exactly what that needs.
#[test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
fn the_audit_reports_overlay_schedules_audit_with_least_privilege() {
    let overlay = repo_root().join("deploy/overlays/audit-reports");
    let rendered = crate::deploy::kustomize(&overlay);
    rendered.assert_exit(0);
    // kubectl maps every kind it reads: not the policy objects' here (the
    // shared cluster has not their CRDs).
    let objects = cluster().cp.kubectl_with_input(
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        &crate::deploy::without_policy_objects(&rendered.stdout),
    );
    objects.assert_exit(0);
    let objects: Vec<Value> = serde_json::Deserializer::from_str(&objects.stdout)
        .into_iter::<Value>()
        .map(Result::unwrap)
        .collect();
    let find = |kind: &str| {
        objects
            .iter()
            .find(|o| o["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind}"))
    };
    let cronjob = find("CronJob");
    assert_eq!(cronjob["spec"]["schedule"], "*/15 * * * *");
    assert_eq!(cronjob["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "sts-guard-audit");
    let container = &pod["containers"][0];
    assert_eq!(
        container["args"],
        json!(["audit", "--report", "openreports", "--exit-zero"])
    );
    // Findings do not fail the Job (--exit-zero); what is left to fail it
    // (exit 2) is retried.
    let job = &cronjob["spec"]["jobTemplate"]["spec"];
    assert_eq!(job["backoffLimit"], 2);
    assert!(
        !job["podFailurePolicy"].to_string().contains("onExitCodes"),
        "{}",
        job["podFailurePolicy"]
    );
    let webhook = &find("Deployment")["spec"]["template"]["spec"];
    assert_eq!(container["image"], webhook["containers"][0]["image"]);
    assert_eq!(webhook["serviceAccountName"], "sts-guard");
    // The webhook's policy: the cluster's policy objects, with the same
    // platform namespace (its own), and no file.
    assert_eq!(
        container["env"],
        webhook["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["name"] == "STS_GUARD_PLATFORM_NAMESPACE")
            .cloned()
            .collect::<Value>()
    );
    assert!(pod["volumes"].is_null(), "{}", pod["volumes"]);

    // rbac.yaml stands alone: applied as it is, then asked what it allows.
    crate::deploy::sts_guard_namespace();
    kubectl(&["apply", "-f", overlay.join("rbac.yaml").to_str().unwrap()]).assert_exit(0);
    // A SubjectAccessReview, not `kubectl auth can-i`: that resolves the
    // resource through discovery, and the Report CRD is not installed here.
    let can = |account: &str, verb: &str, resource: &str| {
        let (resource, group) = resource.split_once('.').unwrap_or((resource, ""));
        let review = json!({
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": format!("system:serviceaccount:sts-guard:{account}"),
                "groups": ["system:serviceaccounts", "system:serviceaccounts:sts-guard"],
                "resourceAttributes": {"group": group, "resource": resource, "verb": verb},
            },
        });
        let out = cluster()
            .cp
            .kubectl_with_input(&["create", "-o", "json", "-f", "-"], &review.to_string());
        out.assert_exit(0);
        let answer: Value = serde_json::from_str(&out.stdout).expect("a SubjectAccessReview");
        answer["status"]["allowed"] == true
    };
    for resource in [
        "statefulsets.apps",
        "services",
        "poddisruptionbudgets.policy",
    ] {
        assert!(can("sts-guard-audit", "list", resource), "list {resource}");
        assert!(
            !can("sts-guard-audit", "watch", resource),
            "watch {resource}"
        );
        assert!(
            !can("sts-guard-audit", "create", resource),
            "create {resource}"
        );
    }
    for verb in ["get", "list", "create", "update", "patch", "delete"] {
        assert!(
            can("sts-guard-audit", verb, "reports.openreports.io"),
            "{verb} reports"
        );
        // The webhook's account touches no reports.
        assert!(
            !can("sts-guard", verb, "reports.openreports.io"),
            "webhook {verb}"
        );
    }
    for resource in [
        "statefulsetpolicies.sts-guard.io",
        "statefulsetexemptions.sts-guard.io",
    ] {
        for verb in ["get", "list"] {
            assert!(can("sts-guard-audit", verb, resource), "{verb} {resource}");
        }
        for verb in ["watch", "create", "update", "patch", "delete"] {
            assert!(!can("sts-guard-audit", verb, resource), "{verb} {resource}");
        }
    }
    assert!(!can("sts-guard-audit", "get", "secrets"));
    assert!(!can(
        "sts-guard-audit",
        "list",
        "policyreports.wgpolicyk8s.io"
    ));
}
