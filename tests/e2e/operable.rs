//! What operators alert on, against the real API server: with managed
//! certificates, /metrics reports the Secret's certificate and CA expiry,
//! both caches synced, ready, and the certificate current; and a watch or
//! managed-certificate task that ends (the test-only fault hook
//! `STS_GUARD_TEST_FAULT`) takes the pod out of service and exits 1 within
//! 5 s.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Child;
use std::time::{Duration, Instant};

use rstest::rstest;
use sts_guard::certs::CertInfo;

use crate::support::client::{is_ready, tls_connector};
use crate::support::control_plane::{ControlPlane, http_get, random_suffix, wait_for};
use crate::support::webhook::{Registration, metric_sum};
use crate::{Ns, cluster};

/// A managed-mode `serve` this test owns (killed on drop), its log in the
/// control plane's work directory.
struct Managed {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
    log: PathBuf,
}

impl Drop for Managed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(cp: &ControlPlane, tag: &str, secret: &str, config: &str, fault: &str) -> Managed {
    let (mut cmd, addr, metrics) = crate::managed_certs::managed_serve(cp, secret, config);
    let log = cp.work().join(format!("{tag}.log"));
    let file = std::fs::File::create(&log).unwrap();
    cmd.env("STS_GUARD_TEST_FAULT", fault)
        .stdout(file.try_clone().unwrap())
        .stderr(file);
    let child = cmd.spawn().unwrap();
    Managed {
        child,
        addr,
        metrics,
        log,
    }
}

/// One key of the Secret, decoded.
fn secret_key(cp: &ControlPlane, ns: &str, key: &str) -> Option<String> {
    let template = format!("{{{{index .data \"{key}\" | base64decode}}}}");
    let out = cp.kubectl(&[
        "get",
        "secret",
        "-n",
        ns,
        "sts-guard-tls",
        "-o",
        &format!("go-template={template}"),
    ]);
    (out.code == 0 && out.stdout.contains("BEGIN")).then_some(out.stdout)
}

fn expiry(pem: &str) -> f64 {
    CertInfo::parse_pem(pem).unwrap().not_after.unix_timestamp() as f64
}

#[rstest]
#[case::a_cache_watch("watch: PodDisruptionBudgets")]
#[case::a_managed_certificate_watch("managed certificates: watch Secret")]
#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn managed_mode_exports_its_expiry_and_caches_and_exits_when_a_task_ends(#[case] task: &str) {
    let cp = &cluster().cp;
    let tag = format!("operable-{}", random_suffix(5));
    let home = Ns::fresh("operable").await;
    let secret = format!("{}/sts-guard-tls", home.name);
    let config = format!("sts-guard-{tag}");
    let trigger = cp.work().join(format!("{tag}-end-now"));
    let fault = format!("return,{task},{}", trigger.display());
    let mut serve = start(cp, &tag, &secret, &config, &fault);
    let registration = Registration::only_labelled(&tag);
    let list = registration
        .configurations(cp, &format!("https://{}", serve.addr), b"")
        .unwrap();
    cp.kubectl_with_input(&["apply", "-f", "-"], &list.to_string())
        .assert_exit(0);

    let bundle_file = cp.work().join(format!("{tag}-bundle.crt"));
    let log = |s: &Managed| std::fs::read_to_string(&s.log).unwrap_or_default();
    wait_for(
        "ready with a certificate the Secret's bundle trusts",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            let Some(bundle) = secret_key(cp, &home.name, "ca.crt") else {
                return Ok(false);
            };
            std::fs::write(&bundle_file, bundle)?;
            let connector = tls_connector(&bundle_file);
            Ok(crate::support::control_plane::block_on(is_ready(
                serve.addr, &connector,
            )))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", log(&serve)));

    // The metrics operators alert on, as the Secret holds them.
    let leaf = secret_key(cp, &home.name, "tls.crt").unwrap();
    let ca = secret_key(cp, &home.name, "ca.crt").unwrap();
    let (_, page) = http_get(serve.metrics, "/metrics").unwrap();
    let value = |family: &str, labels: &[&str]| metric_sum(&page, family, labels);
    let expiry_family = "sts_guard_certificate_expiry_timestamp_seconds";
    assert_eq!(
        value(expiry_family, &["certificate=\"serving\""]),
        expiry(&leaf),
        "{page}"
    );
    assert_eq!(
        value(expiry_family, &["certificate=\"ca\""]),
        expiry(&ca),
        "{page}"
    );
    for what in ["services", "disruption-budgets"] {
        let label = format!("what=\"{what}\"");
        assert_eq!(value("sts_guard_cache_synced", &[&label]), 1.0, "{page}");
    }
    assert_eq!(value("sts_guard_ready", &[]), 1.0, "{page}");
    assert_eq!(
        value(
            "sts_guard_last_reload_successful",
            &["what=\"certificate\""]
        ),
        1.0,
        "{page}"
    );
    assert!(value("sts_guard_policy_loaded_timestamp_seconds", &[]) > 0.0);

    // The task ends: out of service, and gone with status 1 within 5 s.
    std::fs::write(&trigger, b"").unwrap();
    let ended = Instant::now();
    let connector = tls_connector(&bundle_file);
    let mut not_ready_after = None;
    let mut status = None;
    while ended.elapsed() < Duration::from_secs(5) {
        if not_ready_after.is_none() && !is_ready(serve.addr, &connector).await {
            not_ready_after = Some(ended.elapsed());
        }
        if let Some(s) = serve.child.try_wait().unwrap() {
            status = Some((s, ended.elapsed()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, exited_after) = status
        .unwrap_or_else(|| panic!("still running 5 s after {task:?} ended:\n{}", log(&serve)));
    assert_eq!(status.code(), Some(1), "{}", log(&serve));
    assert!(not_ready_after.is_some(), "/readyz never failed");
    let text = log(&serve);
    // serve's last words on stderr: `error: background task "NAME" returned; ...`.
    assert!(
        text.contains(&format!("background task \"{task}\" returned")),
        "the log does not name the task:\n{text}"
    );
    eprintln!(
        "{task}: not ready after {:?}, exited 1 after {exited_after:?}",
        not_ready_after.unwrap()
    );
    let names = registration.names();
    cp.kubectl(&["delete", &names[0], &names[1]]);
}
