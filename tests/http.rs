//! The HTTP edge: every kind of bad input gets an explicit answer (router
//! tested without a socket), and the real TLS listener serves keep-alive
//! HTTP/1.1, refuses plaintext, drains on shutdown and swaps certificates.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use sts_guard::policy::Policy;
use sts_guard::webhook::Limits;
use sts_guard::webhook::routes::MAX_BODY_BYTES;
use support::*;

#[tokio::test]
async fn a_compliant_review_is_allowed_with_the_uid_echoed() {
    let (status, body) = router_review(&app(""), "/validate", &fixture()).await;
    assert_eq!(status, 200);
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(body["response"]["uid"], UID);
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none());
}

#[tokio::test]
async fn a_denial_carries_the_message_and_403() {
    let mut review = fixture();
    review["request"]["object"]["spec"]["template"]["spec"]["containers"][1]
        .as_object_mut()
        .unwrap()
        .remove("readinessProbe");
    let (status, body) = router_review(&app(""), "/validate", &review).await;
    assert_eq!(status, 200);
    let response = &body["response"];
    assert_eq!(response["uid"], UID);
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 403);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            r#"[readiness-probe] spec.template.spec.containers[1] "metrics" has no readinessProbe"#
        ),
        "{message}"
    );
}

#[tokio::test]
async fn the_mutating_endpoint_returns_a_base64_json_patch() {
    let mut review = fixture();
    review["request"]["object"]["metadata"]["annotations"]["sts-guard.io/parallel"] = json!("true");
    let (status, body) = router_review(&app(""), "/mutate", &review).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["uid"], UID);
    assert_eq!(body["response"]["patchType"], "JSONPatch");
    // The patch's bytes in base64, as the API server encodes a []byte.
    let patch: Value = serde_json::from_slice(&patch_of(&body["response"])).unwrap();
    assert_eq!(
        patch,
        json!([{"op": "add", "path": "/spec/podManagementPolicy", "value": "Parallel"}])
    );
}

/// Bad input, each decided explicitly (see src/webhook/routes.rs).
#[tokio::test]
async fn bad_input_gets_a_clear_4xx_or_a_uid_echoing_answer() {
    let app = app("");
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            b"{\"kind\": \"AdmissionReview\",".to_vec(),
            400,
            "not an AdmissionReview",
        ),
        (
            "not JSON at all",
            b"\xff\xfe\x00garbage".to_vec(),
            400,
            "not an AdmissionReview",
        ),
        ("empty body", Vec::new(), 400, "not an AdmissionReview"),
        (
            "no request",
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(),
            400,
            "has no request",
        ),
        (
            "v1beta1 envelope",
            {
                let mut r = fixture();
                r["apiVersion"] = json!("admission.k8s.io/v1beta1");
                serde_json::to_vec(&r).unwrap()
            },
            400,
            "expected apiVersion admission.k8s.io/v1",
        ),
        (
            "wrong envelope kind",
            {
                let mut r = fixture();
                r["kind"] = json!("TokenReview");
                serde_json::to_vec(&r).unwrap()
            },
            400,
            "kind \"TokenReview\"",
        ),
    ];
    for (name, body, code, reason) in cases {
        let (status, body) = router_post(&app, "/validate", body).await;
        let text = String::from_utf8_lossy(&body);
        assert_eq!(status, code, "{name}: {text}");
        assert!(text.contains(reason), "{name}: {text}");
        assert_eq!(text.lines().count(), 1, "{name}: one-line reason");
    }
}

#[tokio::test]
async fn an_object_that_is_not_a_statefulset_is_denied_with_the_uid() {
    let mut review = fixture();
    review["request"]["object"] = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}});
    let (status, body) = router_review(&app(""), "/validate", &review).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["uid"], UID);
    assert_eq!(body["response"]["allowed"], false);
    assert_eq!(body["response"]["status"]["code"], 400);
    let message = body["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("request.object is not a valid apps/v1 StatefulSet"),
        "{message}"
    );
}

#[tokio::test]
async fn a_statefulset_with_mistyped_fields_is_denied_with_the_uid() {
    let mut review = fixture();
    review["request"]["object"]["spec"]["serviceName"] = json!(["web"]);
    let (_, body) = router_review(&app(""), "/validate", &review).await;
    assert_eq!(body["response"]["uid"], UID);
    assert_eq!(body["response"]["allowed"], false);
    assert_eq!(body["response"]["status"]["code"], 400);
}

#[tokio::test]
async fn a_mistyped_field_the_review_does_not_read_is_not_judged() {
    // The API server decoded `minReadySeconds` into an int32 before
    // calling; only a forged request carries this, and the review never
    // reads it.
    let mut review = fixture();
    review["request"]["object"]["spec"]["minReadySeconds"] = json!("three");
    let (_, body) = router_review(&app(""), "/validate", &review).await;
    assert_eq!(body["response"]["uid"], UID);
    assert_eq!(body["response"]["allowed"], true, "{body}");
}

#[tokio::test]
async fn a_request_for_another_kind_is_allowed_unchecked() {
    let mut review = fixture();
    review["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
    review["request"]["object"] =
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}});
    let (_, body) = router_review(&app(""), "/validate", &review).await;
    assert_eq!(body["response"]["uid"], UID);
    assert_eq!(body["response"]["allowed"], true);
}

#[tokio::test]
async fn unknown_fields_from_a_newer_api_server_are_tolerated() {
    let mut review = fixture();
    review["request"]["object"]["spec"]["someFutureField"] = json!({"x": 1});
    review["request"]["object"]["spec"]["template"]["spec"]["containers"][0]["futureProbeKnob"] =
        json!(true);
    review["request"]["futureRequestField"] = json!("v");
    let (_, body) = router_review(&app(""), "/validate", &review).await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
}

#[tokio::test]
async fn an_oversized_body_gets_413() {
    let body = vec![b' '; MAX_BODY_BYTES + 1];
    let (status, _) = router_post(&app(""), "/validate", body).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn an_update_of_two_large_objects_fits_the_body_limit() {
    // The API server stores objects up to 3 MiB; an UPDATE carries two.
    let mut review = fixture();
    let big = "x".repeat(3 * 1024 * 1024 - 4096);
    review["request"]["object"]["metadata"]["annotations"]["example.com/blob"] = json!(big);
    review["request"]["operation"] = json!("UPDATE");
    review["request"]["oldObject"] = review["request"]["object"].clone();
    let (status, body) = router_review(&app(""), "/validate", &review).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], true);
}

#[tokio::test]
async fn health_and_metrics_reflect_decisions() {
    let app = app("namespaces: { shop: { mode: audit } }");
    let mut review = fixture();
    review["request"]["object"]["spec"]["serviceName"] = json!("nowhere");
    let (_, body) = router_review(&app, "/validate", &review).await;
    assert_eq!(body["response"]["allowed"], true);
    assert!(
        body["response"].get("warnings").is_none(),
        "audit is silent"
    );
    let text = app.metrics.encode();
    assert!(
        text.contains(r#"sts_guard_rule_findings_total{endpoint="validate",rule="headless-service",action="audit",namespace="shop"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"sts_guard_admission_requests_total{endpoint="validate",decision="allowed"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("sts_guard_admission_duration_seconds_bucket"),
        "{text}"
    );

    let (ready, _) = router_get(&app, "/readyz").await;
    assert_eq!(ready, 200);
    app.accepting
        .store(false, std::sync::atomic::Ordering::Release);
    let (ready, _) = router_get(&app, "/readyz").await;
    assert_eq!(ready, 503);
}

/// Not ready until the policy and exemption objects are first listed: a
/// review before that would use the built-in default instead of the policy.
#[tokio::test]
async fn not_ready_until_the_policy_objects_are_listed() {
    use std::sync::atomic::Ordering;
    let app = app("");
    app.policy_synced.store(false, Ordering::Release);
    let (ready, body) = router_get(&app, "/readyz").await;
    assert_eq!(
        (ready, String::from_utf8_lossy(&body).as_ref()),
        (503, "policy and exemption objects not synced")
    );
    app.policy_synced.store(true, Ordering::Release);
    let (ready, _) = router_get(&app, "/readyz").await;
    assert_eq!(ready, 200);
}

// ---- over real TLS ----

#[tokio::test]
async fn keep_alive_connection_serves_many_reviews() {
    let server = TestServer::start(Policy::default(), Limits::default()).await;
    let mut client = server.client().await;
    for _ in 0..50 {
        let (status, body) = client.review("/validate", &fixture()).await;
        assert_eq!(status, 200);
        assert_eq!(body["response"]["uid"], UID);
    }
    let (status, body) = client.get("/healthz").await.unwrap();
    assert_eq!((status, body.as_slice()), (200, b"ok".as_slice()));
    server.stop();
}

#[tokio::test]
async fn plaintext_http_on_the_webhook_port_gets_no_http_answer() {
    let server = TestServer::start(Policy::default(), Limits::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(
        !buf.starts_with(b"HTTP/1.1 200"),
        "served plaintext: {:?}",
        String::from_utf8_lossy(&buf)
    );
    server.stop();
}

#[tokio::test]
async fn a_client_that_never_sends_headers_is_cut_off() {
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = TestServer::start(Policy::default(), limits).await;
    let mut tls = server.tls_stream().await;
    tls.write_all(b"POST /validate HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Closed by the server (at the header-read timeout) well before 5 s.
    read_to_close(&mut tls, Duration::from_secs(5)).await;
    server.stop();
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let server = TestServer::start(Policy::default(), limits).await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    assert_eq!(a.review("/validate", &fixture()).await.0, 200);
    assert_eq!(b.review("/validate", &fixture()).await.0, 200);
    assert!(
        Client::connect(server.addr, &server.ca()).await.is_err(),
        "third connection served"
    );
    drop(a);
    // Once one closes, a new connection is served again.
    let served = wait_until(Duration::from_secs(5), || async {
        match Client::connect(server.addr, &server.ca()).await {
            Ok(mut c) => c.get("/healthz").await.is_ok(),
            Err(_) => false,
        }
    })
    .await;
    assert!(served);
    server.stop();
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_closes_idle_connections() {
    let server = TestServer::start(Policy::default(), Limits::default()).await;
    let mut idle = server.client().await;
    assert_eq!(idle.get("/healthz").await.unwrap().0, 200);

    // An in-flight request: headers and half the body sent before shutdown.
    let body = serde_json::to_vec(&fixture()).unwrap();
    let mut tls = server.tls_stream().await;
    tls.write_all(post_head(body.len(), "").as_bytes())
        .await
        .unwrap();
    tls.write_all(&body[..body.len() / 2]).await.unwrap();
    tls.flush().await.unwrap();
    // Wait until the server has read the head: the request is in flight.
    let metrics = server.metrics.clone();
    assert!(
        wait_until(Duration::from_secs(5), || {
            let m = metrics.clone();
            async move { m.in_flight.get() == 1 }
        })
        .await
    );

    server.stop();
    // The idle keep-alive connection is closed by the server.
    let closed = tokio::time::timeout(Duration::from_secs(5), idle.conn).await;
    assert!(closed.is_ok(), "idle connection still open after shutdown");

    tls.write_all(&body[body.len() / 2..]).await.unwrap();
    // The in-flight request is answered and the connection closed.
    let text = read_to_close(&mut tls, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(UID), "{text}");
    tokio::time::timeout(Duration::from_secs(5), server.task)
        .await
        .expect("server task ended")
        .unwrap();
}

#[tokio::test]
async fn a_new_certificate_is_served_without_restart_and_a_bad_one_is_refused() {
    let server = TestServer::start(Policy::default(), Limits::default()).await;
    let before = server.client().await.peer_cert;
    // Rotate: new CA and pair in a new folder, then swap in through the watcher's parser.
    let next = tempfile::tempdir().unwrap();
    make_certs(next.path());
    let files = vec![
        std::fs::read(next.path().join("tls.crt")).unwrap(),
        std::fs::read(next.path().join("tls.key")).unwrap(),
    ];
    // A mismatched pair (new cert, old key) is rejected.
    let mismatched = vec![
        files[0].clone(),
        std::fs::read(server.dir.path().join("tls.key")).unwrap(),
    ];
    assert!(server.cert.parse(&mismatched).is_err());
    let half_written = vec![files[0][..files[0].len() / 2].to_vec(), files[1].clone()];
    assert!(server.cert.parse(&half_written).is_err());
    server.cert.swap(server.cert.parse(&files).unwrap());
    let after = Client::connect(server.addr, &next.path().join("ca.crt"))
        .await
        .unwrap()
        .peer_cert;
    assert_ne!(before, after);
    server.stop();
}
