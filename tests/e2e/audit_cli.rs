//! `sts-guard audit` over the cluster the webhook guards: exactly the
//! StatefulSets that break an enforced rule are reported denied.

use serde_json::Value;

use crate::support::control_plane::{run, sts_guard_bin};
use crate::{Ns, Sts, Svc, accepts, cluster, file, kubectl, warns};

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn audit_lists_exactly_the_non_compliant_statefulsets() {
    // legacy lacks a readiness probe (stored before sts-guard looked);
    // good lost its Service after creation.
    let update = Ns::ignored("audit-cli-update").await;
    accepts(&update, &Svc::new("legacy").yaml());
    accepts(&update, &Sts::new("legacy").no_readiness().yaml());
    accepts(
        &update,
        &file(&[Svc::new("good").yaml(), Sts::new("good").yaml()]),
    );
    kubectl(&["delete", "svc", "-n", &update.name, "good"]).assert_exit(0);
    // Compliant; warn and audit mode; exempt from the Service rule.
    let ok = Ns::fresh("audit-cli-ok").await;
    accepts(
        &ok,
        &file(&[Svc::new("web").yaml(), Sts::new("web").yaml()]),
    );
    let warn = Ns::from_policy("audit-cli-warn").await;
    warns(&warn, &Sts::new("web").no_liveness().yaml());
    let audit = Ns::from_policy("audit-cli-audit").await;
    accepts(&audit, &Sts::new("web").no_readiness().yaml());
    let exempt = Ns::from_policy("audit-cli-exempt").await;
    accepts(&exempt, &Sts::new("no-service").yaml());

    let c = cluster();
    let mut cmd = c.cp.command(sts_guard_bin());
    cmd.args(["audit", "-o", "json", "--config"])
        .arg(&c.policy)
        .env_remove("STS_GUARD_CONFIG");
    let out = run(&mut cmd, None);
    // Something would be denied.
    out.assert_exit(1);
    let report: Value = serde_json::from_str(&out.stdout).expect("JSON report");
    // Every namespace is audited, other tests' too: look at this test's.
    let mine = [&update, &ok, &warn, &audit, &exempt].map(|ns| ns.name.as_str());
    let mut denied: Vec<String> = report["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter(|o| mine.contains(&o["namespace"].as_str().unwrap_or_default()))
        .filter(|o| o["verdict"] == "denied")
        .map(|o| {
            format!(
                "{}/{}",
                o["namespace"].as_str().unwrap(),
                o["name"].as_str().unwrap()
            )
        })
        .collect();
    denied.sort();
    let expected = [
        format!("{}/good", update.name),
        format!("{}/legacy", update.name),
    ];
    assert_eq!(denied, expected);
}

/// A client certificate made by `openssl x509 -req` without extensions is
/// X.509 v1: kubectl accepts it in a kubeconfig, and so must audit (and
/// serve, which connects the same way).
#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn audit_works_with_a_kubeconfig_holding_an_x509_v1_client_certificate() {
    let ns = Ns::fresh("audit-cli-v1").await;
    accepts(
        &ns,
        &file(&[Svc::new("web").yaml(), Sts::new("web").yaml()]),
    );

    let c = cluster();
    let pki = c.cp.work().join("pki");
    let dir = c.cp.work().join("v1-client");
    std::fs::create_dir_all(&dir).unwrap();
    let path = |f: &str| dir.join(f).display().to_string();
    let openssl = |args: &[&str]| {
        let out = run(std::process::Command::new("openssl").args(args), None);
        out.assert_exit(0);
        out
    };
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &path("v1.key"),
        "-out",
        &path("v1.csr"),
        "-subj",
        "/O=system:masters/CN=v1-admin",
    ]);
    let ca_crt = pki.join("ca.crt").display().to_string();
    let ca_key = pki.join("ca.key").display().to_string();
    openssl(&[
        "x509",
        "-req",
        "-in",
        &path("v1.csr"),
        "-CA",
        &ca_crt,
        "-CAkey",
        &ca_key,
        "-days",
        "1",
        "-out",
        &path("v1.crt"),
    ]);
    let text = openssl(&["x509", "-noout", "-text", "-in", &path("v1.crt")]).stdout;
    assert!(text.contains("Version: 1 (0x0)"), "{text}");

    let admin = |f: &str| pki.join(f).display().to_string();
    let kubeconfig = std::fs::read_to_string(&c.cp.kubeconfig)
        .unwrap()
        .replace(&admin("admin.crt"), &path("v1.crt"))
        .replace(&admin("admin.key"), &path("v1.key"));
    assert!(kubeconfig.contains("v1.crt") && kubeconfig.contains("v1.key"));
    std::fs::write(dir.join("kubeconfig"), kubeconfig).unwrap();

    // kubectl takes it: the file is a good kubeconfig.
    let mut kubectl = c.cp.command("kubectl");
    kubectl
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .args(["get", "sts", "-n", &ns.name, "-o", "name"]);
    run(&mut kubectl, None).assert_exit(0);

    let mut cmd = c.cp.command(sts_guard_bin());
    cmd.env("KUBECONFIG", dir.join("kubeconfig"))
        .args(["audit", "-o", "json", "-n", &ns.name])
        .env_remove("STS_GUARD_CONFIG");
    let out = run(&mut cmd, None);
    out.assert_exit(0);
    let report: Value = serde_json::from_str(&out.stdout).expect("JSON report");
    assert_eq!(report["summary"]["checked"], 1, "{out}");

    // A key that is not the certificate's: refused by the API server in the
    // handshake, and said so in words, with no Rust debug formatting.
    let wrong = std::fs::read_to_string(dir.join("kubeconfig"))
        .unwrap()
        .replace(&path("v1.key"), &admin("admin.key"));
    std::fs::write(dir.join("kubeconfig-wrong-key"), wrong).unwrap();
    let mut cmd = c.cp.command(sts_guard_bin());
    cmd.env("KUBECONFIG", dir.join("kubeconfig-wrong-key"))
        .args(["audit", "-n", &ns.name])
        .env_remove("STS_GUARD_CONFIG");
    let out = run(&mut cmd, None);
    out.assert_exit(2);
    eprintln!("wrong key: {}", out.stderr);
    for debug in ["Other(", "Error {", "{ ", "Some("] {
        assert!(!out.stderr.contains(debug), "debug formatting: {out}");
    }

    // A user without the auditor's rights: the API server's answer, in words.
    let nobody = std::fs::read_to_string(dir.join("kubeconfig"))
        .unwrap()
        .replace("  user:\n", "  user:\n    as: nobody\n");
    std::fs::write(dir.join("kubeconfig-nobody"), nobody).unwrap();
    let mut cmd = c.cp.command(sts_guard_bin());
    cmd.env("KUBECONFIG", dir.join("kubeconfig-nobody"))
        .args(["audit", "-n", &ns.name])
        .env_remove("STS_GUARD_CONFIG");
    let out = run(&mut cmd, None);
    out.assert_exit(2);
    assert!(
        out.stderr
            .contains("the API server answered 403 Forbidden: "),
        "{out}"
    );
    for debug in ["Status {", "Some(", "ApiError"] {
        assert!(!out.stderr.contains(debug), "debug formatting: {out}");
    }
}
