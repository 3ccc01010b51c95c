//! What every review target checks, whatever the input: no panic, and the
//! properties the API server relies on.
//!
//! - a body that decodes gets a decision from both endpoints, the response
//!   echoes the uid and encodes to JSON;
//! - the decode accepts whatever kube's own `AdmissionReview<StatefulSet>`
//!   accepts, to the same request (kube's objects seen through the same
//!   view, `sts_guard::view::StatefulSet::of`);
//! - warnings stay within the API server's limits (256 bytes each, 4 KiB in
//!   all) and the denial message within sts-guard's own cap;
//! - a mutation patch applies to the object it was made for, and reviewing
//!   the patched object again asks for nothing more (reinvocation);
//! - a rule looks up only what it declared (`Fetched` asserts it in this
//!   build, which has debug assertions on);
//! - a body that does not decode gets a one-line 400 reason or an answer
//!   that echoes the uid and encodes.
//!
//! Callers send only bodies the HTTP edge would pass on: at most
//! `MAX_BODY_BYTES` (a larger one gets 413 before anything is decoded, so it
//! would test nothing but the harness).

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::pin::pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, Waker};

use k8s_openapi::api::apps::v1::StatefulSet as K8sStatefulSet;
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use serde_json::Value;
use sts_guard::lookup::{Answer, Fetched, LookupSource, Lookups, Need, NoLookups, Object, Objects};
use sts_guard::policy::Policy;
use sts_guard::view::{self, DisruptionBudget, Selector, StatefulSet};
use sts_guard::webhook::decision::Endpoint;
use sts_guard::webhook::decision::{
    Decision, MAX_DENIAL_BYTES, MAX_WARNING_BYTES, MAX_WARNINGS_TOTAL_BYTES,
};
use sts_guard::webhook::routes::{MAX_BODY_BYTES, decide};
use sts_guard::webhook::wire::{Admission, Rejection, decode};

/// What a review can find, as `serve --services-from` serves it: Services
/// `shop/web` headless, `shop/plain` not headless, `shop/twice` defined
/// twice, differently, everything else missing; in `shop` a
/// PodDisruptionBudget selecting the fixture's pods, in `other` one
/// selecting every pod, none elsewhere.
static SERVICES: LazyLock<LookupSource> = LazyLock::new(|| {
    let service = |name: &str, cluster_ip: &str, app: &str| {
        let mut svc = Service::default();
        svc.metadata.name = Some(name.into());
        svc.metadata.namespace = Some("shop".into());
        svc.spec = Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            selector: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_string(),
                app.to_string(),
            )])),
            ..ServiceSpec::default()
        });
        svc
    };
    let mut services = Objects::default();
    for (svc, place) in [
        (service("web", "None", "web"), "fuzz:1"),
        (service("plain", "10.0.0.1", "web"), "fuzz:2"),
        (service("twice", "None", "web"), "fuzz:3"),
        (service("twice", "None", "other"), "fuzz:4"),
    ] {
        let projection = view::Service::of(&svc, "shop");
        services.insert(Object::Services(Arc::new(projection)), place.into());
    }
    for (namespace, labels) in [
        ("shop", vec![("app.kubernetes.io/name", "web")]),
        ("other", vec![]),
    ] {
        let budget = DisruptionBudget {
            namespace: namespace.into(),
            name: "budget".into(),
            selector: Some(Selector {
                match_labels: labels.into_iter().collect(),
                ..Selector::default()
            }),
        };
        services.insert(Object::DisruptionBudgets(Arc::new(budget)), String::new());
    }
    LookupSource::Static(Arc::new(services))
});

/// Lookups while the API server is unreachable: nothing can be answered.
struct ApiDown;

impl Lookups for ApiDown {
    fn answer(&self, need: &Need) -> Answer {
        need.unknown("API server did not answer".into())
    }
}

/// Policies the inputs are reviewed under: the default (enforce, the rules
/// added later only warn), ones that reach the warn, audit, exemption and
/// mutation-default paths, and one that enforces every rule by name, with
/// startup budgets set globally and for `shop`.
static POLICIES: LazyLock<Vec<Policy>> = LazyLock::new(|| {
    [
        "",
        "mode: warn\nallowOwnerExemptions: true\nmutations: { parallel: true, startupProbe: true, startupTimeout: 90s }\n",
        "rules: { headless-service: audit }\nsidecars: { requireProbes: false }\nnamespaces: { shop: { mode: enforce, allowOwnerExemptions: true, mutations: { startupProbe: true } } }\nexemptions: [{ namespace: shop, name: web, rules: [liveness-probe], reason: fuzz }]\n",
        "rules: { disruption-budget: enforce, startup-budget: enforce, identical-probes: enforce, probe-port: enforce }\nstartupBudget: { minSeconds: 120 }\nnamespaces: { shop: { startupBudget: { minSeconds: 5 } } }\n",
    ]
    .iter()
    .map(|text| Policy::from_yaml(text, "fuzz").expect("static policy"))
    .collect()
});

#[allow(dead_code)] // used by review_structured only
pub fn policies() -> usize {
    POLICIES.len()
}

/// Decodes `body` as the HTTP edge does and reviews it under policy `which`.
pub fn check_body(body: &[u8], which: usize) {
    assert!(
        body.len() <= MAX_BODY_BYTES,
        "harness bug: a {}-byte body gets 413 before any review",
        body.len()
    );
    let policy = &POLICIES[which % POLICIES.len()];
    // The body as plain JSON, parsed only if an assertion needs it; `None`
    // when it is not (invalid UTF-8 in a string the decode skips).
    let raw = OnceCell::new();
    let raw = || {
        raw.get_or_init(|| serde_json::from_slice::<Value>(body).ok())
            .as_ref()
    };
    let decoded = decode(body);
    check_decode_matches_kube(body, &decoded);
    match decoded {
        Ok(admission) => {
            let decisions = [
                (
                    Endpoint::Validate,
                    decide(
                        &admission,
                        Endpoint::Validate,
                        policy,
                        &fetch(&admission),
                        now(),
                    ),
                ),
                (
                    Endpoint::Validate,
                    decide(&admission, Endpoint::Validate, policy, &ApiDown, now()),
                ),
                (
                    Endpoint::Mutate,
                    decide(&admission, Endpoint::Mutate, policy, &NoLookups, now()),
                ),
            ];
            for (endpoint, decision) in decisions {
                check_decision(&decision);
                if endpoint == Endpoint::Mutate {
                    check_patch(&admission, &decision, policy, raw());
                }
                let response = decision.into_response(&admission.uid);
                assert_eq!(response.uid, admission.uid, "uid not echoed");
                serde_json::to_vec(&response.into_review()).expect("response encodes");
            }
        }
        Err(Rejection::BadRequest(reason)) => {
            assert!(
                !reason.contains('\n'),
                "400 reason not one line: {reason:?}"
            );
        }
        Err(Rejection::Answer(response, _)) => {
            if let Some(uid) = raw()
                .and_then(|r| r.pointer("/request/uid"))
                .and_then(Value::as_str)
            {
                assert_eq!(response.uid, uid, "uid not echoed");
            }
            serde_json::to_vec(&response.into_review()).expect("answer encodes");
        }
    }
}

/// What the webhook fetches before the review (src/webhook/routes.rs,
/// `handle`): what the rules declare for the object and the old object,
/// from the static objects.
fn fetch(admission: &Admission) -> Fetched {
    let Some(request) = admission.review_request(now()) else {
        return Fetched::default();
    };
    // Static Services answer without waiting.
    let mut fetching = pin!(SERVICES.fetch(request.needs(), |_, _| {}));
    match fetching
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(fetched) => fetched,
        Poll::Pending => panic!("a static Service lookup waited"),
    }
}

/// The decode (src/webhook/wire.rs) accepts everything kube's own
/// `AdmissionReview<StatefulSet>` accepts and decodes it to the same
/// request, kube's objects seen through the same view. It may accept more:
/// a malformed value in a field it never reads is skipped, not judged.
fn check_decode_matches_kube(body: &[u8], decoded: &Result<Admission, Rejection>) {
    let reference: Option<AdmissionRequest<K8sStatefulSet>> = serde_json::from_slice::<
        AdmissionReview<K8sStatefulSet>,
    >(body)
    .ok()
    .filter(|r| r.types.api_version == "admission.k8s.io/v1" && r.types.kind == "AdmissionReview")
    .and_then(|r| r.try_into().ok())
    .filter(|r: &AdmissionRequest<K8sStatefulSet>| r.kind.group == "apps")
    .filter(|r| r.kind.version == "v1" && r.kind.kind == "StatefulSet");
    match (decoded, reference) {
        (Ok(ours), Some(kube)) => {
            let view = |s: Option<&K8sStatefulSet>| {
                s.map(|s| StatefulSet::of(s).expect("kube's object has a view"))
            };
            assert_eq!(ours.uid, kube.uid, "uid differs from kube's");
            assert_eq!(ours.name, kube.name, "name differs from kube's");
            assert_eq!(ours.namespace, kube.namespace, "namespace differs");
            assert_eq!(ours.operation, kube.operation, "operation differs");
            assert_eq!(ours.dry_run, kube.dry_run, "dryRun differs");
            assert_eq!(
                ours.object,
                view(kube.object.as_ref()),
                "object differs from kube's"
            );
            assert_eq!(
                ours.old_object,
                view(kube.old_object.as_ref()),
                "oldObject differs from kube's"
            );
        }
        (Err(e), Some(_)) => {
            panic!("decode refused what kube's AdmissionReview accepts: {e:?}")
        }
        (_, None) => {}
    }
}

fn check_decision(decision: &Decision) {
    let mut total = 0;
    for w in &decision.warnings {
        assert!(
            w.len() <= MAX_WARNING_BYTES,
            "warning too long: {}",
            w.len()
        );
        assert!(!w.chars().any(char::is_control), "control char in {w:?}");
        total += w.len();
    }
    assert!(
        total <= MAX_WARNINGS_TOTAL_BYTES,
        "warnings total {total} bytes"
    );
    if let Some(message) = &decision.denial {
        assert!(
            message.len() <= MAX_DENIAL_BYTES,
            "denial message {} bytes",
            message.len()
        );
    }
}

/// The patch applies to the object as sent (as the API server applies it),
/// and the patched object needs no more.
fn check_patch(admission: &Admission, decision: &Decision, policy: &Policy, raw: Option<&Value>) {
    let (Some(patch), Some(object)) = (&decision.patch, &admission.object) else {
        return;
    };
    // The view's own JSON when the body is not plain JSON (invalid UTF-8
    // in a string the decode skips).
    let mut doc = raw
        .and_then(|r| r.pointer("/request/object"))
        .cloned()
        .unwrap_or_else(|| serde_json::to_value(object).expect("view encodes"));
    json_patch::patch(&mut doc, &patch.0)
        .unwrap_or_else(|e| panic!("patch does not apply: {e}: {:?}", patch.0));
    let patched: StatefulSet = serde_json::from_value(doc).expect("patched object decodes");
    let again = Admission {
        uid: admission.uid.clone(),
        name: admission.name.clone(),
        namespace: admission.namespace.clone(),
        operation: admission.operation.clone(),
        object: Some(patched),
        old_object: admission.old_object.clone(),
        dry_run: admission.dry_run,
    };
    let second = decide(&again, Endpoint::Mutate, policy, &NoLookups, now());
    assert!(
        second.patch.is_none(),
        "reinvocation patches again: {:?}",
        second.patch
    );
}

/// The time reviews are made at: fixed, so every run decides the same (no
/// exemption object here expires).
fn now() -> jiff::Timestamp {
    jiff::Timestamp::UNIX_EPOCH
}
