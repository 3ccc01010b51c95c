//! The HTTP edge: decode, look the Service up, call the pure review, encode.
//!
//! Bad input, decided explicitly:
//! - body over [`MAX_BODY_BYTES`] → 413;
//! - not JSON, not an `admission.k8s.io/v1` `AdmissionReview`, or no
//!   `request` → 400 with a one-line reason (there is no uid to echo);
//! - a request for another kind → allowed, uid echoed (not ours to judge;
//!   only a misconfigured webhook sends one);
//! - a StatefulSet request whose object does not parse → denied with the
//!   reason and code 400, uid echoed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::core::admission::{AdmissionRequest, AdmissionResponse};
use kube::core::{DynamicObject, Status};
use serde::Deserialize;

use super::metrics::Metrics;
use crate::admission::{Context, Decision, Endpoint, ObjectRef, review};
use crate::lookup::{Resolved, ServiceSource};
use crate::policy::Policy;

/// The API server accepts objects up to 3 MiB and an UPDATE review carries
/// two of them plus the envelope; 8 MiB leaves room for JSON escaping.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Shared state of the server.
pub struct App {
    pub policy: ArcSwap<Policy>,
    pub services: ServiceSource,
    pub metrics: Arc<Metrics>,
    /// False once shutdown began.
    pub accepting: AtomicBool,
}

impl App {
    pub fn new(policy: Policy, services: ServiceSource, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(App {
            policy: ArcSwap::from_pointee(policy),
            services,
            metrics,
            accepting: AtomicBool::new(true),
        })
    }

    pub fn is_ready(&self) -> bool {
        self.accepting.load(Ordering::Acquire) && self.services.is_synced()
    }
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/validate", post(validate))
        .route("/mutate", post(mutate))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // 413 at once for a declared Content-Length over the limit, before
        // any of the body is read.
        .layer(tower_http::limit::RequestBodyLimitLayer::new(
            MAX_BODY_BYTES,
        ))
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            count_in_flight,
        ))
        .with_state(app)
}

/// [`router`] with the request timeout: 408 when a request is not read and
/// answered within `timeout`.
pub fn with_request_timeout(router: Router, timeout: Duration) -> Router {
    router.layer(tower_http::timeout::TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        timeout,
    ))
}

/// Counts a request from its head to its answer. Once shutdown began, every
/// answer carries `Connection: close`, so keep-alive clients (the API server)
/// reconnect, to a ready replica, instead of reusing this connection.
async fn count_in_flight(
    State(app): State<Arc<App>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    /// Decrements on drop too: a timed-out request's future is dropped.
    struct InFlight<'a>(&'a App);
    impl Drop for InFlight<'_> {
        fn drop(&mut self) {
            self.0.metrics.in_flight.dec();
        }
    }
    app.metrics.in_flight.inc();
    let _guard = InFlight(&app);
    let mut response = next.run(request).await;
    if !app.accepting.load(Ordering::Acquire) {
        response.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
    }
    response
}

async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.is_ready() {
        (StatusCode::OK, "ok").into_response()
    } else if !app.accepting.load(Ordering::Acquire) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "service cache not synced").into_response()
    }
}

async fn validate(State(app): State<Arc<App>>, body: Bytes) -> Response {
    handle(&app, Endpoint::Validate, &body).await
}

async fn mutate(State(app): State<Arc<App>>, body: Bytes) -> Response {
    handle(&app, Endpoint::Mutate, &body).await
}

async fn handle(app: &App, endpoint: Endpoint, body: &[u8]) -> Response {
    let started = Instant::now();
    let request = match decode(body) {
        Ok(request) => request,
        Err(Rejection::BadRequest(reason)) => {
            app.metrics.request(endpoint, "invalid");
            tracing::info!(endpoint = endpoint.as_str(), reason = %redact(&reason), "bad request");
            return (StatusCode::BAD_REQUEST, format!("{reason}\n")).into_response();
        }
        Err(Rejection::Answer(response, outcome)) => {
            app.metrics.request(endpoint, outcome);
            // A decode error quotes the object; another kind's note does not.
            let message = match outcome {
                "invalid" => redact(&response.result.message),
                _ => response.result.message.clone(),
            };
            tracing::info!(endpoint = endpoint.as_str(), uid = %response.uid, outcome, %message, "answered without review");
            return json(&response.into_review());
        }
    };
    let services = match (&endpoint, request.object.as_ref()) {
        (Endpoint::Validate, Some(sts)) => {
            let object = ObjectRef::of(&request, sts);
            match sts.spec.as_ref().and_then(|s| s.service_name.as_deref()) {
                Some(name) if !name.is_empty() => {
                    let (resolved, path) = app.services.resolve(object.namespace, name).await;
                    app.metrics.lookup(path);
                    resolved
                }
                _ => Resolved::none(),
            }
        }
        _ => Resolved::none(),
    };
    let policy = app.policy.load();
    let mut decision = review(
        &request,
        endpoint,
        &Context {
            policy: &policy,
            services: &services,
        },
    );
    let namespace = request.namespace.as_deref().unwrap_or("");
    log_decision(endpoint, &request, &decision);
    // The response takes the decision apart; the metrics need only its
    // label and findings, so those are kept aside instead of a clone.
    let label = Metrics::decision_label(&decision);
    let outcomes = std::mem::take(&mut decision.outcomes);
    let response = json(&decision.into_response(&request).into_review());
    app.metrics.record(
        endpoint,
        namespace,
        label,
        &outcomes,
        started.elapsed().as_secs_f64(),
    );
    response
}

fn log_decision(endpoint: Endpoint, request: &AdmissionRequest<StatefulSet>, decision: &Decision) {
    let rules: Vec<String> = decision
        .outcomes
        .iter()
        .map(|o| format!("{}:{}", o.finding.rule, o.action.label()))
        .collect();
    let interesting = !decision.outcomes.is_empty() || decision.patch.is_some();
    // Object contents never go to the log: ids, names and rule ids only.
    macro_rules! event {
        ($level:expr) => {
            tracing::event!(
                $level,
                endpoint = endpoint.as_str(),
                uid = %request.uid,
                namespace = request.namespace.as_deref().unwrap_or(""),
                name = %request.name,
                operation = ?request.operation,
                dry_run = request.dry_run,
                allowed = decision.allowed(),
                mutations = ?decision.mutations,
                findings = ?rules,
                "reviewed"
            )
        };
    }
    if interesting {
        event!(tracing::Level::INFO);
    } else {
        event!(tracing::Level::DEBUG);
    }
}

/// A reason fit for the log. Decode errors quote what they found
/// (`invalid type: string "...", expected i32`), which is object content:
/// the caller gets the full reason, the log gets every double-quoted string
/// as `"…"`. Backquoted words (field names, variants, numbers) are kept when
/// short and plain, else also replaced. At most 512 bytes.
pub fn redact(reason: &str) -> String {
    const MAX: usize = 512;
    let plain = |word: &str| {
        word.len() <= 64
            && word
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'))
    };
    let mut out = String::with_capacity(reason.len().min(MAX));
    let mut chars = reason.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                // Debug-escaped: a backslash escapes the next character.
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
                out.push_str("\"…\"");
            }
            '`' => {
                let word: String = chars.by_ref().take_while(|c| *c != '`').collect();
                out.push('`');
                out.push_str(if plain(&word) { &word } else { "…" });
                out.push('`');
            }
            c => out.push(c),
        }
        if out.len() > MAX {
            let mut end = MAX;
            while !out.is_char_boundary(end) {
                end -= 1;
            }
            out.truncate(end);
            out.push('…');
            break;
        }
    }
    out
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode response: {e}\n"),
        )
            .into_response(),
    }
}

/// Why a body was not reviewed.
#[derive(Debug)]
pub enum Rejection {
    /// No request to answer: HTTP 400 with this reason.
    BadRequest(String),
    /// A request we answer without review (uid echoed), with its metric label.
    Answer(Box<AdmissionResponse>, &'static str),
}

const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";
const REVIEW_KIND: &str = "AdmissionReview";

/// Decodes an AdmissionReview of a StatefulSet: the envelope and request
/// in full, each object only as far as the review reads it (see
/// [`super::decode`]). Only a body that fails is looked at again, to recover
/// the uid and say what is wrong.
pub fn decode(body: &[u8]) -> Result<AdmissionRequest<StatefulSet>, Rejection> {
    // A body that is valid UTF-8 as a whole (every real one) is parsed as a
    // str: same result, without checking each string of it again.
    let parsed = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<super::decode::Review>(text),
        Err(_) => serde_json::from_slice::<super::decode::Review>(body),
    };
    let review = parsed.map_err(|error| diagnose(body, &error))?;
    check_envelope(&review.api_version, &review.kind)?;
    let request = review
        .request
        .ok_or_else(|| Rejection::BadRequest("AdmissionReview has no request".into()))?
        .into_admission_request(kube::core::TypeMeta {
            api_version: review.api_version,
            kind: review.kind,
        });
    if !is_statefulset(
        &request.kind.group,
        &request.kind.version,
        &request.kind.kind,
    ) {
        return Err(not_ours(&request.uid, &request.kind.kind));
    }
    Ok(request)
}

fn check_envelope(api_version: &str, kind: &str) -> Result<(), Rejection> {
    if api_version != REVIEW_API_VERSION || kind != REVIEW_KIND {
        return Err(Rejection::BadRequest(format!(
            "expected apiVersion {REVIEW_API_VERSION} kind {REVIEW_KIND}, got apiVersion {api_version:?} kind {kind:?}"
        )));
    }
    Ok(())
}

fn is_statefulset(group: &str, version: &str, kind: &str) -> bool {
    group == "apps" && version == "v1" && kind == "StatefulSet"
}

/// Explains a body the typed decode refused with `error`.
fn diagnose(body: &[u8], error: &serde_json::Error) -> Rejection {
    // Just enough of the envelope to find the uid and the kind.
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Envelope {
        #[serde(default)]
        api_version: String,
        #[serde(default)]
        kind: String,
        request: Option<RequestHead>,
    }
    #[derive(Deserialize)]
    struct RequestHead {
        uid: String,
        kind: Option<Gvk>,
    }
    #[derive(Deserialize)]
    struct Gvk {
        #[serde(default)]
        group: String,
        #[serde(default)]
        version: String,
        #[serde(default)]
        kind: String,
    }
    let envelope: Envelope = match serde_json::from_slice(body) {
        Ok(e) => e,
        Err(e) => return Rejection::BadRequest(format!("body is not an AdmissionReview: {e}")),
    };
    if let Err(rejection) = check_envelope(&envelope.api_version, &envelope.kind) {
        return rejection;
    }
    let Some(head) = envelope.request else {
        return Rejection::BadRequest("AdmissionReview has no request".into());
    };
    let kind = head.kind.unwrap_or(Gvk {
        group: String::new(),
        version: String::new(),
        kind: String::new(),
    });
    if !is_statefulset(&kind.group, &kind.version, &kind.kind) {
        return not_ours(&head.uid, &kind.kind);
    }
    // Ours, but the typed decode failed: say where.
    let reason = format!("request.object is not a valid apps/v1 StatefulSet: {error}");
    Rejection::Answer(
        Box::new(denied(&head.uid, reason, 400, "BadRequest")),
        "invalid",
    )
}

/// Another kind: allowed, so a misconfigured webhook cannot block it.
fn not_ours(uid: &str, kind: &str) -> Rejection {
    let mut response = empty_response(uid);
    response.allowed = true;
    response.result.message =
        format!("sts-guard reviews apps/v1 StatefulSets only; {kind:?} allowed unchecked");
    Rejection::Answer(Box::new(response), "not-statefulset")
}

fn denied(uid: &str, reason: String, code: u16, status_reason: &str) -> AdmissionResponse {
    let mut response = empty_response(uid).deny(reason);
    response.result.code = code;
    response.result.reason = status_reason.into();
    response
}

/// A response carrying the uid of a request we could not fully decode.
/// kube's `AdmissionResponse::invalid` leaves the uid empty, which the API
/// server rejects; this keeps it.
fn empty_response(uid: &str) -> AdmissionResponse {
    let request: AdmissionRequest<DynamicObject> = AdmissionRequest {
        types: kube::core::TypeMeta {
            api_version: REVIEW_API_VERSION.into(),
            kind: REVIEW_KIND.into(),
        },
        uid: uid.to_string(),
        ..blank_request()
    };
    let mut response = AdmissionResponse::from(&request);
    response.result = Status::default();
    response
}

fn blank_request() -> AdmissionRequest<DynamicObject> {
    // The smallest valid request, so the struct update above stays readable.
    serde_json::from_value(serde_json::json!({
        "uid": "",
        "kind": {"group": "", "version": "", "kind": ""},
        "resource": {"group": "", "version": "", "resource": ""},
        "name": "",
        "operation": "CREATE",
        "userInfo": {},
    }))
    .expect("static request is valid")
}
