//! A review never waits longer than `--lookup-timeout` (+ 250 ms) for its
//! lookups, whatever the API server does: never answers, answers after
//! 10 s, resets the connection, throttles (429 with `Retry-After`) or
//! fails (500). Each case: CREATE and UPDATE (whose old object needs the
//! same lookups: fetched once), with and without dry-run, on `/validate`
//! and `/mutate`, through the router with a real kube client pointed at a
//! stand-in API server on loopback. The probe rules keep enforcing; the
//! lookups that failed are warnings.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use sts_guard::lookup::{ClusterCache, LookupSource};
use sts_guard::policy::Policy;
use sts_guard::webhook::metrics::Metrics;
use sts_guard::webhook::routes::App;
use support::*;

/// `serve`'s default `--lookup-timeout`.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);
const BOUND: Duration = Duration::from_millis(2250);

#[derive(Debug, Clone, Copy)]
enum Trouble {
    /// Accepts the connection, reads the request, never answers.
    NeverAnswers,
    /// Answers (404) only after 10 s.
    AnswersAfter10s,
    /// Reads the request and resets the connection.
    Resets,
    /// 429 Too Many Requests, `Retry-After: 3` (kube's client retries).
    Throttles,
    /// 500 Internal Server Error.
    Fails,
}

async fn stand_in(trouble: Trouble) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(answer(tcp, trouble));
        }
    });
    addr
}

/// Serves one connection as `trouble` says, request after request.
async fn answer(mut tcp: TcpStream, trouble: Trouble) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let status = |code: u16, reason: &str, extra: &str| {
            let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                              "reason": reason, "code": code, "message": reason})
            .to_string();
            format!(
                "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\n{extra}content-length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let reply = match trouble {
            Trouble::NeverAnswers => {
                // Hold the connection, say nothing, until the client leaves.
                while !matches!(tcp.read(&mut buf).await, Ok(0) | Err(_)) {}
                return;
            }
            Trouble::AnswersAfter10s => {
                tokio::time::sleep(Duration::from_secs(10)).await;
                status(404, "NotFound", "")
            }
            Trouble::Resets => {
                // SO_LINGER 0: close sends RST, not FIN.
                let _ = tcp.set_zero_linger();
                return;
            }
            Trouble::Throttles => status(429, "TooManyRequests", "retry-after: 3\r\n"),
            Trouble::Fails => status(500, "InternalError", ""),
        };
        if tcp.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// The fixture, in `namespace`, as CREATE or as an UPDATE from 2 to 3
/// replicas (both objects need the Service and the budgets).
fn review(namespace: &str, update: bool, dry_run: bool, without_liveness: bool) -> Value {
    let mut r = if without_liveness {
        fixture_without_liveness()
    } else {
        fixture()
    };
    let request = &mut r["request"];
    request["uid"] = json!(format!("{namespace}-uid"));
    request["namespace"] = json!(namespace);
    request["object"]["metadata"]["namespace"] = json!(namespace);
    request["dryRun"] = json!(dry_run);
    if update {
        // The old object had its probes and 2 replicas.
        let mut old = fixture()["request"]["object"].clone();
        old["metadata"]["namespace"] = json!(namespace);
        old["spec"]["replicas"] = json!(2);
        request["operation"] = json!("UPDATE");
        request["oldObject"] = old;
    }
    r
}

fn counter(metrics: &str, family: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(family) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[rstest::rstest]
#[case::never_answers(Trouble::NeverAnswers)]
#[case::answers_after_10s(Trouble::AnswersAfter10s)]
#[case::resets(Trouble::Resets)]
#[case::throttles(Trouble::Throttles)]
#[case::fails(Trouble::Fails)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_comes_within_the_lookup_timeout(#[case] trouble: Trouble) {
    sts_guard::install_crypto_provider();
    let api = stand_in(trouble).await;
    let client =
        kube::Client::try_from(kube::Config::new(format!("http://{api}").parse().unwrap()))
            .unwrap();
    let metrics = Metrics::new();
    let app = App::new(
        Policy::default(),
        LookupSource::Cluster(ClusterCache::start(client, LOOKUP_TIMEOUT)),
        metrics.clone(),
    );

    // Every case in a namespace of its own, so no two share a lookup.
    let mut cases = Vec::new();
    for update in [false, true] {
        for dry_run in [false, true] {
            for without_liveness in [false, true] {
                for endpoint in ["/validate", "/mutate"] {
                    let ns = format!(
                        "{}-{}{}{}",
                        endpoint.trim_start_matches('/'),
                        if update { "update" } else { "create" },
                        if dry_run { "-dry" } else { "" },
                        if without_liveness { "-bad" } else { "" },
                    );
                    cases.push((ns, endpoint, update, dry_run, without_liveness));
                }
            }
        }
    }
    let answers =
        futures::future::join_all(cases.iter().map(|(ns, endpoint, update, dry_run, bad)| {
            let app = app.clone();
            let body = review(ns, *update, *dry_run, *bad);
            async move {
                let started = Instant::now();
                let (status, answer) = router_review(&app, endpoint, &body).await;
                (status, answer, started.elapsed())
            }
        }))
        .await;

    let slowest = answers.iter().map(|(_, _, took)| *took).max().unwrap();
    println!(
        "{trouble:?}: {} answers, the slowest in {slowest:?}",
        answers.len()
    );
    let mut validated = 0;
    for ((ns, endpoint, _, _, bad), (status, answer, took)) in cases.iter().zip(answers) {
        let response = &answer["response"];
        assert_eq!(status, 200, "{ns}: {answer}");
        assert_eq!(response["uid"], format!("{ns}-uid"), "{ns}");
        assert!(took <= BOUND, "{trouble:?} {ns}: answered in {took:?}");
        if *endpoint == "/mutate" {
            assert_eq!(response["allowed"], true, "{ns}: {answer}");
            continue;
        }
        validated += 1;
        let warnings: Vec<&str> = response["warnings"]
            .as_array()
            .map(|w| w.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for rule in ["[headless-service]", "[disruption-budget]"] {
            assert!(
                warnings
                    .iter()
                    .any(|w| w.starts_with(rule) && w.contains("could not be checked")),
                "{trouble:?} {ns}: {answer}"
            );
        }
        // An UPDATE that removes a probe the old object had is denied
        // like a CREATE without one.
        let denied = *bad;
        assert_eq!(response["allowed"], !denied, "{trouble:?} {ns}: {answer}");
        if denied {
            let message = response["status"]["message"].as_str().unwrap();
            assert!(message.contains("[liveness-probe]"), "{ns}: {message}");
        }
    }
    // Each lookup counted once per review: an UPDATE's old object adds no
    // second Service or budget lookup.
    let exposed = metrics.encode();
    assert_eq!(
        counter(&exposed, "sts_guard_service_lookups_total"),
        validated as f64,
        "{exposed}"
    );
    assert_eq!(
        counter(&exposed, "sts_guard_disruption_budget_lookups_total"),
        validated as f64,
        "{exposed}"
    );
}
