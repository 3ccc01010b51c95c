//! The policy as API objects (group `sts-guard.io`, version `v1alpha1`):
//! `StatefulSetPolicy` (cluster-scoped; the one named `default` is the
//! policy, its `spec` the policy file's keys) and `StatefulSetExemption`
//! (namespaced; exempts StatefulSets of its own namespace from named rules,
//! until it expires).
//!
//! The CustomResourceDefinitions are generated from these types
//! (`sts-guard policy crds`), so the API server refuses at `kubectl apply`
//! what the file parser refuses: OpenAPI types, enums and bounds, and CEL
//! rules (`x-kubernetes-validations`) for what OpenAPI cannot say. Unknown
//! keys are refused by kubectl's strict field validation (its default);
//! a client that turns validation off gets them pruned, never obeyed.

use std::borrow::Cow;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::{Message, Rule};
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

pub use super::StatefulSetPolicy;
use crate::rules::{RULES, RuleId};

pub const API_VERSION: &str = "sts-guard.io/v1alpha1";
/// The only `StatefulSetPolicy` sts-guard reads (the CRD refuses others).
pub const POLICY_NAME: &str = "default";

/// Written by `serve` for `kubectl get stspolicy`: what the spec holds, in
/// numbers a printer column can show.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// Namespaces with settings of their own (`spec.namespaces`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<u32>,
    /// Exemptions in the policy itself plus `StatefulSetExemption` objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exemptions: Option<u32>,
}

/// `StatefulSetExemption`: named rules waived for StatefulSets of its own
/// namespace (or, for one in sts-guard's own namespace, of
/// `spec.namespace`), until `spec.expiresAt`.
// kube's printcolumn(...) repeats `type_ = "string"`, which clippy takes
// for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(
    CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default,
)]
#[kube(
    group = "sts-guard.io",
    version = "v1alpha1",
    kind = "StatefulSetExemption",
    plural = "statefulsetexemptions",
    shortname = "stsexempt",
    namespaced,
    status = "ExemptionStatus",
    doc = "Rules of the sts-guard policy waived for StatefulSets of this namespace, with a reason and an optional expiry. Honoured only where the policy allows exemption objects (allowExemptionObjects).",
    printcolumn(
        name = "StatefulSet",
        type_ = "string",
        json_path = ".spec.statefulSet"
    ),
    printcolumn(name = "Rules", type_ = "string", json_path = ".spec.rules"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".spec.expiresAt"),
    printcolumn(name = "Active", type_ = "string", json_path = ".status.state"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExemptionSpec {
    /// The StatefulSet's name, or `*` for every StatefulSet of the namespace.
    #[schemars(length(max = 253))]
    #[x_kube(validation = Rule::new("self == '*' || self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("must be a StatefulSet name or *"))]
    pub stateful_set: String,
    /// The rule ids waived (at least one).
    #[schemars(length(min = 1, max = 32))]
    pub rules: Vec<RuleId>,
    /// Why; shown in reports and audits.
    #[schemars(length(max = 1024))]
    #[x_kube(validation = not_blank("must say why the StatefulSet is exempt"))]
    pub reason: String,
    /// RFC 3339; from then on the exemption is not honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<ExpiresAt>,
    /// A ticket or change reference, for auditors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub ticket: Option<String>,
    /// Only in sts-guard's own namespace (the platform team's): the
    /// namespace whose StatefulSets are exempted. Elsewhere it must be
    /// omitted or name the object's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// Whether an exemption object is in force, as `serve` reports it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExemptionStatus {
    /// `Active`, `Expired` or `NotAllowed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// An RFC 3339 time (`2026-12-31T23:59:59Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpiresAt(pub jiff::Timestamp);

impl Serialize for ExpiresAt {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ExpiresAt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map(ExpiresAt).map_err(|_| {
            serde::de::Error::custom(format!(
                "`{text}` is not an RFC 3339 time such as 2026-12-31T23:59:59Z"
            ))
        })
    }
}

impl JsonSchema for ExpiresAt {
    fn schema_name() -> Cow<'static, str> {
        "ExpiresAt".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({ "type": "string", "format": "date-time" })
    }
}

impl JsonSchema for RuleId {
    fn schema_name() -> Cow<'static, str> {
        "RuleId".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let ids: Vec<&str> = RULES.iter().map(|r| r.id.as_str()).collect();
        json_schema!({ "type": "string", "enum": ids })
    }
}

/// The schema of a `rules` map: one optional property per rule id, each a
/// mode. A key that is no rule id is an unknown field, which kubectl's
/// strict field validation (its default) refuses, naming it. (A CEL rule
/// over the keys would cost more than the API server allows: map keys
/// have no length bound.)
pub struct RuleModes;

impl JsonSchema for RuleModes {
    fn schema_name() -> Cow<'static, str> {
        "RuleModes".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let mode = generator.subschema_for::<super::Mode>();
        let properties: serde_json::Map<String, serde_json::Value> = RULES
            .iter()
            .map(|r| (r.id.as_str().to_string(), mode.clone().to_value()))
            .collect();
        json_schema!({ "type": "object", "properties": properties })
    }
}

/// CEL: a string with something in it besides spaces.
pub(super) fn not_blank(message: &str) -> Rule {
    Rule::new(r"!self.matches('^\\s*$')").message(Message::Message(message.to_string()))
}

/// A positive duration written as `90s`, `5m` or `1h30m` (units `ms`,
/// `s`, `m`, `h`, `d`, a form the file parser reads too): at least one
/// part has a digit other than 0. A pattern, not CEL: it costs nothing
/// against the API server's CEL budget, however many namespaces there are.
pub const DURATION_PATTERN: &str =
    "^([0-9]+(ms|s|m|h|d))*[0-9]*[1-9][0-9]*(ms|s|m|h|d)([0-9]+(ms|s|m|h|d))*$";

/// Both CustomResourceDefinitions, as `deploy/` and the chart ship them.
pub fn crds() -> [CustomResourceDefinition; 2] {
    [
        strip_defaults(StatefulSetPolicy::crd()),
        strip_defaults(StatefulSetExemption::crd()),
    ]
}

/// `#[serde(default)]` makes schemars write the Rust default into the
/// schema; the API server would then store keys the user never wrote.
fn strip_defaults(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.remove("default");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(&crd).expect("a CRD encodes");
    strip(&mut value);
    serde_json::from_value(value).expect("a CRD decodes")
}
