//! Hostile input: a named corpus of requests a webhook should never see from
//! a healthy API server, each with the exact answer sts-guard gives (HTTP
//! status, allowed, uid echoed, message), answered in bounded time, never a
//! panic or a 5xx. Then the transport: slow clients, HTTP/1.0, pipelining,
//! chunked bodies, stalled handshakes, and the limits that bound them.
//!
//! The decisions (see also src/webhook/routes.rs and docs/reliability.md):
//! - not JSON, not an AdmissionReview, or no readable request uid → 400 with
//!   a one-line reason (no uid to echo);
//! - a readable uid and a StatefulSet kind but an object field the review
//!   reads (or another request field) that does not decode → denied, code
//!   400, uid echoed;
//! - another kind (or no kind) → allowed unchecked, uid echoed;
//! - no object (DELETE, or `object: null`) → allowed: nothing to review;
//! - fields sts-guard does not read are not judged, not even decoded: the
//!   API server decoded them into typed structs before calling, and validates
//!   them after the webhooks (minReadySeconds: 1e309, empty containers list).

mod support;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use sts_guard::policy::Policy;
use sts_guard::webhook::Limits;
use sts_guard::webhook::decision::{
    MAX_DENIAL_BYTES, MAX_DENIAL_PROBLEMS, MAX_WARNING_BYTES, MAX_WARNINGS_TOTAL_BYTES,
};
use sts_guard::webhook::routes::MAX_BODY_BYTES;
use support::*;

/// Every hostile request is answered within this (debug build, loaded CI).
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

const ENFORCE: &str = "";
const WARN: &str = "mode: warn";

/// What a case must get back.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This HTTP status; the body (a one-line reason) contains the text.
    Http(u16, &'static str),
    /// 200, uid echoed, allowed, no patch, no warnings.
    Allowed,
    /// 200, uid echoed, allowed; some warning contains the text.
    AllowedWarning(&'static str),
    /// 200, uid echoed, allowed with a JSON patch containing the text.
    Patched(&'static str),
    /// 200, uid echoed, denied with this status code; message contains the text.
    Denied(u16, &'static str),
}

/// Sends `body` to `path` under `policy` and checks the answer against
/// `expect`, and what every answer must be: within [`ANSWER_WITHIN`], never
/// a 5xx; a 4xx with a one-line reason, or a v1 AdmissionReview echoing the
/// uid whose warnings and denial fit the API server's limits.
async fn hostile_request(body: Vec<u8>, path: &str, policy: &str, expect: Expect) {
    let app = app(policy);
    let started = Instant::now();
    let (status, bytes) = tokio::time::timeout(ANSWER_WITHIN, router_post(&app, path, body))
        .await
        .expect("answered in bounded time");
    let elapsed = started.elapsed();
    assert!(elapsed < ANSWER_WITHIN, "took {elapsed:?}");
    assert!(status < 500, "5xx: {status}");
    let text = String::from_utf8_lossy(&bytes);
    if let Expect::Http(code, reason) = expect {
        assert_eq!(status, code, "{text}");
        assert!(text.contains(reason), "{reason:?} not in {text}");
        assert!(
            text.trim_end().lines().count() <= 1,
            "one-line reason: {text}"
        );
        assert!(text.len() < 4096, "short reason: {} bytes", text.len());
        return;
    }
    assert_eq!(status, 200, "{text}");
    let review: Value = serde_json::from_slice(&bytes).expect("JSON review");
    let r = &review["response"];
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let uid = r["uid"].as_str().expect("uid");
    assert!(!uid.is_empty(), "uid echoed");
    assert!(
        uid == UID || uid.starts_with("uuu"),
        "uid echoed: {uid:.40}"
    );
    check_warnings(r);
    let message = r["status"]["message"].as_str().unwrap_or("");
    match expect {
        Expect::Allowed => {
            assert_eq!(r["allowed"], true, "{message}");
            assert!(r.get("patch").is_none(), "unexpected patch");
            assert!(
                r.get("warnings").is_none(),
                "unexpected warnings: {}",
                r["warnings"]
            );
        }
        Expect::AllowedWarning(text) => {
            assert_eq!(r["allowed"], true, "{message}");
            let warnings = r["warnings"].as_array().expect("warnings");
            assert!(
                warnings.iter().any(|w| w.as_str().unwrap().contains(text)),
                "{text:?} not in {warnings:?}"
            );
        }
        Expect::Patched(text) => {
            assert_eq!(r["allowed"], true, "{message}");
            let patch = String::from_utf8(patch_of(r)).unwrap();
            assert!(patch.contains(text), "{text:?} not in {patch:.2000}");
        }
        Expect::Denied(code, text) => {
            assert_eq!(r["allowed"], false);
            assert_eq!(r["status"]["code"], code, "{message:.2000}");
            assert!(message.contains(text), "{text:?} not in {message:.2000}");
            assert!(
                message.len() <= MAX_DENIAL_BYTES,
                "denial of {} bytes",
                message.len()
            );
            assert!(
                !message.chars().any(|c| c.is_control() && c != '\n'),
                "raw control character in {message:?}"
            );
        }
        Expect::Http(..) => unreachable!(),
    }
}

/// Warnings within the API server's limits, single line, no control chars.
fn check_warnings(response: &Value) {
    let Some(warnings) = response["warnings"].as_array() else {
        return;
    };
    let mut total = 0;
    for w in warnings {
        let w = w.as_str().unwrap();
        assert!(w.len() <= MAX_WARNING_BYTES, "warning of {} bytes", w.len());
        assert!(!w.chars().any(char::is_control), "control char in {w:?}");
        total += w.len();
    }
    assert!(total <= MAX_WARNINGS_TOTAL_BYTES, "warnings total {total}");
}

// ---- building bodies ----

fn to_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

fn with(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut r = fixture();
    edit(&mut r);
    to_bytes(&r)
}

fn object(r: &mut Value) -> &mut Value {
    &mut r["request"]["object"]
}

fn containers(r: &mut Value) -> &mut Vec<Value> {
    object(r)["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
}

/// The fixture with `"__HOLE__"` (a JSON string) replaced by raw bytes.
fn splice(edit: impl FnOnce(&mut Value), raw: &[u8]) -> Vec<u8> {
    let body = with(edit);
    let hole = b"\"__HOLE__\"";
    let at = body
        .windows(hole.len())
        .position(|w| w == hole)
        .expect("hole in body");
    [&body[..at], raw, &body[at + hole.len()..]].concat()
}

/// An annotation the review reads (every `sts-guard.io/` one is decoded).
fn annotation_hole(r: &mut Value) {
    object(r)["metadata"]["annotations"]["sts-guard.io/note"] = json!("__HOLE__");
}

/// An annotation the review skips unread.
fn other_annotation_hole(r: &mut Value) {
    object(r)["metadata"]["annotations"]["example.com/x"] = json!("__HOLE__");
}

/// A number the review reads: the first container's liveness period.
fn probe_period_hole(r: &mut Value) {
    containers(r)[0]["livenessProbe"]["periodSeconds"] = json!("__HOLE__");
}

/// A number the review does not read: the API server decoded it into an
/// int32 before calling, so only a forged request can carry garbage there.
fn replicas_hole(r: &mut Value) {
    object(r)["spec"]["replicas"] = json!("__HOLE__");
}

fn bare_container(name: &str) -> Value {
    json!({"name": name, "image": "busybox"})
}

fn thousands_of_containers(r: &mut Value) {
    *containers(r) = (0..5000)
        .map(|i| bare_container(&format!("c{i:04}")))
        .collect();
}

fn nested(depth: usize) -> Vec<u8> {
    let mut s = "[".repeat(depth);
    s.push_str(&"]".repeat(depth));
    s.into_bytes()
}

// ---- the corpus: each request, then the answer it must get ----

mod corpus {
    use super::*;

    #[tokio::test]
    async fn deeply_nested_body() {
        let body = nested(1_000_000);
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Http(400, "not an AdmissionReview"),
        )
        .await;
    }

    #[tokio::test]
    async fn deeply_nested_ignored_field() {
        let body = splice(
            |r| object(r)["spec"]["someFutureField"] = json!("__HOLE__"),
            &nested(100_000),
        );
        hostile_request(body, "/validate", ENFORCE, Expect::Allowed).await;
    }

    /// managedFields are skipped unread, iteratively: no recursion to exhaust.
    #[tokio::test]
    async fn deeply_nested_managed_fields() {
        let body = splice(
            |r| object(r)["metadata"]["managedFields"][0]["fieldsV1"] = json!("__HOLE__"),
            &nested(200),
        );
        hostile_request(body, "/validate", ENFORCE, Expect::Allowed).await;
    }

    #[tokio::test]
    async fn deeply_nested_label_map() {
        let mut v = json!("leaf");
        for _ in 0..200 {
            v = json!({ "k": v });
        }
        let body = with(|r| object(r)["metadata"]["labels"] = v);
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(400, "invalid type: map, expected a string"),
        )
        .await;
    }

    #[tokio::test]
    async fn multi_mb_annotation_value() {
        let body = with(|r| {
            object(r)["metadata"]["annotations"]["example.com/blob"] = json!("x".repeat(7 << 20))
        });
        hostile_request(body, "/validate", ENFORCE, Expect::Allowed).await;
    }

    #[tokio::test]
    async fn multi_mb_container_name() {
        let body = with(|r| {
            let c = &mut containers(r)[0];
            c["name"] = json!("n".repeat(2 << 20));
            c.as_object_mut().unwrap().remove("livenessProbe");
        });
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(
                403,
                r#"- [liveness-probe] spec.template.spec.containers[0] "nnnnnnnn"#,
            ),
        )
        .await;
    }

    #[tokio::test]
    async fn multi_mb_uid() {
        let body = with(|r| r["request"]["uid"] = json!("u".repeat(3 << 20)));
        hostile_request(body, "/validate", ENFORCE, Expect::Allowed).await;
    }

    #[tokio::test]
    async fn body_just_over_the_limit() {
        let mut body = to_bytes(&fixture());
        body.resize(MAX_BODY_BYTES + 1, b' ');
        hostile_request(body, "/validate", ENFORCE, Expect::Http(413, "")).await;
    }

    #[tokio::test]
    async fn whitespace_padded_body() {
        let mut body = vec![b' '; 1 << 20];
        body.extend(to_bytes(&fixture()));
        body.extend(vec![b'\n'; 1 << 20]);
        hostile_request(body, "/validate", ENFORCE, Expect::Allowed).await;
    }

    #[tokio::test]
    async fn invalid_utf8_in_annotation_value() {
        let body = splice(annotation_hole, b"\"caf\xc3\x28\xff\"");
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(400, "invalid unicode code point"),
        )
        .await;
    }

    #[tokio::test]
    async fn invalid_utf8_in_uid() {
        let body = splice(|r| r["request"]["uid"] = json!("__HOLE__"), b"\"\xff\xfe\"");
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Http(400, "invalid unicode code point"),
        )
        .await;
    }

    #[tokio::test]
    async fn lone_surrogate_escape() {
        let body = splice(annotation_hole, br#""\ud800""#);
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(400, "hex escape"),
        )
        .await;
    }

    #[tokio::test]
    async fn invalid_utf8_in_an_unread_annotation() {
        let body = splice(other_annotation_hole, b"\"caf\xc3\x28\xff\"");
        hostile_request(body, "/validate", ENFORCE, Expect::Allowed).await;
    }

    #[tokio::test]
    async fn lone_surrogate_in_an_unread_annotation() {
        let body = splice(other_annotation_hole, br#""\ud800""#);
        hostile_request(body, "/validate", ENFORCE, Expect::Allowed).await;
    }

    #[tokio::test]
    async fn nul_escape_in_annotation_value() {
        let body = splice(annotation_hole, br#""a\u0000b""#);
        hostile_request(body, "/validate", ENFORCE, Expect::Allowed).await;
    }

    #[tokio::test]
    async fn probe_period_1e309() {
        let body = splice(probe_period_hole, b"1e309");
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(400, "number out of range"),
        )
        .await;
    }

    #[tokio::test]
    async fn probe_period_minus_one() {
        let body = splice(probe_period_hole, b"-1");
        hostile_request(body, "/validate", ENFORCE, Expect::Allowed).await;
    }

    #[tokio::test]
    async fn probe_period_2_pow_64() {
        let body = splice(probe_period_hole, b"18446744073709551616");
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(400, "expected i32"),
        )
        .await;
    }

    #[tokio::test]
    async fn probe_period_2_pow_31() {
        let body = splice(probe_period_hole, b"2147483648");
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(400, "expected i32"),
        )
        .await;
    }

    #[tokio::test]
    async fn probe_period_fraction() {
        let body = splice(probe_period_hole, b"3.5");
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(400, "expected i32"),
        )
        .await;
    }

    #[tokio::test]
    async fn replicas_out_of_range_is_refused_now_that_disruption_budget_reads_it() {
        let body = splice(replicas_hole, b"1e309");
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(400, "number out of range"),
        )
        .await;
    }

    #[tokio::test]
    async fn a_field_out_of_range_that_is_not_read_is_not_judged() {
        let body = splice(
            |r| object(r)["spec"]["minReadySeconds"] = json!("__HOLE__"),
            b"1e309",
        );
        hostile_request(body, "/validate", ENFORCE, Expect::Allowed).await;
    }

    #[tokio::test]
    async fn duplicate_uid_key() {
        let body = splice(
            |r| r["request"]["uid"] = json!("__HOLE__"),
            format!(r#""{UID}", "uid": "other""#).as_bytes(),
        );
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Http(400, "duplicate field `uid`"),
        )
        .await;
    }

    #[tokio::test]
    async fn duplicate_object_key() {
        let object = to_bytes(&fixture()["request"]["object"]);
        let mut raw = object.clone();
        raw.extend(b", \"object\": ");
        raw.extend(object);
        let body = splice(|r| r["request"]["object"] = json!("__HOLE__"), &raw);
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(400, "duplicate field `object`"),
        )
        .await;
    }

    #[tokio::test]
    async fn duplicate_annotation_key_last_wins() {
        let body = splice(
            |r| object(r)["metadata"]["annotations"] = json!("__HOLE__"),
            br#"{"sts-guard.io/parallel": "true", "sts-guard.io/parallel": "false"}"#,
        );
        hostile_request(body, "/mutate", ENFORCE, Expect::Allowed).await;
    }

    #[tokio::test]
    async fn tilde_and_slash_in_annotation_keys() {
        let body = with(|r| {
            let a = &mut object(r)["metadata"]["annotations"];
            a["a~1b/c~0d"] = json!("x");
            a["~"] = json!("y");
            a["/"] = json!("z");
            a["sts-guard.io/parallel"] = json!("true");
        });
        hostile_request(
            body,
            "/mutate",
            ENFORCE,
            Expect::Patched(r#""path":"/spec/podManagementPolicy""#),
        )
        .await;
    }

    #[tokio::test]
    async fn tilde_and_slash_in_container_names_mutate() {
        let body = with(|r| {
            containers(r)[0]["name"] = json!("a/b~0c~1");
            object(r)["metadata"]["annotations"]["sts-guard.io/startup-probe"] = json!("true");
        });
        hostile_request(
            body,
            "/mutate",
            ENFORCE,
            Expect::Patched(r#""path":"/spec/template/spec/containers/0/startupProbe""#),
        )
        .await;
    }

    #[tokio::test]
    async fn tilde_and_slash_in_container_names_validate() {
        let body = with(|r| {
            let c = &mut containers(r)[1];
            c["name"] = json!("m/e~t");
            c.as_object_mut().unwrap().remove("readinessProbe");
        });
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(403, r#""m/e~t" has no readinessProbe"#),
        )
        .await;
    }

    /// Terminal escapes, CR LF and NUL in a container name and in the
    /// request name.
    fn names_with_control_characters() -> Vec<u8> {
        with(|r| {
            let c = &mut containers(r)[0];
            c["name"] = json!("app\u{0}\u{1b}[31mred\r\nX-Injected: 1");
            c.as_object_mut().unwrap().remove("livenessProbe");
            r["request"]["name"] = json!("web\n\u{7}");
        })
    }

    #[tokio::test]
    async fn control_characters_in_names() {
        hostile_request(
            names_with_control_characters(),
            "/validate",
            ENFORCE,
            Expect::Denied(
                403,
                r#""app\0\u{1b}[31mred\r\nX-Injected: 1" has no livenessProbe"#,
            ),
        )
        .await;
    }

    #[tokio::test]
    async fn control_characters_in_warnings() {
        hostile_request(
            names_with_control_characters(),
            "/validate",
            WARN,
            Expect::AllowedWarning("has no livenessProbe"),
        )
        .await;
    }

    /// 5,000 containers without probes: 10,000 problems.
    fn five_thousand_containers() -> Vec<u8> {
        with(thousands_of_containers)
    }

    #[tokio::test]
    async fn thousands_of_containers_enforced() {
        hostile_request(
            five_thousand_containers(),
            "/validate",
            ENFORCE,
            Expect::Denied(403, "has 10000 problems"),
        )
        .await;
    }

    #[tokio::test]
    async fn thousands_of_containers_warned() {
        hostile_request(
            five_thousand_containers(),
            "/validate",
            WARN,
            Expect::AllowedWarning("more sts-guard warnings"),
        )
        .await;
    }

    #[tokio::test]
    async fn a_denial_for_thousands_of_problems_lists_the_first_and_counts_the_rest() {
        let (_, body) = router_post(&app(ENFORCE), "/validate", five_thousand_containers()).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        let message = body["response"]["status"]["message"].as_str().unwrap();
        let listed = message.lines().filter(|l| l.starts_with("- [")).count();
        assert_eq!(listed, MAX_DENIAL_PROBLEMS, "{message}");
        let last = message.lines().last().unwrap();
        assert_eq!(
            last,
            format!(
                "- ... and {} more (run sts-guard check for all)",
                10_000 - MAX_DENIAL_PROBLEMS
            )
        );
        assert!(message.starts_with("statefulset shop/web has 10000 problems:"));
    }

    #[tokio::test]
    async fn thousands_of_warnings_fit_the_api_servers_limits() {
        let (_, body) = router_post(&app(WARN), "/validate", five_thousand_containers()).await;
        let body: Value = serde_json::from_slice(&body).unwrap();
        let warnings: Vec<String> =
            serde_json::from_value(body["response"]["warnings"].clone()).unwrap();
        let total: usize = warnings.iter().map(String::len).sum();
        assert!(total <= MAX_WARNINGS_TOTAL_BYTES, "{total}");
        assert!(warnings.len() > 10, "most important first, as many as fit");
        let last = warnings.last().unwrap();
        let dropped: usize = last.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(warnings.len() - 1 + dropped, 10_000, "{last}");
    }

    #[tokio::test]
    async fn thousands_of_containers_mutated() {
        let body = with(|r| {
            thousands_of_containers(r);
            for c in containers(r) {
                c["readinessProbe"] = json!({"tcpSocket": {"port": 80}});
            }
            object(r)["metadata"]["annotations"]["sts-guard.io/startup-probe"] = json!("true");
        });
        hostile_request(
            body,
            "/mutate",
            ENFORCE,
            Expect::Patched("/spec/template/spec/containers/4999/startupProbe"),
        )
        .await;
    }

    #[tokio::test]
    async fn thousands_of_annotations() {
        let body = with(|r| {
            let a = object(r)["metadata"]["annotations"]
                .as_object_mut()
                .unwrap();
            for i in 0..2000 {
                a.insert(format!("example.com/k{i}"), json!("v".repeat(1000)));
            }
        });
        hostile_request(body, "/validate", ENFORCE, Expect::Allowed).await;
    }

    #[tokio::test]
    async fn huge_exempt_annotation() {
        let body = with(|r| {
            containers(r)[0]
                .as_object_mut()
                .unwrap()
                .remove("livenessProbe");
            object(r)["metadata"]["annotations"]["sts-guard.io/exempt"] =
                json!(vec!["no-such-rule"; 10_000].join(","));
        });
        hostile_request(
            body,
            "/validate",
            "allowOwnerExemptions: true",
            Expect::Denied(403, "has no livenessProbe"),
        )
        .await;
    }

    #[tokio::test]
    async fn startup_timeout_overflow() {
        let body = with(|r| {
            let a = &mut object(r)["metadata"]["annotations"];
            a["sts-guard.io/startup-probe"] = json!("true");
            a["sts-guard.io/startup-timeout"] = json!("99999999999999999999999h");
        });
        hostile_request(
            body,
            "/mutate",
            ENFORCE,
            Expect::Patched(r#""failureThreshold":30"#),
        )
        .await;
    }

    #[tokio::test]
    async fn kind_statefulset_object_pod() {
        let body = with(|r| {
            *object(r) = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
        });
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(400, "request.object is not a valid apps/v1 StatefulSet"),
        )
        .await;
    }

    #[tokio::test]
    async fn object_is_a_string() {
        let body = with(|r| *object(r) = json!("statefulset"));
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(400, "invalid type: string"),
        )
        .await;
    }

    #[tokio::test]
    async fn truncated_body() {
        let whole = to_bytes(&fixture());
        let body = whole[..whole.len() / 2].to_vec();
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Http(400, "EOF while parsing"),
        )
        .await;
    }

    #[tokio::test]
    async fn null_object_on_create() {
        let body = with(|r| *object(r) = Value::Null);
        hostile_request(body, "/validate", ENFORCE, Expect::Allowed).await;
    }

    #[tokio::test]
    async fn null_request() {
        let body = with(|r| r["request"] = Value::Null);
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Http(400, "has no request"),
        )
        .await;
    }

    #[tokio::test]
    async fn null_uid() {
        let body = with(|r| r["request"]["uid"] = Value::Null);
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Http(400, "invalid type: null, expected a string"),
        )
        .await;
    }

    #[tokio::test]
    async fn uid_is_a_number() {
        let body = with(|r| r["request"]["uid"] = json!(42));
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Http(400, "invalid type: integer"),
        )
        .await;
    }

    #[tokio::test]
    async fn uid_is_an_object() {
        let body = with(|r| r["request"]["uid"] = json!({"id": UID}));
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Http(400, "invalid type: map"),
        )
        .await;
    }

    #[tokio::test]
    async fn null_name() {
        let body = with(|r| r["request"]["name"] = Value::Null);
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(400, "invalid type: null, expected a string"),
        )
        .await;
    }

    #[tokio::test]
    async fn null_namespace() {
        let body = with(|r| r["request"]["namespace"] = Value::Null);
        hostile_request(body, "/validate", ENFORCE, Expect::Allowed).await;
    }

    #[tokio::test]
    async fn null_kind() {
        let body = with(|r| r["request"]["kind"] = Value::Null);
        hostile_request(body, "/validate", ENFORCE, Expect::Allowed).await;
    }

    #[tokio::test]
    async fn null_user_info() {
        let body = with(|r| r["request"]["userInfo"] = Value::Null);
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(400, "invalid type: null"),
        )
        .await;
    }

    #[tokio::test]
    async fn unknown_operation() {
        let body = with(|r| r["request"]["operation"] = json!("PATCH"));
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(400, "unknown variant `PATCH`"),
        )
        .await;
    }

    #[tokio::test]
    async fn empty_containers_list() {
        let body = with(|r| containers(r).clear());
        hostile_request(body, "/validate", ENFORCE, Expect::Allowed).await;
    }

    #[tokio::test]
    async fn missing_spec() {
        let body = with(|r| {
            object(r).as_object_mut().unwrap().remove("spec");
        });
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Denied(403, "headless-service"),
        )
        .await;
    }

    /// Found by fuzz/review_bytes: the parallel mutation patched
    /// `/spec/podManagementPolicy` into an object without a spec, a patch that
    /// does not apply. Now no patch.
    #[tokio::test]
    async fn missing_spec_mutate() {
        let body = with(|r| {
            object(r).as_object_mut().unwrap().remove("spec");
            object(r)["metadata"]["annotations"]["sts-guard.io/parallel"] = json!("true");
        });
        hostile_request(body, "/mutate", ENFORCE, Expect::Allowed).await;
    }

    #[tokio::test]
    async fn empty_body() {
        let body = Vec::new();
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Http(400, "EOF while parsing"),
        )
        .await;
    }

    #[tokio::test]
    async fn json_null_body() {
        let body = b"null".to_vec();
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Http(400, "not an AdmissionReview"),
        )
        .await;
    }

    #[tokio::test]
    async fn json_array_body() {
        let body = to_bytes(&json!([fixture()]));
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Http(400, "not an AdmissionReview"),
        )
        .await;
    }

    #[tokio::test]
    async fn utf8_bom_prefix() {
        let body = [b"\xef\xbb\xbf".as_slice(), &to_bytes(&fixture())].concat();
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::Http(400, "expected value"),
        )
        .await;
    }

    #[tokio::test]
    async fn dry_run_missing_service() {
        let body = with(|r| {
            r["request"]["dryRun"] = json!(true);
            object(r)["spec"]["serviceName"] = json!("not-yet");
        });
        hostile_request(
            body,
            "/validate",
            ENFORCE,
            Expect::AllowedWarning("allowed on dry-run"),
        )
        .await;
    }
}

// ---- the routes ----

#[tokio::test]
async fn wrong_method_gets_405() {
    let (status, _) = router_get(&app(ENFORCE), "/validate").await;
    assert_eq!(status, 405);
}

#[tokio::test]
async fn unknown_path_gets_404() {
    let (status, _) = router_post(&app(ENFORCE), "/validate/../admin", to_bytes(&fixture())).await;
    assert_eq!(status, 404);
}

/// The content type is not checked: the API server always sends JSON, and
/// the body is judged on its own.
#[tokio::test]
async fn a_wrong_content_type_is_not_held_against_a_valid_review() {
    let request = Request::post("/validate")
        .header("content-type", "text/plain; charset=latin1")
        .body(Body::from(to_bytes(&fixture())))
        .unwrap();
    let (status, bytes) = router_send(&app(ENFORCE), request).await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["response"]["allowed"], true);
}

// ---- over a real TLS connection ----

fn short_limits() -> Limits {
    Limits {
        header_read_timeout: Duration::from_millis(800),
        handshake_timeout: Duration::from_millis(800),
        request_timeout: Duration::from_millis(1500),
        ..Limits::default()
    }
}

/// A normal review on a fresh connection is answered promptly.
async fn still_serving(server: &TestServer) {
    let started = Instant::now();
    let mut c = server.client().await;
    let (status, body) = c.review("/validate", &fixture()).await;
    assert_eq!((status, body["response"]["uid"].as_str()), (200, Some(UID)));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_client_sending_headers_one_byte_a_second_is_cut_off_at_the_header_timeout() {
    let server = TestServer::start(Policy::default(), short_limits()).await;
    let mut slow = server.tls_stream().await;
    let head = post_head(10, "");
    let started = Instant::now();
    let writer = async {
        for b in head.as_bytes() {
            if slow.write_all(&[*b]).await.is_err() || slow.flush().await.is_err() {
                break;
            }
            // Meanwhile others are served.
            still_serving(&server).await;
            tokio::time::sleep(Duration::from_secs(1)).await;
            if started.elapsed() > Duration::from_secs(5) {
                break;
            }
        }
    };
    writer.await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(1), slow.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "slow client still held after {:?}",
        started.elapsed()
    );
    // Cut at the header-read timeout (0.8 s) plus a byte's wait, not after 5 s.
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(!String::from_utf8_lossy(&rest).contains("200 OK"));
    server.stop();
}

#[tokio::test]
async fn a_client_sending_its_body_one_byte_a_second_gets_408_at_the_request_timeout() {
    let server = TestServer::start(Policy::default(), short_limits()).await;
    let body = to_bytes(&fixture());
    let mut slow = server.tls_stream().await;
    slow.write_all(post_head(body.len(), "").as_bytes())
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    for b in &body {
        if slow.write_all(&[*b]).await.is_err() || slow.flush().await.is_err() {
            break;
        }
        // The server answers 408 when the request timeout (1.5 s) passes.
        let mut buf = [0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(1), slow.read(&mut buf)).await {
            answer.extend(&buf[..n]);
            break;
        }
        still_serving(&server).await;
        if started.elapsed() > Duration::from_secs(8) {
            break;
        }
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    server.stop();
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_gets_408_at_the_request_timeout() {
    let server = TestServer::start(Policy::default(), short_limits()).await;
    let mut s = server.tls_stream().await;
    s.write_all(post_head(1000, "").as_bytes()).await.unwrap();
    s.write_all(b"{\"kind\":").await.unwrap();
    let started = Instant::now();
    let text = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(1400));
    server.stop();
}

#[tokio::test]
async fn a_stalled_tls_handshake_is_closed_at_the_handshake_timeout() {
    let server = TestServer::start(Policy::default(), short_limits()).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    // Half a ClientHello, then nothing.
    tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "handshake held");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(700) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    still_serving(&server).await;
    server.stop();
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_at_the_handshake_timeout() {
    let server = TestServer::start(Policy::default(), short_limits()).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "silent connection held");
    server.stop();
}

#[tokio::test]
async fn garbage_instead_of_a_client_hello_is_refused_at_once() {
    let server = TestServer::start(Policy::default(), Limits::default()).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(&[0xff; 4096]).await.unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(2), tcp.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "garbage held the connection");
    assert!(!String::from_utf8_lossy(&buf).contains("HTTP/"));
    server.stop();
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let server = TestServer::start(Policy::default(), short_limits()).await;
    let mut c = server.client().await;
    assert_eq!(c.review("/validate", &fixture()).await.0, 200);
    let closed = tokio::time::timeout(Duration::from_secs(5), c.conn).await;
    assert!(closed.is_ok(), "idle connection kept open");
    server.stop();
}

#[tokio::test]
async fn http_1_0_is_answered_and_the_connection_closed() {
    let server = TestServer::start(Policy::default(), Limits::default()).await;
    let body = to_bytes(&fixture());
    let mut s = server.tls_stream().await;
    let head = format!(
        "POST /validate HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let text = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    assert!(text.contains(UID), "{text}");
    server.stop();
}

#[tokio::test]
async fn a_chunked_body_is_reviewed() {
    let server = TestServer::start(Policy::default(), Limits::default()).await;
    let body = to_bytes(&fixture());
    let mut s = server.tls_stream().await;
    let mut req = b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for chunk in body.chunks(1000) {
        req.extend(format!("{:x}\r\n", chunk.len()).as_bytes());
        req.extend(chunk);
        req.extend(b"\r\n");
    }
    req.extend(b"0\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let text = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#""allowed":true"#), "{text}");
    server.stop();
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_gets_413() {
    let server = TestServer::start(Policy::default(), Limits::default()).await;
    let mut s = server.tls_stream().await;
    s.write_all(
        b"POST /validate HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    let chunk = vec![b' '; 1 << 20];
    let mut answer = String::new();
    for _ in 0..(MAX_BODY_BYTES >> 20) + 2 {
        let mut piece = format!("{:x}\r\n", chunk.len()).into_bytes();
        piece.extend(&chunk);
        piece.extend(b"\r\n");
        if s.write_all(&piece).await.is_err() {
            break;
        }
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut buf = vec![0u8; 4096];
    if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
        answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    }
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    server.stop();
}

#[tokio::test]
async fn a_declared_content_length_over_the_limit_gets_413_before_the_body() {
    let server = TestServer::start(Policy::default(), Limits::default()).await;
    let mut s = server.tls_stream().await;
    s.write_all(post_head(MAX_BODY_BYTES + 1, "").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    server.stop();
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let server = TestServer::start(Policy::default(), Limits::default()).await;
    let mut first = fixture();
    first["request"]["uid"] = json!("first-uid");
    let mut second = fixture();
    second["request"]["uid"] = json!("second-uid");
    let (a, b) = (to_bytes(&first), to_bytes(&second));
    let mut burst = post_head(a.len(), "").into_bytes();
    burst.extend(&a);
    burst.extend(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n");
    burst.extend(post_head(b.len(), "Connection: close\r\n").as_bytes());
    burst.extend(&b);
    let mut s = server.tls_stream().await;
    s.write_all(&burst).await.unwrap();
    let text = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert_eq!(text.matches("HTTP/1.1 200").count(), 3, "{text}");
    let (i, j, k) = (
        text.find("first-uid").expect("first answered"),
        text.find("\r\n\r\nok").expect("health answered"),
        text.find("second-uid").expect("second answered"),
    );
    assert!(i < j && j < k, "answered out of order: {text}");
    server.stop();
}

#[tokio::test]
async fn expect_100_continue_is_honoured() {
    let server = TestServer::start(Policy::default(), Limits::default()).await;
    let body = to_bytes(&fixture());
    let mut s = server.tls_stream().await;
    s.write_all(post_head(body.len(), "Expect: 100-continue\r\nConnection: close\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 256];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 100"));
    s.write_all(&body).await.unwrap();
    let text = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    server.stop();
}

#[tokio::test]
async fn too_many_or_too_large_headers_are_refused() {
    let server = TestServer::start(Policy::default(), Limits::default()).await;
    // More than hyper's 100 headers.
    let mut s = server.tls_stream().await;
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    s.write_all(post_head(0, &many).as_bytes()).await.unwrap();
    let text = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    // One header larger than hyper's read buffer (~400 KB).
    let mut s = server.tls_stream().await;
    let huge = format!("X-Big: {}\r\n", "b".repeat(1 << 20));
    let _ = s.write_all(post_head(0, &huge).as_bytes()).await;
    let text = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "{text:.200}"
    );
    still_serving(&server).await;
    server.stop();
}

#[tokio::test]
async fn conflicting_length_headers_get_400() {
    let server = TestServer::start(Policy::default(), Limits::default()).await;
    let mut s = server.tls_stream().await;
    s.write_all(b"POST /validate HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello")
        .await
        .unwrap();
    let text = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    server.stop();
}

#[tokio::test]
async fn a_request_line_that_is_not_http_gets_400() {
    let server = TestServer::start(Policy::default(), Limits::default()).await;
    let mut s = server.tls_stream().await;
    s.write_all(b"\x00\x01\x02 HELLO\r\n\r\n").await.unwrap();
    let text = read_to_close(&mut s, Duration::from_secs(5)).await;
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
    still_serving(&server).await;
    server.stop();
}
