//! A background task of `serve` that ends takes the pod out of service and
//! restarts it: /readyz fails at once, the process exits non-zero within
//! 5 s, and the log names the task. The task is made to end through the
//! fault hook `STS_GUARD_TEST_FAULT` (src/tasks.rs), which is inert unless
//! set.

mod support;

use std::time::{Duration, Instant};

use rstest::rstest;
use support::*;

/// The limit the issue sets for the kubelet to see the process gone.
const EXIT_WITHIN: Duration = Duration::from_secs(5);

#[rstest]
#[case::policy_reload_panics("reload: policy", "panic")]
#[case::certificate_reload_returns("reload: certificate", "return")]
#[case::metrics_server_returns("metrics server", "return")]
#[tokio::test]
async fn a_task_that_ends_makes_readyz_fail_and_the_process_exit_non_zero(
    #[case] task: &str,
    #[case] mode: &str,
) {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let ca = certs.path().join("ca.crt");
    let config = tempfile::tempdir().unwrap();
    mount_version(config.path(), "v1", &[("policy.yaml", b"mode: warn\n")]);
    let policy = config.path().join("policy.yaml");
    let trigger = config.path().join("end-now");
    let fault = format!("{mode},{task},{}", trigger.display());
    let mut serve = Serve::start_with_env(
        &[],
        certs.path(),
        &["--config", policy.to_str().unwrap()],
        &[("STS_GUARD_TEST_FAULT", &fault)],
    );
    serve.wait_ready(&tls_connector(&ca)).await;
    // A keep-alive connection opened before, as the kubelet's prober and the
    // API server hold them.
    let mut client = Client::connect(serve.addr, &ca).await.unwrap();
    assert_eq!(client.get("/readyz").await.unwrap().0, 200);

    std::fs::write(&trigger, b"").unwrap();
    let ended = Instant::now();
    // Not ready on that connection, and none accepted for a new one.
    let mut not_ready = None;
    while ended.elapsed() < EXIT_WITHIN {
        match client.get("/readyz").await {
            Ok((200, _)) => tokio::time::sleep(Duration::from_millis(5)).await,
            Ok((status, body)) => {
                not_ready = Some((
                    ended.elapsed(),
                    status,
                    String::from_utf8_lossy(&body).into_owned(),
                ));
                break;
            }
            Err(e) => panic!("the connection closed before /readyz failed: {e}"),
        }
    }
    let (after, status, body) = not_ready.unwrap_or_else(|| {
        panic!(
            "/readyz still 200 after {EXIT_WITHIN:?}; log:\n{}",
            serve.log()
        )
    });
    assert_eq!((status, body.as_str()), (503, "shutting down"));
    assert!(
        !serve.ready(&tls_connector(&ca)).await,
        "a new connection is still served ready"
    );

    let status = serve
        .exited_within(EXIT_WITHIN - ended.elapsed().min(EXIT_WITHIN))
        .await
        .unwrap_or_else(|| {
            panic!(
                "still running {EXIT_WITHIN:?} after {task:?} ended; log:\n{}",
                serve.log()
            )
        });
    let exited = ended.elapsed();
    assert_eq!(status.code(), Some(1), "{status}; log:\n{}", serve.log());
    let log = serve.log();
    let how = if mode == "panic" {
        "panicked"
    } else {
        "returned"
    };
    assert!(
        log.contains(&format!("background task \"{task}\" {how}")),
        "the log does not name the task and how it ended:\n{log}"
    );
    eprintln!("{task} ({mode}): /readyz 503 after {after:?}, exited 1 after {exited:?}");
}

/// Without the fault hook's trigger, nothing ends: the same serve stays
/// ready (the hook itself changes nothing until it fires).
#[tokio::test]
async fn an_armed_fault_that_never_fires_changes_nothing() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let ca = certs.path().join("ca.crt");
    let scratch = tempfile::tempdir().unwrap();
    let fault = format!(
        "return,metrics server,{}",
        scratch.path().join("never").display()
    );
    let mut serve =
        Serve::start_with_env(&[], certs.path(), &[], &[("STS_GUARD_TEST_FAULT", &fault)]);
    serve.wait_ready(&tls_connector(&ca)).await;
    let metrics = support::control_plane::http_get(serve.metrics_addr, "/metrics");
    assert_eq!(metrics.map(|(status, _)| status).ok(), Some(200));
    assert!(
        serve
            .exited_within(Duration::from_millis(500))
            .await
            .is_none(),
        "serve exited; log:\n{}",
        serve.log()
    );
    assert!(serve.ready(&tls_connector(&ca)).await);
}
