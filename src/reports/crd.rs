//! The CustomResourceDefinition of a report type, generated from the Rust
//! type as kube's `#[derive(CustomResource)]` would (that derive nests
//! fields under `spec`; reports keep theirs at the root, so the schema is
//! generated here with the same settings), with the names and printer
//! columns of the published CRD so `kubectl get` prints what it prints.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, CustomResourceDefinitionNames,
    CustomResourceDefinitionSpec, CustomResourceDefinitionVersion, CustomResourceSubresources,
    CustomResourceValidation, JSONSchemaProps,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::ReportKind;

/// The CRD for `K`, ready to apply.
pub fn crd<K: ReportKind>() -> CustomResourceDefinition {
    let api = &K::API;
    CustomResourceDefinition {
        metadata: ObjectMeta {
            name: Some(api.crd_name()),
            ..ObjectMeta::default()
        },
        spec: CustomResourceDefinitionSpec {
            group: api.group.into(),
            names: CustomResourceDefinitionNames {
                kind: api.kind.into(),
                list_kind: Some(format!("{}List", api.kind)),
                plural: api.plural.into(),
                singular: Some(api.singular.into()),
                short_names: Some(vec![api.short_name.into()]),
                ..CustomResourceDefinitionNames::default()
            },
            scope: "Namespaced".into(),
            versions: vec![CustomResourceDefinitionVersion {
                name: api.version.into(),
                served: true,
                storage: true,
                additional_printer_columns: Some(printer_columns()),
                schema: Some(CustomResourceValidation {
                    open_api_v3_schema: Some(schema::<K>()),
                }),
                subresources: Some(CustomResourceSubresources::default()),
                ..CustomResourceDefinitionVersion::default()
            }],
            ..CustomResourceDefinitionSpec::default()
        },
        status: None,
    }
}

/// Kind and Name (in `-o wide`), the five counts, Age: both published CRDs
/// declare these.
fn printer_columns() -> Vec<CustomResourceColumnDefinition> {
    let column = |name: &str, kind: &str, path: &str, priority: Option<i32>| {
        CustomResourceColumnDefinition {
            name: name.into(),
            type_: kind.into(),
            json_path: path.into(),
            priority,
            ..CustomResourceColumnDefinition::default()
        }
    };
    vec![
        column("Kind", "string", ".scope.kind", Some(1)),
        column("Name", "string", ".scope.name", Some(1)),
        column("Pass", "integer", ".summary.pass", None),
        column("Fail", "integer", ".summary.fail", None),
        column("Warn", "integer", ".summary.warn", None),
        column("Error", "integer", ".summary.error", None),
        column("Skip", "integer", ".summary.skip", None),
        column("Age", "date", ".metadata.creationTimestamp", None),
    ]
}

/// kube-derive's settings: OpenAPI 3, no `$ref` or `$schema` (a CRD
/// allows neither), structural rewrites; and no defaults.
fn schema<K: ReportKind>() -> JSONSchemaProps {
    let generator = schemars::generate::SchemaSettings::openapi3()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .with_transform(schemars::transform::AddNullable::default())
        .with_transform(kube::core::schema::StructuralSchemaRewriter)
        .with_transform(kube::core::schema::OptionalEnum)
        // `#[serde(default)]` makes schemars write the Rust default into
        // the schema; the published CRDs default nothing, and the API
        // server would then fill `""` and `0` into what writers left out.
        .with_transform(schemars::transform::RecursiveTransform(
            |s: &mut schemars::Schema| {
                s.remove("default");
            },
        ))
        .into_generator();
    let schema = generator.into_root_schema_for::<K>();
    // Both are JSON Schema; a failure here is a bug in the types, caught
    // by the tests below on every build.
    serde_json::from_value(schema.to_value()).expect("a report schema is valid JSONSchemaProps")
}

#[cfg(test)]
mod tests;
