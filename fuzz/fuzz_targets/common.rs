//! What every review target checks, whatever the input: no panic, and the
//! properties the API server relies on.
//!
//! - a body that decodes gets a decision from both endpoints, the response
//!   echoes the uid and encodes to JSON;
//! - warnings stay within the API server's limits (256 bytes each, 4 KiB in
//!   all) and the denial message within sts-guard's own cap;
//! - a mutation patch applies to the object it was made for, and reviewing
//!   the patched object again asks for nothing more (reinvocation);
//! - a body that does not decode gets a one-line 400 reason or an answer
//!   that encodes.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Service, ServiceSpec};
use kube::core::admission::{AdmissionRequest, AdmissionReview};
use sts_guard::review::{
    Context, Decision, Endpoint, MAX_DENIAL_BYTES, MAX_WARNING_BYTES, MAX_WARNINGS_TOTAL_BYTES,
    review,
};
use sts_guard::policy::Policy;
use sts_guard::rules::{ServiceLookup, ServiceState};
use sts_guard::webhook::decode::reviewed_part;
use sts_guard::webhook::routes::{Rejection, decode};

/// `shop/web` exists and is headless, `shop/down` cannot be looked up (API
/// trouble), everything else is missing.
struct StaticServices(Arc<Service>);

impl ServiceLookup for StaticServices {
    fn service(&self, namespace: &str, name: &str) -> ServiceState {
        match (namespace, name) {
            ("shop", "web") => ServiceState::Found(self.0.clone()),
            ("shop", "down") => ServiceState::Unknown("API server did not answer".into()),
            _ => ServiceState::NotFound,
        }
    }
}

static SERVICES: LazyLock<StaticServices> = LazyLock::new(|| {
    let mut svc = Service::default();
    svc.metadata.name = Some("web".into());
    svc.metadata.namespace = Some("shop".into());
    svc.spec = Some(ServiceSpec {
        cluster_ip: Some("None".into()),
        selector: Some(BTreeMap::from([(
            "app.kubernetes.io/name".to_string(),
            "web".to_string(),
        )])),
        ..ServiceSpec::default()
    });
    StaticServices(Arc::new(svc))
});

/// Policies the inputs are reviewed under: the default (enforce all), and
/// ones that reach the warn, audit, exemption and mutation-default paths.
static POLICIES: LazyLock<Vec<Policy>> = LazyLock::new(|| {
    [
        "",
        "mode: warn\nallowOwnerExemptions: true\nmutations: { parallel: true, startupProbe: true, startupTimeout: 90s }\n",
        "rules: { headless-service: audit }\nsidecars: { requireProbes: false }\nnamespaces: { shop: { mode: enforce, allowOwnerExemptions: true, mutations: { startupProbe: true } } }\nexemptions: [{ namespace: shop, name: web, rules: [liveness-probe], reason: fuzz }]\n",
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
    // The HTTP edge answers 413 before decoding anything larger.
    if body.len() > sts_guard::webhook::routes::MAX_BODY_BYTES {
        return;
    }
    let policy = &POLICIES[which % POLICIES.len()];
    let decoded = decode(body);
    check_decode_matches_kube(body, &decoded);
    match decoded {
        Ok(request) => {
            for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
                let ctx = Context {
                    policy,
                    services: &*SERVICES,
                };
                let decision = review(&request, endpoint, &ctx);
                check_decision(&decision);
                if endpoint == Endpoint::Mutate {
                    check_patch(&request, &decision, &ctx);
                }
                let response = decision.into_response(&request);
                assert_eq!(response.uid, request.uid, "uid not echoed");
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
            serde_json::to_vec(&response.into_review()).expect("answer encodes");
        }
    }
}

/// The decode (src/server/decode.rs) accepts everything kube's own
/// `AdmissionReview<StatefulSet>` accepts and decodes it to the same request,
/// reduced to the part the review reads. It may accept more: a malformed
/// value in a field it never reads is skipped, not judged.
fn check_decode_matches_kube(
    body: &[u8],
    decoded: &Result<AdmissionRequest<StatefulSet>, Rejection>,
) {
    let reference: Option<AdmissionRequest<StatefulSet>> = serde_json::from_slice::<
        AdmissionReview<StatefulSet>,
    >(body)
    .ok()
    .filter(|r| r.types.api_version == "admission.k8s.io/v1" && r.types.kind == "AdmissionReview")
    .and_then(|r| r.try_into().ok())
    .filter(|r: &AdmissionRequest<StatefulSet>| r.kind.group == "apps")
    .filter(|r| r.kind.version == "v1" && r.kind.kind == "StatefulSet");
    match (decoded, reference) {
        (Ok(fast), Some(mut kube)) => {
            for o in [kube.object.as_mut(), kube.old_object.as_mut()]
                .into_iter()
                .flatten()
            {
                *o = reviewed_part(o);
            }
            let json = |r: &AdmissionRequest<StatefulSet>| {
                serde_json::to_value(r).expect("request encodes")
            };
            assert_eq!(json(fast), json(&kube), "decode differs from kube's");
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

/// The patch applies to the object, and the patched object needs no more.
fn check_patch(request: &AdmissionRequest<StatefulSet>, decision: &Decision, ctx: &Context<'_>) {
    let (Some(patch), Some(object)) = (&decision.patch, &request.object) else {
        return;
    };
    let mut doc = serde_json::to_value(object).expect("object encodes");
    json_patch::patch(&mut doc, &patch.0)
        .unwrap_or_else(|e| panic!("patch does not apply: {e}: {:?}", patch.0));
    let patched: StatefulSet = serde_json::from_value(doc).expect("patched object decodes");
    let mut again = request.clone();
    again.object = Some(patched);
    let second = review(&again, Endpoint::Mutate, ctx);
    assert!(
        second.patch.is_none(),
        "reinvocation patches again: {:?}",
        second.patch
    );
}
