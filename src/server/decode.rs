//! The typed decode of an AdmissionReview of a StatefulSet: only what
//! sts-guard reads.
//!
//! Decoding a whole StatefulSet into k8s-openapi's types builds every env
//! var, port, volume and managedFields node as its own allocation, and was
//! 94 % of the review path, while the rules read a handful of fields. The
//! API server sends objects it has already decoded into its own typed
//! structs, so what we skip is well-formed by construction; LESSONS.md's
//! "decode what you need, tolerate unknown fields" applies.
//!
//! So the envelope and `request` are decoded field for field as kube's
//! `AdmissionReview<StatefulSet>` decodes them, and each object (`object`,
//! `oldObject`) into a `StatefulSet` holding only [`reviewed_part`]: name,
//! namespace, generateName, labels and the `sts-guard.io/` annotations of
//! its metadata and of its pod template's, `spec.serviceName`,
//! `spec.podManagementPolicy`, and per container and init container its
//! name, `restartPolicy` and probes. Each type implements [`Reviewed`]: one
//! `set` per type says which fields it keeps. Everything else is skipped as
//! JSON (syntax and nesting still checked) without being built: a body
//! kube's type accepts decodes here to the same request, reduced to that
//! part; a body with a malformed value in a field sts-guard never reads
//! (`spec.replicas: 3.5`) is judged on what it reads. A rule or mutation
//! that reads a new field must add it here and to [`reviewed_part`] (the
//! tests compare with kube's decode).
//! (One more difference, handled by the caller with the same message
//! either way: a review with no `apiVersion` or `kind` decodes here with
//! them empty.)

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;

use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::authentication::v1::UserInfo;
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::{GroupVersionKind, GroupVersionResource, TypeMeta};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::admission::ANNOTATION_PREFIX;

/// `AdmissionReview<StatefulSet>` without `#[serde(flatten)]` on its type
/// fields.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Review {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub request: Option<Request>,
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
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Request {
    uid: String,
    kind: GroupVersionKind,
    resource: GroupVersionResource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    request_kind: Option<GroupVersionKind>,
    #[serde(default)]
    request_resource: Option<GroupVersionResource>,
    #[serde(default)]
    request_sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    user_info: UserInfo,
    object: Option<Decoded<StatefulSet>>,
    old_object: Option<Decoded<StatefulSet>>,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    options: Option<RawExtension>,
}

impl Request {
    pub fn into_admission_request(self, types: TypeMeta) -> AdmissionRequest<StatefulSet> {
        AdmissionRequest {
            types,
            uid: self.uid,
            kind: self.kind,
            resource: self.resource,
            sub_resource: self.sub_resource,
            request_kind: self.request_kind,
            request_resource: self.request_resource,
            request_sub_resource: self.request_sub_resource,
            name: self.name,
            namespace: self.namespace,
            operation: self.operation,
            user_info: self.user_info,
            object: self.object.map(|s| s.0),
            old_object: self.old_object.map(|s| s.0),
            dry_run: self.dry_run,
            options: self.options,
        }
    }
}

/// Declares the fields of one decoded type the way k8s-openapi's generated
/// visitors identify them: a name not listed becomes `Other`, whose value
/// is skipped.
macro_rules! field_enum {
    ($name:ident { $($variant:ident = $key:literal),* $(,)? }) => {
        #[derive(Clone, Copy)]
        enum $name { $($variant,)* Other }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct FieldVisitor;
                impl Visitor<'_> for FieldVisitor {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("field identifier")
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        Ok(match v { $($key => $name::$variant,)* _ => $name::Other })
                    }
                }
                deserializer.deserialize_identifier(FieldVisitor)
            }
        }

        impl FieldNames for $name {
            const NAMES: &'static [&'static str] = &[$($key),*];
        }
    };
}

/// A k8s-openapi type decoded here field by field, into its `Default` with
/// only the fields the review reads set. Each field is taken as k8s-openapi
/// takes it: a repeated key's last value wins, and `null` for a required
/// field gives its default.
trait Reviewed: Default {
    /// The type's name in decode errors ("expected StatefulSetSpec").
    const NAME: &'static str;
    type Field: for<'de> Deserialize<'de> + FieldNames;
    /// Decodes the value of `field` into `self`, or skips it.
    fn set<'de, A: MapAccess<'de>>(
        &mut self,
        field: Self::Field,
        map: &mut A,
    ) -> Result<(), A::Error>;
}

trait FieldNames {
    const NAMES: &'static [&'static str];
}

/// Deserializes any [`Reviewed`] type.
struct Decoded<T>(T);

impl<'de, T: Reviewed> Deserialize<'de> for Decoded<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FieldsVisitor<T>(PhantomData<T>);
        impl<'de, T: Reviewed> Visitor<'de> for FieldsVisitor<T> {
            type Value = Decoded<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(T::NAME)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Decoded<T>, A::Error> {
                let mut value = T::default();
                while let Some(field) = map.next_key::<T::Field>()? {
                    value.set(field, &mut map)?;
                }
                Ok(Decoded(value))
            }
        }
        deserializer.deserialize_struct(T::NAME, T::Field::NAMES, FieldsVisitor::<T>(PhantomData))
    }
}

/// The next value as an optional [`Reviewed`] type.
fn next_decoded<'de, T: Reviewed, A: MapAccess<'de>>(map: &mut A) -> Result<Option<T>, A::Error> {
    Ok(map.next_value::<Option<Decoded<T>>>()?.map(|d| d.0))
}

/// Skips the next value unbuilt (still checked as JSON).
fn skip<'de, A: MapAccess<'de>>(map: &mut A) -> Result<(), A::Error> {
    map.next_value::<IgnoredAny>().map(drop)
}

/// The next value must be the string `expected`.
fn expect_str<'de, A: MapAccess<'de>>(map: &mut A, expected: &'static str) -> Result<(), A::Error> {
    let value: String = map.next_value()?;
    if value == expected {
        Ok(())
    } else {
        Err(de::Error::invalid_value(
            de::Unexpected::Str(&value),
            &expected,
        ))
    }
}

/// What of a StatefulSet the review reads: the part decoded here. Tests
/// and the fuzz target compare it with kube's full decode.
pub fn reviewed_part(sts: &StatefulSet) -> StatefulSet {
    let container = |c: &Container| Container {
        name: c.name.clone(),
        restart_policy: c.restart_policy.clone(),
        liveness_probe: c.liveness_probe.clone(),
        readiness_probe: c.readiness_probe.clone(),
        startup_probe: c.startup_probe.clone(),
        ..Container::default()
    };
    let meta = |m: &ObjectMeta| ObjectMeta {
        name: m.name.clone(),
        namespace: m.namespace.clone(),
        generate_name: m.generate_name.clone(),
        labels: m.labels.clone(),
        annotations: m.annotations.as_ref().map(|a| {
            a.iter()
                .filter(|(k, _)| k.starts_with(ANNOTATION_PREFIX))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        }),
        ..ObjectMeta::default()
    };
    StatefulSet {
        metadata: meta(&sts.metadata),
        spec: sts.spec.as_ref().map(|spec| StatefulSetSpec {
            service_name: spec.service_name.clone(),
            pod_management_policy: spec.pod_management_policy.clone(),
            template: PodTemplateSpec {
                metadata: spec.template.metadata.as_ref().map(meta),
                spec: spec.template.spec.as_ref().map(|pod| PodSpec {
                    containers: pod.containers.iter().map(container).collect(),
                    init_containers: pod
                        .init_containers
                        .as_ref()
                        .map(|list| list.iter().map(container).collect()),
                    ..PodSpec::default()
                }),
            },
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

field_enum!(StsField {
    ApiVersion = "apiVersion",
    Kind = "kind",
    Metadata = "metadata",
    Spec = "spec",
});

impl Reviewed for StatefulSet {
    const NAME: &'static str = StatefulSet::KIND;
    type Field = StsField;
    fn set<'de, A: MapAccess<'de>>(
        &mut self,
        field: StsField,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match field {
            StsField::ApiVersion => expect_str(map, StatefulSet::API_VERSION)?,
            StsField::Kind => expect_str(map, StatefulSet::KIND)?,
            StsField::Metadata => self.metadata = next_decoded(map)?.unwrap_or_default(),
            StsField::Spec => self.spec = next_decoded(map)?,
            StsField::Other => skip(map)?,
        }
        Ok(())
    }
}

field_enum!(MetaField {
    Annotations = "annotations",
    GenerateName = "generateName",
    Labels = "labels",
    Name = "name",
    Namespace = "namespace",
});

impl Reviewed for ObjectMeta {
    const NAME: &'static str = "ObjectMeta";
    type Field = MetaField;
    fn set<'de, A: MapAccess<'de>>(
        &mut self,
        field: MetaField,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match field {
            MetaField::Annotations => {
                self.annotations = map.next_value::<Option<OurAnnotations>>()?.map(|a| a.0)
            }
            MetaField::GenerateName => self.generate_name = map.next_value()?,
            MetaField::Labels => self.labels = map.next_value()?,
            MetaField::Name => self.name = map.next_value()?,
            MetaField::Namespace => self.namespace = map.next_value()?,
            MetaField::Other => skip(map)?,
        }
        Ok(())
    }
}

/// The `sts-guard.io/` annotations of an object: the only ones read. The
/// others (`kubectl.kubernetes.io/last-applied-configuration`, a copy of
/// the whole object, among them) are skipped unbuilt.
struct OurAnnotations(BTreeMap<String, String>);

impl<'de> Deserialize<'de> for OurAnnotations {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AnnotationsVisitor;
        impl<'de> Visitor<'de> for AnnotationsVisitor {
            type Value = OurAnnotations;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OurAnnotations, A::Error> {
                let mut ours = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key.starts_with(ANNOTATION_PREFIX) {
                        ours.insert(key, map.next_value()?);
                    } else {
                        skip(&mut map)?;
                    }
                }
                Ok(OurAnnotations(ours))
            }
        }
        deserializer.deserialize_map(AnnotationsVisitor)
    }
}

field_enum!(SpecField {
    PodManagementPolicy = "podManagementPolicy",
    ServiceName = "serviceName",
    Template = "template",
});

impl Reviewed for StatefulSetSpec {
    const NAME: &'static str = "StatefulSetSpec";
    type Field = SpecField;
    fn set<'de, A: MapAccess<'de>>(
        &mut self,
        field: SpecField,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match field {
            SpecField::PodManagementPolicy => self.pod_management_policy = map.next_value()?,
            SpecField::ServiceName => self.service_name = map.next_value()?,
            SpecField::Template => self.template = next_decoded(map)?.unwrap_or_default(),
            SpecField::Other => skip(map)?,
        }
        Ok(())
    }
}

field_enum!(TemplateField {
    Metadata = "metadata",
    Spec = "spec",
});

impl Reviewed for PodTemplateSpec {
    const NAME: &'static str = "PodTemplateSpec";
    type Field = TemplateField;
    fn set<'de, A: MapAccess<'de>>(
        &mut self,
        field: TemplateField,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match field {
            TemplateField::Metadata => self.metadata = next_decoded(map)?,
            TemplateField::Spec => self.spec = next_decoded(map)?,
            TemplateField::Other => skip(map)?,
        }
        Ok(())
    }
}

field_enum!(PodField {
    Containers = "containers",
    InitContainers = "initContainers",
});

/// A pod's containers and init containers (ephemeral containers take no
/// probes and are never reviewed).
impl Reviewed for PodSpec {
    const NAME: &'static str = "PodSpec";
    type Field = PodField;
    fn set<'de, A: MapAccess<'de>>(
        &mut self,
        field: PodField,
        map: &mut A,
    ) -> Result<(), A::Error> {
        let containers = |map: &mut A| -> Result<Option<Vec<Container>>, A::Error> {
            let list = map.next_value::<Option<Vec<Decoded<Container>>>>()?;
            Ok(list.map(|l| l.into_iter().map(|c| c.0).collect()))
        };
        match field {
            PodField::Containers => self.containers = containers(map)?.unwrap_or_default(),
            PodField::InitContainers => self.init_containers = containers(map)?,
            PodField::Other => skip(map)?,
        }
        Ok(())
    }
}

field_enum!(ContainerField {
    LivenessProbe = "livenessProbe",
    Name = "name",
    ReadinessProbe = "readinessProbe",
    RestartPolicy = "restartPolicy",
    StartupProbe = "startupProbe",
});

impl Reviewed for Container {
    const NAME: &'static str = "Container";
    type Field = ContainerField;
    fn set<'de, A: MapAccess<'de>>(
        &mut self,
        field: ContainerField,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match field {
            ContainerField::LivenessProbe => self.liveness_probe = map.next_value()?,
            ContainerField::Name => {
                self.name = map.next_value::<Option<String>>()?.unwrap_or_default()
            }
            ContainerField::ReadinessProbe => self.readiness_probe = map.next_value()?,
            ContainerField::RestartPolicy => self.restart_policy = map.next_value()?,
            ContainerField::StartupProbe => self.startup_probe = map.next_value()?,
            ContainerField::Other => skip(map)?,
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::admission::AdmissionReview;
    use serde_json::{Value, json};

    fn fixture() -> Value {
        serde_json::from_str(include_str!(
            "../../tests/fixtures/admission/create-web.json"
        ))
        .unwrap()
    }

    /// Both decoders on the same body: both refuse it, or both accept it and
    /// agree on the reviewed part.
    fn same(body: &[u8]) -> bool {
        let ours = serde_json::from_slice::<Review>(body);
        let kube = serde_json::from_slice::<AdmissionReview<StatefulSet>>(body);
        match (ours, kube) {
            (Err(_), Err(_)) => false,
            (Ok(ours), Ok(kube)) => {
                assert_eq!(ours.api_version, kube.types.api_version);
                assert_eq!(ours.kind, kube.types.kind);
                let types = kube.types.clone();
                let kube = kube.request.map(|mut r| {
                    for sts in [r.object.as_mut(), r.old_object.as_mut()]
                        .into_iter()
                        .flatten()
                    {
                        *sts = reviewed_part(sts);
                    }
                    r
                });
                let ours = ours.request.map(|r| r.into_admission_request(types));
                // AdmissionRequest has no PartialEq: compare as JSON.
                assert_eq!(
                    serde_json::to_value(&ours).unwrap(),
                    serde_json::to_value(&kube).unwrap()
                );
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
        if serde_json::from_slice::<AdmissionReview<StatefulSet>>(body).is_ok() {
            assert!(same(body));
        }
    }

    /// kube's full decode refuses the body; ours accepts it, because the
    /// malformed part is one the review never reads.
    fn tolerated(body: &[u8]) {
        assert!(
            serde_json::from_slice::<AdmissionReview<StatefulSet>>(body).is_err(),
            "kube accepts it: use same()"
        );
        if let Err(e) = serde_json::from_slice::<Review>(body) {
            panic!("refused {}: {e}", String::from_utf8_lossy(body));
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
    fn decodes_exactly_the_reviewed_part() {
        let body = serde_json::to_vec(&fixture()).unwrap();
        let ours = serde_json::from_slice::<Review>(&body).unwrap();
        let sts = ours.request.unwrap().object.unwrap().0;
        let pod = sts.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        // Read: names, probes, serviceName, template labels, annotations.
        assert_eq!(pod.containers[0].name, "app");
        assert!(pod.containers[0].liveness_probe.is_some());
        assert!(sts.spec.as_ref().unwrap().service_name.is_some());
        assert!(
            sts.spec
                .as_ref()
                .unwrap()
                .template
                .metadata
                .as_ref()
                .unwrap()
                .labels
                .is_some()
        );
        // Not built: what no rule or mutation reads.
        assert!(pod.containers[0].image.is_none());
        assert!(pod.volumes.is_none());
        assert!(sts.spec.as_ref().unwrap().replicas.is_none());
        assert!(sts.spec.as_ref().unwrap().volume_claim_templates.is_none());
        assert!(sts.metadata.managed_fields.is_none());
        assert!(sts.status.is_none());
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
            spec("replicas", json!(3.5)),
            spec("replicas", json!("three")),
            spec("selector", json!([])),
            pod("volumes", json!({"not": "a list"})),
            with(&["request", "object", "status"], json!("broken")),
        ] {
            assert!(serde_json::from_slice::<AdmissionReview<StatefulSet>>(&body).is_err());
            assert!(serde_json::from_slice::<Review>(&body).is_ok());
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
            serde_json::from_slice::<AdmissionReview<StatefulSet>>(no_kind.as_bytes()).is_err()
        );
        assert_eq!(
            serde_json::from_slice::<Review>(no_kind.as_bytes())
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
