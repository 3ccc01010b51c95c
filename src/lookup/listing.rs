//! What `serve` watches and `audit` lists, decoded lean (each looked-up
//! kind's own type is in its file): the part the
//! rules read and the metadata the API machinery needs (name, namespace,
//! resourceVersion), everything else (managedFields, other annotations,
//! status) skipped unbuilt. So memory follows what sts-guard needs, not the
//! size of the objects in the cluster.

use std::collections::BTreeMap;
use std::sync::Arc;

use compact_str::CompactString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

use crate::view::{self, ANNOTATION_PREFIX};

/// (namespace, name)
pub type Key = (CompactString, CompactString);

/// A listed object turned into what the rules read, under its key.
pub trait Projection {
    type Into;
    fn projection(self) -> (Key, Arc<Self::Into>);
}

/// Name, namespace and resourceVersion (the watch resumes from it).
pub(super) fn lean_metadata<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Lean {
        name: Option<String>,
        namespace: Option<String>,
        resource_version: Option<String>,
    }
    let lean = Lean::deserialize(d)?;
    Ok(ObjectMeta {
        name: lean.name,
        namespace: lean.namespace,
        resource_version: lean.resource_version,
        ..ObjectMeta::default()
    })
}

/// A StatefulSet as `audit` lists it: the view, and the metadata listing
/// needs.
#[derive(Debug, Clone, Deserialize, kube::Resource)]
#[resource(inherit = "k8s_openapi::api::apps::v1::StatefulSet")]
pub struct ListedStatefulSet {
    #[serde(deserialize_with = "reviewed_metadata")]
    metadata: ObjectMeta,
    spec: Option<view::Spec>,
}

impl ListedStatefulSet {
    pub fn namespace(&self) -> &str {
        self.metadata.namespace.as_deref().unwrap_or_default()
    }

    /// What `audit --report` names as the report's owner (an owner
    /// reference needs the uid, not only the name).
    pub fn uid(&self) -> &str {
        self.metadata.uid.as_deref().unwrap_or_default()
    }

    pub fn into_view(self) -> view::StatefulSet {
        let m = self.metadata;
        view::StatefulSet {
            api_version: (),
            kind: (),
            metadata: view::Metadata {
                name: m.name.map(Into::into),
                generate_name: m.generate_name.map(Into::into),
                namespace: m.namespace.map(Into::into),
                labels: m.labels,
                annotations: view::OurAnnotations(m.annotations.unwrap_or_default()),
            },
            spec: self.spec,
        }
    }
}

/// What the review reads of a StatefulSet's metadata, its resourceVersion
/// and uid; of the annotations only the `sts-guard.io/` ones.
fn reviewed_metadata<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Reviewed {
        name: Option<String>,
        generate_name: Option<String>,
        namespace: Option<String>,
        resource_version: Option<String>,
        uid: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        #[serde(default)]
        annotations: view::OurAnnotations,
    }
    let m = Reviewed::deserialize(d)?;
    debug_assert!(
        m.annotations
            .0
            .keys()
            .all(|k| k.starts_with(ANNOTATION_PREFIX))
    );
    Ok(ObjectMeta {
        name: m.name,
        generate_name: m.generate_name,
        namespace: m.namespace,
        resource_version: m.resource_version,
        uid: m.uid,
        labels: m.labels,
        annotations: Some(m.annotations.0),
        ..ObjectMeta::default()
    })
}

/// `group/version/plural` of `L`, to pin a listing to the API resource it
/// decodes.
#[cfg(test)]
pub(super) fn api_path<L: kube::Resource<DynamicType = ()>>() -> String {
    format!("{}/{}/{}", L::group(&()), L::version(&()), L::plural(&()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_listing_is_the_api_resource_it_decodes() {
        assert_eq!(api_path::<ListedStatefulSet>(), "apps/v1/statefulsets");
    }

    #[test]
    fn a_listed_statefulset_becomes_the_view_the_webhook_reads() {
        let full = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {
                "name": "web", "namespace": "shop", "resourceVersion": "7",
                "uid": "0b5e-uid", "labels": {"app": "web"},
                "annotations": {"sts-guard.io/parallel": "true", "other": "x"},
                "managedFields": [{"manager": "kubectl"}],
            },
            "spec": {
                "serviceName": "web", "replicas": 3,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "app", "image": "nginx",
                                      "readinessProbe": {"tcpSocket": {"port": 80}}}]}},
            },
            "status": {"replicas": 3},
        });
        let listed: ListedStatefulSet = serde_json::from_value(full.clone()).unwrap();
        assert_eq!(listed.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(listed.namespace(), "shop");
        assert_eq!(listed.uid(), "0b5e-uid");
        let via_listing = listed.into_view();
        let via_webhook: view::StatefulSet = serde_json::from_value(full).unwrap();
        assert_eq!(via_listing, via_webhook);
    }
}
