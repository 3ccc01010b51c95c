//! The HTTP edge: decode, fetch what the rules declare they need, call the
//! pure review, render the answer for the API server. Only this module and
//! [`super::wire`] and [`super::decision`] know HTTP and the API server's
//! limits (the body size here, warnings and denials there). The webhook's
//! files point one way: routes → metrics, wire → decision.
//!
//! A body over [`MAX_BODY_BYTES`] gets 413; the other bad inputs are
//! decided in [`super::wire`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::decision::{Decision, DecisionLabel, Endpoint};
use super::metrics::Metrics;
use super::wire::{Admission, Rejection, decode};
use crate::lookup::{Fetched, KindInfo, LookupSource};
use crate::policy::Policy;
use crate::review::{self, Action, WarnReason};
use crate::rules::FindingKind;
use arc_swap::ArcSwap;
use bytes::Bytes;
use futures::FutureExt;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode};

/// What every route answers with.
pub type Response = hyper::Response<Full<Bytes>>;

/// What a request body's error may be (hyper's, axum's in tests).
type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The API server accepts objects up to 3 MiB and an UPDATE review carries
/// two of them plus the envelope; 8 MiB leaves room for JSON escaping.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// Shared state of the server.
pub struct App {
    pub policy: ArcSwap<Policy>,
    pub lookups: LookupSource,
    pub metrics: Arc<Metrics>,
    /// False once shutdown began.
    pub accepting: AtomicBool,
    /// False while the served certificate is not yet trusted by the webhook
    /// configurations' bundle (managed certificates); always true with
    /// `--cert/--key`.
    pub tls_trusted: Arc<AtomicBool>,
    /// False until the policy and exemption objects are first listed
    /// (always true without a cluster).
    pub policy_synced: Arc<AtomicBool>,
    /// True once `serve --admission-policies` has applied the generated
    /// ValidatingAdmissionPolicies: the API server then reports the field
    /// rules' findings, and the webhook leaves them out of its answers.
    pub field_rules_in_api_server: AtomicBool,
}

impl App {
    pub fn new(policy: Policy, lookups: LookupSource, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(App {
            policy: ArcSwap::from_pointee(policy),
            lookups,
            metrics,
            accepting: AtomicBool::new(true),
            tls_trusted: Arc::new(AtomicBool::new(true)),
            policy_synced: Arc::new(AtomicBool::new(true)),
            field_rules_in_api_server: AtomicBool::new(false),
        })
    }

    pub fn is_ready(&self) -> bool {
        self.accepting.load(Ordering::Acquire)
            && self.lookups.is_synced()
            && self.tls_trusted.load(Ordering::Acquire)
            && self.policy_synced.load(Ordering::Acquire)
    }
}

/// The webhook's HTTP service: four routes, the body limit, the request
/// timeout and the in-flight count, written out on hyper's own types (a
/// router and tower layers around them cost about a tenth of a review's
/// CPU). A `tower::Service`, so tests call it without a socket.
#[derive(Clone)]
pub struct Routes {
    app: Arc<App>,
    request_timeout: Option<Duration>,
}

pub fn router(app: Arc<App>) -> Routes {
    Routes {
        app,
        request_timeout: None,
    }
}

impl Routes {
    /// 408 when a request is not read and answered within `timeout`.
    pub fn with_request_timeout(self, timeout: Duration) -> Routes {
        Routes {
            request_timeout: Some(timeout),
            ..self
        }
    }

    /// Counts a request from its head to its answer. Once shutdown began,
    /// every answer carries `Connection: close`, so keep-alive clients (the
    /// API server) reconnect, to a ready replica, instead of reusing this
    /// connection.
    async fn answer<B>(self, request: Request<B>) -> Response
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BodyError>,
    {
        /// Decrements on drop too: a timed-out request's future is dropped.
        struct InFlight<'a>(&'a App);
        impl Drop for InFlight<'_> {
            fn drop(&mut self) {
                self.0.metrics.in_flight.dec();
            }
        }
        let app = &self.app;
        app.metrics.in_flight.inc();
        let guard = InFlight(app);
        let mut response = match self.request_timeout {
            Some(timeout) => tokio::time::timeout(timeout, route(app, request))
                .await
                .unwrap_or_else(|_| text(StatusCode::REQUEST_TIMEOUT, "")),
            None => route(app, request).await,
        };
        drop(guard);
        if !app.accepting.load(Ordering::Acquire) {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl<B> tower::Service<Request<B>> for Routes
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BodyError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        Box::pin(self.clone().answer(request).map(Ok))
    }
}

async fn route<B>(app: &App, request: Request<B>) -> Response
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BodyError>,
{
    let get = matches!(*request.method(), Method::GET | Method::HEAD);
    let post = request.method() == Method::POST;
    match request.uri().path() {
        "/validate" if post => post_review(app, Endpoint::Validate, request).await,
        "/mutate" if post => post_review(app, Endpoint::Mutate, request).await,
        "/healthz" if get => text(StatusCode::OK, "ok"),
        "/readyz" if get => readyz(app),
        "/validate" | "/mutate" => not_allowed("POST"),
        "/healthz" | "/readyz" => not_allowed("GET,HEAD"),
        _ => text(StatusCode::NOT_FOUND, ""),
    }
}

/// The body, within [`MAX_BODY_BYTES`], then the review. 413 at once for a
/// declared Content-Length over the limit, before any of the body is read.
async fn post_review<B>(app: &App, endpoint: Endpoint, request: Request<B>) -> Response
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BodyError>,
{
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded\n");
    }
    let body = match Limited::new(request.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<LengthLimitError>() => {
            return text(StatusCode::PAYLOAD_TOO_LARGE, "length limit exceeded\n");
        }
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("cannot read the request body: {e}\n"),
            );
        }
    };
    handle(app, endpoint, &body).await
}

fn readyz(app: &App) -> Response {
    if app.is_ready() {
        text(StatusCode::OK, "ok")
    } else if !app.accepting.load(Ordering::Acquire) {
        text(StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if !app.tls_trusted.load(Ordering::Acquire) {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "serving certificate not yet trusted by the webhook configurations",
        )
    } else if !app.policy_synced.load(Ordering::Acquire) {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            "policy and exemption objects not synced",
        )
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "service cache not synced")
    }
}

fn not_allowed(allow: &'static str) -> Response {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn text(status: StatusCode, text: impl Into<Bytes>) -> Response {
    let body: Bytes = text.into();
    let typed = !body.is_empty();
    let mut response = hyper::Response::new(Full::new(body));
    *response.status_mut() = status;
    if typed {
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

async fn handle(app: &App, endpoint: Endpoint, body: &[u8]) -> Response {
    let started = Instant::now();
    let admission = match decode(body) {
        Ok(admission) => admission,
        Err(Rejection::BadRequest(reason)) => {
            app.metrics.request(endpoint, DecisionLabel::Invalid);
            tracing::info!(endpoint = endpoint.as_str(), reason = %redact(&reason), "bad request");
            return text(StatusCode::BAD_REQUEST, format!("{reason}\n"));
        }
        Err(Rejection::Answer(response, outcome)) => {
            app.metrics.request(endpoint, outcome);
            // A decode error quotes the object; another kind's note does not.
            let message = match outcome {
                DecisionLabel::Invalid => redact(&response.result.message),
                _ => response.result.message.clone(),
            };
            tracing::info!(endpoint = endpoint.as_str(), uid = %response.uid, outcome = outcome.as_str(), %message, "answered without review");
            return json(&response.into_review());
        }
    };
    // No span per review: a span's fields are formatted when it is made,
    // logged or not, a tenth of a review's CPU. The decision's line carries
    // the uid itself; a failed lookup's line names what it looked up (one
    // live lookup can serve several reviews).
    review_decoded(app, endpoint, admission, started).await
}

/// [`handle`] once the body decoded: lookups, the review, the answer.
async fn review_decoded(
    app: &App,
    endpoint: Endpoint,
    admission: Admission,
    started: Instant,
) -> Response {
    // Read once: every decision of this review is at the same time.
    let now = jiff::Timestamp::now();
    let mut fetched = match (endpoint, admission.review_request(now)) {
        (Endpoint::Validate, Some(request)) => {
            app.lookups
                .fetch(request.needs(), |kind, path| app.metrics.lookup(kind, path))
                .await
        }
        _ => Fetched::default(),
    };
    let policy = app.policy.load();
    let elsewhere = app.field_rules_in_api_server.load(Ordering::Acquire);
    let decide =
        |fetched: &Fetched| decide_showing(&admission, endpoint, &policy, fetched, now, elsewhere);
    let mut decision = decide(&fetched);
    let missing = denied_for_want_of(&decision);
    if !missing.is_empty() {
        // The watch may not have delivered an object created a moment ago:
        // a denial is worth one live request (shared per query and window).
        app.lookups
            .confirm(&mut fetched, &missing, |kind, path| {
                app.metrics.lookup(kind, path)
            })
            .await;
        decision = decide(&fetched);
    }
    let namespace = admission.namespace.as_deref().unwrap_or("");
    log_decision(endpoint, &admission, &decision);
    // The response takes the decision apart; the metrics need only its
    // label and findings, so those are kept aside instead of a clone.
    let label = DecisionLabel::of(&decision);
    let outcomes = std::mem::take(&mut decision.outcomes);
    let response = match decision.encoded_allow(&admission.uid) {
        Some(bytes) => json_bytes(bytes),
        None => json(&decision.into_response(&admission.uid).into_review()),
    };
    app.metrics.record(
        endpoint,
        namespace,
        label,
        &outcomes,
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The pure part of a request: the review for one endpoint at `now`,
/// rendered.
pub fn decide(
    admission: &Admission,
    endpoint: Endpoint,
    policy: &Policy,
    lookups: &dyn crate::lookup::Lookups,
    now: jiff::Timestamp,
) -> Decision {
    decide_showing(admission, endpoint, policy, lookups, now, false)
}

/// [`decide`]; with `field_rules_elsewhere` (the API server enforces the
/// rules that carry CEL, `serve --admission-policies`), their findings are
/// left out of the answer, kept in logs and metrics. All but one kind: an
/// enforced finding the old object of an UPDATE already had. The generated
/// policy lets it pass in silence (a `Deny` binding cannot also warn), so
/// the webhook says "already so before this update", as it does alone.
pub fn decide_showing(
    admission: &Admission,
    endpoint: Endpoint,
    policy: &Policy,
    lookups: &dyn crate::lookup::Lookups,
    now: jiff::Timestamp,
    field_rules_elsewhere: bool,
) -> Decision {
    let Some(request) = admission.review_request(now) else {
        return Decision::default();
    };
    match endpoint {
        Endpoint::Validate if field_rules_elsewhere => {
            let validation = review::validate(&request, policy, lookups);
            Decision::validated_showing(request.object, validation, |o| {
                o.action == Action::Warn(WarnReason::AlreadyBroken)
                    || crate::rules::RULES
                        .iter()
                        .any(|r| r.id == o.finding.rule && r.cel.is_none())
            })
        }
        Endpoint::Validate => {
            Decision::validated(request.object, review::validate(&request, policy, lookups))
        }
        Endpoint::Mutate => Decision::mutated(review::mutate(&request, policy)),
    }
}

/// The kinds of the looked-up objects whose absence denies.
fn denied_for_want_of(decision: &Decision) -> Vec<&'static KindInfo> {
    let mut kinds = Vec::new();
    for o in &decision.outcomes {
        if let (Action::Deny, FindingKind::Missing(kind)) = (&o.action, o.finding.kind)
            && !kinds.contains(&kind)
        {
            kinds.push(kind);
        }
    }
    kinds
}

/// The decision's line.
fn log_decision(endpoint: Endpoint, request: &Admission, decision: &Decision) {
    // A plain allow is worth a line only at debug; a finding or a patch at
    // info. The line is built only when it will be written.
    let level = if decision.outcomes.is_empty() && decision.patch.is_none() {
        tracing::Level::DEBUG
    } else {
        tracing::Level::INFO
    };
    macro_rules! event {
        ($level:expr) => {
            if tracing::enabled!($level) {
                // Object contents never go to the log: ids, names and rule
                // ids only.
                let findings = Findings(&decision.outcomes);
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
                    findings = %findings,
                    "reviewed"
                )
            }
        };
    }
    if level == tracing::Level::INFO {
        event!(tracing::Level::INFO);
    } else {
        event!(tracing::Level::DEBUG);
    }
}

/// `[rule:action, ...]` for the log, written without building strings.
struct Findings<'a>(&'a [crate::review::Outcome]);

impl std::fmt::Display for Findings<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[")?;
        for (i, o) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "\"{}:{}\"", o.finding.rule, o.action.label())?;
        }
        f.write_str("]")
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
    // An answer is a few hundred bytes at most, usually: one allocation,
    // where `to_vec` starts at 128 and grows. (An allow does not come here:
    // `Decision::encoded_allow`.)
    let mut bytes = Vec::with_capacity(512);
    match serde_json::to_writer(&mut bytes, value) {
        Ok(()) => json_bytes(bytes),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode response: {e}\n"),
        ),
    }
}

/// A 200 answer of encoded JSON.
fn json_bytes(bytes: Vec<u8>) -> Response {
    let mut response = hyper::Response::new(Full::new(Bytes::from(bytes)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}
