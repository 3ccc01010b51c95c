//! What sts-guard reads of the objects it judges: small typed views,
//! decoded by serde derive from the JSON the API server sends (`serve`),
//! from manifests (`check`) and from listings (`audit`). A rule or mutation
//! can read only what is declared here, so what it reads is a compile-time
//! fact, the same behind all three front doors.
//!
//! Decoding tolerates what the API server may add (unknown fields are
//! skipped, never built) and reads absent and `null` alike, as
//! k8s-openapi's types do: the object was decoded and validated by the API
//! server before it reached us.

use std::collections::BTreeMap;

use compact_str::CompactString;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

mod labels;
mod probe;
pub use labels::{Labels, Requirement, Selector};
pub use probe::{
    ExecAction, GrpcAction, HttpGetAction, HttpHeader, Probe, ProbePort, TcpSocketAction,
};

/// Annotation prefix every sts-guard annotation shares.
pub const ANNOTATION_PREFIX: &str = "sts-guard.io/";

/// A StatefulSet, as far as the rules and mutations read it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatefulSet {
    /// `apps/v1` when present (the caller checked the kind it asked for).
    #[serde(default, deserialize_with = "apps_v1", skip_serializing)]
    pub api_version: (),
    #[serde(default, deserialize_with = "statefulset_kind", skip_serializing)]
    pub kind: (),
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Metadata,
    pub spec: Option<Spec>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub name: Option<CompactString>,
    pub generate_name: Option<CompactString>,
    pub namespace: Option<CompactString>,
    pub labels: Option<BTreeMap<String, String>>,
    /// Only the `sts-guard.io/` ones: the others (a 3 MiB
    /// `last-applied-configuration`) are skipped unread.
    #[serde(default, deserialize_with = "nullable")]
    pub annotations: OurAnnotations,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    /// Whether a disruption budget is needed (unset is 1).
    pub replicas: Option<i32>,
    pub service_name: Option<CompactString>,
    pub pod_management_policy: Option<CompactString>,
    #[serde(default, deserialize_with = "nullable")]
    pub template: PodTemplate,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct PodTemplate {
    pub metadata: Option<TemplateMetadata>,
    pub spec: Option<PodSpec>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct TemplateMetadata {
    pub labels: Option<BTreeMap<String, String>>,
}

/// A pod's containers and init containers (ephemeral containers take no
/// probes and are never reviewed).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpec {
    #[serde(default, deserialize_with = "nullable")]
    pub containers: Vec<Container>,
    pub init_containers: Option<Vec<Container>>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default, deserialize_with = "nullable")]
    pub name: CompactString,
    /// `Always` on an init container makes it a restartable sidecar.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restart_policy: Option<CompactString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub liveness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness_probe: Option<Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_probe: Option<Probe>,
    /// Named ports, which probes may refer to by name.
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<ContainerPort>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerPort {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<CompactString>,
    /// 0 when absent (the API server requires it; k8s-openapi reads a
    /// missing one as 0, and so does this view).
    #[serde(default, deserialize_with = "nullable")]
    pub container_port: i32,
}

/// A PodDisruptionBudget, as far as the rules read it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
pub struct DisruptionBudget {
    pub namespace: CompactString,
    pub name: CompactString,
    /// `None` selects no pod; an empty selector selects every pod of the
    /// namespace (policy/v1).
    pub selector: Option<Selector>,
}

impl DisruptionBudget {
    pub fn of(
        pdb: &k8s_openapi::api::policy::v1::PodDisruptionBudget,
        namespace: &str,
    ) -> DisruptionBudget {
        DisruptionBudget {
            namespace: namespace.into(),
            name: pdb.metadata.name.as_deref().unwrap_or_default().into(),
            selector: pdb
                .spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .map(Selector::from),
        }
    }

    /// True when the budget covers pods labelled `labels`.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.as_ref().is_some_and(|s| s.selects(labels))
    }
}

/// A Service, as far as the rules read it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Service {
    pub namespace: CompactString,
    pub name: CompactString,
    /// `None` (the string) for a headless Service.
    pub cluster_ip: Option<Box<str>>,
    pub selector: Option<Labels>,
}

impl Service {
    /// The projection of a whole Service (a manifest's, a listing's).
    pub fn of(service: &k8s_openapi::api::core::v1::Service, namespace: &str) -> Service {
        let spec = service.spec.as_ref();
        Service {
            namespace: namespace.into(),
            name: service.metadata.name.as_deref().unwrap_or_default().into(),
            cluster_ip: spec.and_then(|s| s.cluster_ip.as_deref()).map(Box::from),
            selector: spec
                .and_then(|s| s.selector.as_ref())
                .map(|m| m.iter().collect()),
        }
    }
}

impl StatefulSet {
    /// The view of a k8s-openapi StatefulSet, through its JSON: what the
    /// rules would read had kube's own decoder read the body (the decode
    /// tests and the fuzzer compare the two).
    pub fn of(
        sts: &k8s_openapi::api::apps::v1::StatefulSet,
    ) -> Result<StatefulSet, serde_json::Error> {
        serde_json::to_value(sts).and_then(serde_json::from_value)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.metadata.annotations.0.get(key).map(String::as_str)
    }

    pub fn pod(&self) -> Option<&PodSpec> {
        self.spec.as_ref().and_then(|s| s.template.spec.as_ref())
    }

    /// What messages call the object: its name, else its `generateName`
    /// (a create that lets the API server pick the name), else empty.
    pub fn name(&self) -> &str {
        self.metadata
            .name
            .as_deref()
            .or(self.metadata.generate_name.as_deref())
            .unwrap_or_default()
    }

    /// `spec.serviceName`, empty when unset.
    pub fn service_name(&self) -> &str {
        self.spec
            .as_ref()
            .and_then(|s| s.service_name.as_deref())
            .unwrap_or_default()
    }

    pub fn template_labels(&self) -> Option<&BTreeMap<String, String>> {
        self.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
    }
}

/// The `sts-guard.io/` annotations of an object.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct OurAnnotations(pub BTreeMap<String, String>);

impl<'de> Deserialize<'de> for OurAnnotations {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct AnnotationsVisitor;
        impl<'de> Visitor<'de> for AnnotationsVisitor {
            type Value = OurAnnotations;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OurAnnotations, A::Error> {
                let mut ours = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key.starts_with(ANNOTATION_PREFIX) {
                        ours.insert(key, map.next_value()?);
                    } else {
                        map.next_value::<de::IgnoredAny>()?;
                    }
                }
                Ok(OurAnnotations(ours))
            }
        }
        d.deserialize_map(AnnotationsVisitor)
    }
}

/// Absent and `null` read alike, as k8s-openapi reads them.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// When present, the field must be the string `expected` (k8s-openapi's
/// check of `apiVersion` and `kind`).
fn expect_str<'de, D: Deserializer<'de>>(d: D, expected: &'static str) -> Result<(), D::Error> {
    let value = String::deserialize(d)?;
    if value == expected {
        Ok(())
    } else {
        Err(de::Error::invalid_value(
            de::Unexpected::Str(&value),
            &expected,
        ))
    }
}

fn apps_v1<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    expect_str(d, "apps/v1")
}

fn statefulset_kind<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
    expect_str(d, "StatefulSet")
}

#[cfg(test)]
mod tests;
