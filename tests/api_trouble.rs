//! A review never waits longer than `--lookup-timeout` (+ 250 ms) for its
//! lookups, whatever the API server does: never answers, answers after
//! 10 s, resets the connection, throttles (429 with `Retry-After`) or
//! fails (500). Each case: CREATE and UPDATE (whose old object needs the
//! same lookups: fetched once), with and without dry-run, on `/validate`
//! and `/mutate`, through the router with a real kube client pointed at a
//! stand-in API server on loopback. The probe rules keep enforcing; the
//! lookups that failed are warnings. And a denial for want of a budget is
//! first confirmed by one LIST, since the watch may lag behind a budget
//! created a moment before.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

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
    serve_tcp(move |tcp| answer(tcp, trouble)).await
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

/// An API server whose PodDisruptionBudget watch never delivers anything
/// after an empty first list, while a namespaced LIST sees `late`'s
/// budget: a budget created a moment before the StatefulSet that the
/// watch has not delivered yet. Counts the namespaced LISTs.
async fn lagging_watch(lists: Arc<Mutex<BTreeMap<String, usize>>>) -> SocketAddr {
    serve_tcp(move |tcp| lagging_answer(tcp, lists.clone())).await
}

async fn lagging_answer(mut tcp: TcpStream, lists: Arc<Mutex<BTreeMap<String, usize>>>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let json = |code: u16, body: Value| {
            let body = body.to_string();
            format!(
                "HTTP/1.1 {code} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let list = |kind: &str, items: Value| {
            json(
                200,
                json!({"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let reply = match parts.as_slice() {
            // Watches stay open and say nothing.
            _ if query.contains("watch=true") || query.contains("watch=1") => {
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                while !matches!(tcp.read(&mut buf).await, Ok(0) | Err(_)) {}
                return;
            }
            ["api", "v1", "services"] => list("ServiceList", json!([])),
            ["apis", "policy", "v1", "poddisruptionbudgets"] => {
                list("PodDisruptionBudgetList", json!([]))
            }
            [
                "apis",
                "policy",
                "v1",
                "namespaces",
                ns,
                "poddisruptionbudgets",
            ] => {
                *lists.lock().unwrap().entry(ns.to_string()).or_default() += 1;
                let items = if *ns == "late" {
                    json!([{"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                            "metadata": {"name": "web", "namespace": "late", "resourceVersion": "2"},
                            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app.kubernetes.io/name": "web"}}}}])
                } else {
                    json!([])
                };
                list("PodDisruptionBudgetList", items)
            }
            _ => json(
                404,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}),
            ),
        };
        if tcp.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_for_want_of_a_budget_asks_the_api_server_once_first() {
    sts_guard::install_crypto_provider();
    let lists = Arc::new(Mutex::new(BTreeMap::new()));
    let api = lagging_watch(lists.clone()).await;
    let client =
        kube::Client::try_from(kube::Config::new(format!("http://{api}").parse().unwrap()))
            .unwrap();
    let cache = ClusterCache::start(client, LOOKUP_TIMEOUT);
    assert!(
        wait_until(Duration::from_secs(10), || {
            let c = cache.clone();
            async move { c.is_synced() }
        })
        .await,
        "the caches never synced"
    );
    // Only disruption-budget denies; the Service (absent here) is audited.
    let policy =
        Policy::from_yaml("mode: audit\nrules: {disruption-budget: enforce}\n", "test").unwrap();
    let app = App::new(policy, LookupSource::Cluster(cache), Metrics::new());
    let validate = |ns: &str| {
        let app = app.clone();
        let body = review(ns, false, false, false);
        async move { router_review(&app, "/validate", &body).await.1 }
    };
    let listed = |ns: &str| lists.lock().unwrap().get(ns).copied().unwrap_or(0);

    // The watch says "none"; the LIST finds the budget: allowed. Again
    // within the window: the same LIST answers.
    for _ in 0..3 {
        let answer = validate("late").await;
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
    }
    assert_eq!(listed("late"), 1, "LISTs for three reviews in one window");

    // No budget at all: denied, one LIST for all the denials.
    for _ in 0..3 {
        let answer = validate("none").await;
        assert_eq!(answer["response"]["allowed"], false, "{answer}");
        let message = answer["response"]["status"]["message"].as_str().unwrap();
        assert!(
            message.contains(
                "[disruption-budget] spec.replicas is 3 and no PodDisruptionBudget selects the pods"
            ),
            "{message}"
        );
    }
    assert_eq!(listed("none"), 1, "LISTs for three denials in one window");
}
