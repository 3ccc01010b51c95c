//! The API server's wire format: an AdmissionReview of a StatefulSet in,
//! decoded into [`Admission`]; only a body that fails is looked at again,
//! to recover the uid and say what is wrong.
//!
//! The envelope and `request` are decoded field for field as kube's
//! `AdmissionReview<StatefulSet>` decodes them (so a body kube refuses is
//! refused here), each object (`object`, `oldObject`) into the view the
//! rules read ([`crate::view::StatefulSet`]): everything else is skipped
//! as JSON (syntax and nesting still checked) without being built.
//!
//! Two readers, one result: [`reader`] (fast; skips unread values 16 bytes
//! at a time) reads every body the API server sends; whatever it is not
//! sure of, it leaves to serde_json, which then decides and words the
//! error. Either way a body decodes to the same value.
//!
//! Bad input, decided explicitly:
//! - not JSON, not an `admission.k8s.io/v1` `AdmissionReview`, or no
//!   `request` → 400 with a one-line reason (there is no uid to echo);
//! - a request for another kind → allowed, uid echoed (not ours to judge;
//!   only a misconfigured webhook sends one);
//! - a StatefulSet request whose object does not decode → denied with the
//!   reason and code 400, uid echoed.

use std::borrow::Cow;
use std::collections::HashMap;

use kube::core::admission::{AdmissionResponse, Operation};
use serde::Deserialize;
use serde::de::IgnoredAny;

mod reader;
mod unread;

use super::decision::{self, DecisionLabel};
use crate::review::{self, ObjectRef};
use crate::view::StatefulSet;

/// `AdmissionReview<StatefulSet>` without `#[serde(flatten)]` on its type
/// fields; its strings borrowed from the body where they have no escapes.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewBody<'a> {
    #[serde(default, borrow)]
    pub api_version: Cow<'a, str>,
    #[serde(default, borrow)]
    pub kind: Cow<'a, str>,
    #[serde(borrow)]
    pub request: Option<Request<'a>>,
    /// Never sent to a webhook; decoded only so a body carrying a malformed
    /// one is refused as kube's type refuses it.
    #[serde(default)]
    #[allow(dead_code)]
    response: Option<AdmissionResponse>,
    /// Unknown top-level fields (the API server sends none). kube's type
    /// buffers them, because its `TypeMeta` is flattened, and so refuses
    /// invalid UTF-8 or nesting deeper than 128 inside them where a skipped
    /// field would pass; buffering them the same way refuses the same
    /// bodies.
    #[serde(flatten)]
    #[allow(dead_code)]
    unknown: HashMap<String, IgnoredAny>,
}

/// Field for field `kube::core::admission::AdmissionRequest<StatefulSet>`.
/// The fields sts-guard does not read are checked all the same, so a body
/// kube's type refuses (a `userInfo` that is not one) is refused here too,
/// but built into nothing ([`unread`]).
#[derive(Deserialize)]
#[allow(dead_code)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    uid: String,
    #[serde(borrow)]
    kind: GroupVersionKind<'a>,
    resource: unread::GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<unread::Str>,
    #[serde(default)]
    request_kind: Option<unread::GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<unread::GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<unread::Str>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    user_info: unread::UserInfo,
    object: Option<StatefulSet>,
    old_object: Option<StatefulSet>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    options: Option<unread::RawExtension>,
}

/// kube's `GroupVersionKind`, the one part of the request's type fields
/// read (is it a StatefulSet?).
#[derive(Deserialize)]
struct GroupVersionKind<'a> {
    #[serde(borrow)]
    group: Cow<'a, str>,
    #[serde(borrow)]
    version: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

/// One admission request, as far as sts-guard reads it.
#[derive(Debug)]
pub struct Admission {
    pub uid: String,
    pub name: String,
    pub namespace: Option<String>,
    pub operation: Operation,
    pub object: Option<StatefulSet>,
    pub old_object: Option<StatefulSet>,
    pub dry_run: bool,
}

impl Admission {
    /// The object's namespace and name: the request's, else the object's
    /// own (`generateName` when it has no name yet).
    pub fn object_ref(&self) -> ObjectRef<'_> {
        let meta = self.object.as_ref().map(|o| &o.metadata);
        let namespace = self
            .namespace
            .as_deref()
            .or(meta.and_then(|m| m.namespace.as_deref()))
            .unwrap_or("default");
        let name = Some(self.name.as_str())
            .filter(|n| !n.is_empty())
            .or(self.object.as_ref().map(StatefulSet::name))
            .unwrap_or("");
        ObjectRef { namespace, name }
    }

    /// The request as the review reads it, at `now`; `None` when there is
    /// nothing to review (DELETE and CONNECT carry no object to check or change).
    pub fn review_request(&self, now: jiff::Timestamp) -> Option<review::Request<'_>> {
        let operation = match self.operation {
            Operation::Create => review::Operation::Create,
            Operation::Update => review::Operation::Update,
            _ => return None,
        };
        Some(review::Request {
            object: self.object_ref(),
            sts: self.object.as_ref()?,
            old: self.old_object.as_ref(),
            operation,
            dry_run: self.dry_run,
            now,
        })
    }
}

impl From<Request<'_>> for Admission {
    fn from(r: Request<'_>) -> Admission {
        Admission {
            uid: r.uid,
            name: r.name,
            namespace: r.namespace,
            operation: r.operation,
            object: r.object,
            old_object: r.old_object,
            dry_run: r.dry_run,
        }
    }
}

/// Why a body was not reviewed.
#[derive(Debug)]
pub enum Rejection {
    /// No request to answer: HTTP 400 with this reason.
    BadRequest(String),
    /// A request we answer without review (uid echoed), with its metric label.
    Answer(Box<AdmissionResponse>, DecisionLabel),
}

const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";
const REVIEW_KIND: &str = "AdmissionReview";

/// Decodes an AdmissionReview of a StatefulSet.
pub fn decode(body: &[u8]) -> Result<Admission, Rejection> {
    let review = parse(body).map_err(|error| diagnose(body, &error))?;
    check_envelope(&review.api_version, &review.kind)?;
    let request = review
        .request
        .ok_or_else(|| Rejection::BadRequest("AdmissionReview has no request".into()))?;
    if !is_statefulset(
        &request.kind.group,
        &request.kind.version,
        &request.kind.kind,
    ) {
        return Err(not_ours(&request.uid, &request.kind.kind));
    }
    Ok(request.into())
}

/// The typed decode of a whole body.
fn parse(body: &[u8]) -> Result<ReviewBody<'_>, serde_json::Error> {
    // A body that is valid UTF-8 as a whole (every real one) is read as a
    // str: same result, without checking each string of it again; first
    // by the fast reader, which leaves anything unusual to serde_json.
    // simdutf8 gives std's answer with the widest SIMD the CPU has.
    match simdutf8::basic::from_utf8(body) {
        Ok(text) => match reader::from_str::<ReviewBody>(text) {
            Ok(review) => return Ok(review),
            Err(reader::Unsupported) => serde_json::from_str::<ReviewBody>(text),
        },
        Err(_) => serde_json::from_slice::<ReviewBody>(body),
    }
    .or_else(|error| {
        // serde derive refuses a repeated key, as kube's envelope types do;
        // k8s-openapi's object types (and Go's decoder) keep the last one.
        // The API server never sends one, so only a hand-made body pays for
        // the second and third parse.
        if error.to_string().starts_with("duplicate field") && repeated_key_in_an_object(body) {
            // A JSON value holds strings, so invalid UTF-8 (which the typed
            // decode tolerates in the strings it skips) is replaced.
            serde_json::from_str::<serde_json::Value>(&String::from_utf8_lossy(body))
                .and_then(ReviewBody::deserialize)
                .map_err(|_| error)
        } else {
            Err(error)
        }
    })
}

/// Whether the first key a typed decode of `body` finds repeated is inside
/// `object` or `oldObject`, where kube's types keep the last value.
fn repeated_key_in_an_object(body: &[u8]) -> bool {
    let mut json = serde_json::Deserializer::from_slice(body);
    let Err(error) = serde_path_to_error::deserialize::<_, ReviewBody>(&mut json) else {
        return false;
    };
    // The path names the map that holds the repeated key.
    let path = error.path().to_string();
    ["request.object", "request.oldObject"]
        .iter()
        .any(|object| {
            path.strip_prefix(object)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
        })
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
    #[derive(Deserialize, Default)]
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
    let kind = head.kind.unwrap_or_default();
    if !is_statefulset(&kind.group, &kind.version, &kind.kind) {
        return not_ours(&head.uid, &kind.kind);
    }
    // Ours, but the typed decode failed: say where.
    let reason = format!("request.object is not a valid apps/v1 StatefulSet: {error}");
    Rejection::Answer(
        Box::new(decision::denied(
            decision::response(&head.uid),
            reason,
            400,
            "BadRequest",
        )),
        DecisionLabel::Invalid,
    )
}

/// Another kind: allowed, so a misconfigured webhook cannot block it.
fn not_ours(uid: &str, kind: &str) -> Rejection {
    let mut response = decision::response(uid);
    response.result.message =
        format!("sts-guard reviews apps/v1 StatefulSets only; {kind:?} allowed unchecked");
    Rejection::Answer(Box::new(response), DecisionLabel::NotStatefulSet)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSet as K8sStatefulSet;
    use kube::core::admission::AdmissionReview;
    use serde_json::{Value, json};

    fn fixture() -> Value {
        serde_json::from_str(include_str!(
            "../../tests/fixtures/admission/create-web.json"
        ))
        .unwrap()
    }

    /// Both decoders on the same body: both refuse it, or both accept it and
    /// agree on what the review reads (kube's objects through the same
    /// view: no second list of fields to keep in step).
    fn same(body: &[u8]) -> bool {
        let ours = parse(body);
        let kube = serde_json::from_slice::<AdmissionReview<K8sStatefulSet>>(body);
        match (ours, kube) {
            (Err(_), Err(_)) => false,
            (Ok(ours), Ok(kube)) => {
                assert_eq!(ours.api_version, kube.types.api_version);
                assert_eq!(ours.kind, kube.types.kind);
                let (Some(ours), Some(kube)) = (ours.request, kube.request) else {
                    panic!("one has a request, the other not");
                };
                let ours = Admission::from(ours);
                let view = |s: Option<&K8sStatefulSet>| s.map(|s| StatefulSet::of(s).unwrap());
                assert_eq!(ours.uid, kube.uid);
                assert_eq!(ours.name, kube.name);
                assert_eq!(ours.namespace, kube.namespace);
                assert_eq!(ours.operation, kube.operation);
                assert_eq!(ours.dry_run, kube.dry_run);
                assert_eq!(ours.object, view(kube.object.as_ref()));
                assert_eq!(ours.old_object, view(kube.old_object.as_ref()));
                true
            }
            (ours, kube) => panic!(
                "decoders disagree on {}: ours {:?}, kube {:?}",
                String::from_utf8_lossy(body),
                ours.err(),
                kube.err()
            ),
        }
    }

    fn with(path: &[&str], value: Value) -> Vec<u8> {
        let mut review = fixture();
        let mut node = &mut review;
        for key in &path[..path.len() - 1] {
            node = &mut node[*key];
        }
        node[path[path.len() - 1]] = value;
        serde_json::to_vec(&review).unwrap()
    }

    const MF: &[&str] = &["request", "object", "metadata", "managedFields"];

    /// The contract: what kube's decode accepts, ours accepts, to the same
    /// reviewed part; ours may accept more (malformed unread fields).
    fn accepts_what_kube_accepts(body: &[u8]) {
        if serde_json::from_slice::<AdmissionReview<K8sStatefulSet>>(body).is_ok() {
            assert!(same(body));
        }
    }

    /// kube's full decode refuses the body; ours accepts it, because the
    /// malformed part is one the review never reads.
    fn tolerated(body: &[u8]) {
        assert!(
            serde_json::from_slice::<AdmissionReview<K8sStatefulSet>>(body).is_err(),
            "kube accepts it: use same()"
        );
        if let Err(e) = serde_json::from_slice::<ReviewBody>(body) {
            panic!("refused {}: {e}", String::from_utf8_lossy(body));
        }
    }

    /// What the API server sends takes the fast reader, to what serde_json
    /// reads: an UPDATE (both objects), a dry run, the kinds of strings
    /// and numbers a real object holds.
    #[test]
    fn the_fast_reader_reads_real_reviews_as_serde_json_does() {
        let mut update = fixture();
        update["request"]["operation"] = json!("UPDATE");
        update["request"]["dryRun"] = json!(true);
        update["request"]["oldObject"] = update["request"]["object"].clone();
        update["request"]["object"]["metadata"]["annotations"]["sts-guard.io/startup-timeout"] =
            json!("5m \"quoted\" \u{e9}\\");
        for review in [fixture(), update] {
            let pretty = serde_json::to_string_pretty(&review).unwrap();
            let compact = serde_json::to_string(&review).unwrap();
            for text in [pretty, compact] {
                let fast = reader::from_str::<ReviewBody>(&text)
                    .unwrap_or_else(|_| panic!("left to serde_json: {text}"));
                let slow = serde_json::from_str::<ReviewBody>(&text).unwrap();
                let admission =
                    |r: ReviewBody| format!("{:?}", Admission::from(r.request.unwrap()));
                assert_eq!(admission(fast), admission(slow));
            }
        }
    }

    #[test]
    fn agrees_with_kube_on_the_fixture_and_on_managed_fields_variants() {
        assert!(same(&serde_json::to_vec(&fixture()).unwrap()));
        let entry = |k: &str, v: Value| {
            let mut e = fixture()["request"]["object"]["metadata"]["managedFields"][0].clone();
            e[k] = v;
            json!([e])
        };
        let accepted = [
            json!(null),
            json!([]),
            json!([{}]),
            json!([{"unknown": [1, {"a": null}]}]),
            entry("fieldsV1", json!(null)),
            entry("fieldsV1", json!(7)),
            entry("fieldsV1", json!("text")),
            entry(
                "fieldsV1",
                json!([1, -2, 3.5, 1e300, true, null, {"k": {}}]),
            ),
            entry("fieldsV1", json!({"f:x": {"f:y": {".": {}}}})),
            entry("manager", json!(null)),
            entry("time", json!(null)),
            entry("subresource", json!("status")),
        ];
        for mf in accepted {
            assert!(same(&with(MF, mf.clone())), "should accept {mf}");
        }
        // managedFields are never read: skipped, not judged.
        for mf in [
            json!({}),
            json!("x"),
            json!([1]),
            json!([[]]),
            entry("manager", json!(1)),
            entry("operation", json!({})),
            entry("apiVersion", json!(["v1"])),
            entry("time", json!("yesterday")),
            entry("time", json!(5)),
        ] {
            tolerated(&with(MF, mf));
        }
        let object = |key: &str, v: Value| with(&["request", "object", key], v);
        assert!(!same(&object("kind", json!("Deployment"))));
        assert!(!same(&object("apiVersion", json!("apps/v1beta1"))));
        assert!(!same(&object("metadata", json!([]))));
        assert!(same(&object("metadata", json!(null))));
        assert!(same(&object("status", json!(null))));
        assert!(same(&object("extra", json!({"any": [1]}))));
        let old = with(
            &["request", "oldObject"],
            fixture()["request"]["object"].clone(),
        );
        assert!(same(&old));
        // Annotations: only sts-guard.io/ ones are kept, every value checked
        // only where kept.
        let annotations = |v: Value| with(&["request", "object", "metadata", "annotations"], v);
        assert!(same(&annotations(
            json!({"a": "1", "sts-guard.io/parallel": "true"})
        )));
        assert!(!same(&annotations(json!({"sts-guard.io/parallel": true}))));
        assert!(!same(&annotations(json!(["a"]))));
        tolerated(&annotations(json!({"example.com/x": 5})));
    }

    #[test]
    fn decodes_what_the_review_reads() {
        // What is not read is not in the view at all: a compile-time fact.
        let body = serde_json::to_vec(&fixture()).unwrap();
        let sts = decode(&body).unwrap().object.unwrap();
        let pod = sts.pod().unwrap();
        assert_eq!(pod.containers[0].name, "app");
        assert!(pod.containers[0].liveness_probe.is_some());
        assert_eq!(sts.service_name(), "web");
        assert!(sts.template_labels().is_some());
    }

    #[test]
    fn a_malformed_value_in_a_field_not_reviewed_is_tolerated() {
        // kube's full decode refuses each of these; the review never reads
        // them, and the API server never sends them (it decoded the object
        // into its own typed structs first).
        let pod =
            |key: &str, v: Value| with(&["request", "object", "spec", "template", "spec", key], v);
        let spec = |key: &str, v: Value| with(&["request", "object", "spec", key], v);
        for body in [
            spec("minReadySeconds", json!(3.5)),
            spec("minReadySeconds", json!("three")),
            spec("selector", json!([])),
            pod("volumes", json!({"not": "a list"})),
            with(&["request", "object", "status"], json!("broken")),
        ] {
            assert!(serde_json::from_slice::<AdmissionReview<K8sStatefulSet>>(&body).is_err());
            assert!(serde_json::from_slice::<ReviewBody>(&body).is_ok());
        }
        // What is read is still checked as k8s-openapi checks it.
        let container = |key: &str, v: Value| {
            let mut review = fixture();
            review["request"]["object"]["spec"]["template"]["spec"]["containers"][0][key] = v;
            serde_json::to_vec(&review).unwrap()
        };
        assert!(!same(&container(
            "livenessProbe",
            json!({"periodSeconds": 3.5})
        )));
        assert!(!same(&container("livenessProbe", json!([]))));
        assert!(!same(&container("name", json!(7))));
        assert!(!same(&container("restartPolicy", json!(true))));
        assert!(!same(&spec("serviceName", json!(["web"]))));
        // Read by disruption-budget, so checked too.
        assert!(!same(&spec("replicas", json!(3.5))));
        assert!(!same(&spec("podManagementPolicy", json!(1))));
        let mut nameless = fixture();
        nameless["request"]["object"]["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("name");
        assert!(same(&serde_json::to_vec(&nameless).unwrap()));
        // Required fields that k8s-openapi takes as null (found by fuzzing).
        assert!(same(&spec("template", json!(null))));
        assert!(same(&container("name", json!(null))));
        assert!(same(&spec("serviceName", json!(null))));
        let pod =
            |key: &str, v: Value| with(&["request", "object", "spec", "template", "spec", key], v);
        assert!(same(&pod("containers", json!(null))));
        assert!(same(&pod("initContainers", json!(null))));
    }

    /// Found by fuzzing: kube keeps a repeated key's last value (also in a
    /// body with invalid UTF-8 in a string nobody reads), and reads a port
    /// without `containerPort` as port 0.
    #[test]
    fn agrees_with_kube_on_the_fuzz_regressions() {
        let regressions = [
            &include_bytes!(
                "../../fuzz/regressions/review_bytes/duplicate-field-kube-accepts.json"
            )[..],
            &include_bytes!("../../fuzz/regressions/review_bytes/port-without-containerPort.json")
                [..],
        ];
        for body in regressions {
            assert!(same(body), "{}", String::from_utf8_lossy(body));
        }
        let repeated = decode(regressions[0]).unwrap();
        assert_eq!(repeated.object.unwrap().service_name(), "web");
        // Repeated keys of the envelope stay refused, as kube refuses them.
        let ok = String::from_utf8(serde_json::to_vec(&fixture()).unwrap()).unwrap();
        for (body, field) in [
            (ok.replacen("\"uid\":", "\"uid\":\"a\",\"uid\":", 1), "uid"),
            (
                ok.replacen("\"object\":", "\"object\":null,\"object\":", 1),
                "object",
            ),
        ] {
            let error = parse(body.as_bytes()).err().expect("refused");
            assert!(
                error
                    .to_string()
                    .contains(&format!("duplicate field `{field}`")),
                "{error}"
            );
            assert!(
                serde_json::from_slice::<AdmissionReview<K8sStatefulSet>>(body.as_bytes()).is_err()
            );
        }
        // Inside the object, at any depth, the last value wins.
        for (body, expected) in [
            (
                ok.replacen("\"spec\":", "\"spec\":null,\"spec\":", 1),
                "web",
            ),
            (
                ok.replacen(
                    "\"serviceName\":",
                    "\"serviceName\":\"x\",\"serviceName\":",
                    1,
                ),
                "web",
            ),
        ] {
            assert!(same(body.as_bytes()));
            let object = decode(body.as_bytes()).unwrap().object.unwrap();
            assert_eq!(object.service_name(), expected);
        }
    }

    #[test]
    fn agrees_with_kube_on_raw_bodies() {
        let ok = String::from_utf8(serde_json::to_vec(&fixture()).unwrap()).unwrap();
        let mf_at = ok.find("\"managedFields\":").unwrap();
        let bodies = [
            // Repeated keys: the last managedFields wins in both.
            ok.replacen(
                "\"managedFields\":",
                "\"managedFields\":[{\"manager\":\"a\"}],\"managedFields\":",
                1,
            ),
            // Bad escapes, lone surrogates and invalid UTF-8 inside fieldsV1.
            ok.replacen("\"f:metadata\"", "\"f:\\ud800\"", 1),
            ok.replacen("\"f:metadata\"", "\"f:\\x\"", 1),
            ok.replacen("\"f:metadata\"", "\"f:\\u00e9\"", 1),
            format!(
                "{}{}",
                &ok[..mf_at],
                &ok[mf_at..].replacen("{}", "{\"n\":1e999}", 1)
            ),
            format!(
                "{}{}",
                &ok[..mf_at],
                &ok[mf_at..].replacen("{}", "{\"n\":-12345678901234567890}", 1)
            ),
            format!(
                "{}{}",
                &ok[..mf_at],
                &ok[mf_at..].replacen("{}", &format!("{}{}", "[".repeat(200), "]".repeat(200)), 1)
            ),
            format!(
                "{}{}",
                &ok[..mf_at],
                &ok[mf_at..].replacen("{}", &format!("{}{}", "[".repeat(100), "]".repeat(100)), 1)
            ),
            // Envelope variants.
            ok.replacen(
                "\"request\":",
                "\"response\":{\"uid\":\"u\",\"allowed\":true,\"status\":{}},\"request\":",
                1,
            ),
            ok.replacen("\"request\":", "\"response\":{\"uid\":5},\"request\":", 1),
            ok.replacen("\"uid\":", "\"uid\":\"a\",\"uid\":", 1),
            ok.replacen(
                "\"apiVersion\":\"apps/v1\"",
                "\"apiVersion\":\"apps/v2\"",
                1,
            ),
        ];
        for body in &bodies {
            accepts_what_kube_accepts(body.as_bytes());
        }
        // The one exception: no envelope kind (or apiVersion) decodes here,
        // empty, and the caller refuses it as it refuses kube's failure.
        let no_kind = ok.replacen("\"kind\":\"AdmissionReview\",", "", 1);
        assert!(
            serde_json::from_slice::<AdmissionReview<K8sStatefulSet>>(no_kind.as_bytes()).is_err()
        );
        assert_eq!(
            serde_json::from_slice::<ReviewBody>(no_kind.as_bytes())
                .unwrap()
                .kind,
            ""
        );
        // Unknown top-level fields are checked as kube checks them.
        let unknown =
            |v: &str| ok.replacen("\"request\":", &format!("\"extra\":{v},\"request\":"), 1);
        assert!(same(unknown("[1,{\"a\":\"b\"}]").as_bytes()));
        assert!(!same(unknown("\"\\ud800\"").as_bytes()));
        assert!(!same(
            unknown(&format!("{}{}", "[".repeat(200), "]".repeat(200))).as_bytes()
        ));
        let mut bad_utf8 = unknown("\"xx\"").into_bytes();
        let at = bad_utf8.windows(4).position(|w| w == b"\"xx\"").unwrap() + 1;
        bad_utf8[at] = 0xff;
        assert!(!same(&bad_utf8));
        let mut invalid_utf8 = ok.clone().into_bytes();
        let at = mf_at + ok[mf_at..].find("f:metadata").unwrap();
        invalid_utf8[at] = 0xff;
        accepts_what_kube_accepts(&invalid_utf8);
    }
}
