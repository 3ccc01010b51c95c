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
