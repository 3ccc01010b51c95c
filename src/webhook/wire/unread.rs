//! The parts of an AdmissionReview sts-guard never reads, checked as kube's
//! types check them and built into nothing: a body kube's
//! `AdmissionReview<StatefulSet>` refuses is refused here, with the same
//! words (the types are named as kube's are, so serde's messages match),
//! and one it accepts costs no allocation. Strings are looked at in place.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A string (kube's `String`), not kept.
#[derive(Default)]
pub struct Str;

impl<'de> Deserialize<'de> for Str {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Str;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Str, E> {
                Ok(Str)
            }
        }
        deserializer.deserialize_str(V)
    }
}

/// kube's `GroupVersionKind` (serde derive: every field required).
#[derive(Deserialize)]
#[allow(dead_code)]
pub struct GroupVersionKind {
    group: Str,
    version: Str,
    kind: Str,
}

/// kube's `GroupVersionResource`.
#[derive(Deserialize)]
#[allow(dead_code)]
pub struct GroupVersionResource {
    group: Str,
    version: Str,
    resource: Str,
    #[serde(default)]
    api_version: Str,
}

/// k8s-openapi's `UserInfo`: every field optional, unknown fields skipped,
/// a repeated field's last value kept (its own visitor, not serde derive's).
pub struct UserInfo;

impl<'de> Deserialize<'de> for UserInfo {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UserInfo;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("UserInfo")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UserInfo, A::Error> {
                while let Some(key) = map.next_key::<UserInfoField>()? {
                    match key {
                        UserInfoField::Extra => {
                            map.next_value::<Option<Extra>>()?;
                        }
                        UserInfoField::Groups => {
                            map.next_value::<Option<Vec<Str>>>()?;
                        }
                        UserInfoField::Uid | UserInfoField::Username => {
                            map.next_value::<Option<Str>>()?;
                        }
                        UserInfoField::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(UserInfo)
            }
        }
        deserializer.deserialize_struct("UserInfo", &["extra", "groups", "uid", "username"], V)
    }
}

enum UserInfoField {
    Extra,
    Groups,
    Uid,
    Username,
    Other,
}

impl<'de> Deserialize<'de> for UserInfoField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = UserInfoField;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("field identifier")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<UserInfoField, E> {
                Ok(match v {
                    "extra" => UserInfoField::Extra,
                    "groups" => UserInfoField::Groups,
                    "uid" => UserInfoField::Uid,
                    "username" => UserInfoField::Username,
                    _ => UserInfoField::Other,
                })
            }
        }
        deserializer.deserialize_identifier(V)
    }
}

/// `UserInfo.extra`: a map of string to a list of strings.
struct Extra;

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Extra;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Extra, A::Error> {
                while map.next_entry::<Str, Vec<Str>>()?.is_some() {}
                Ok(Extra)
            }
        }
        deserializer.deserialize_map(V)
    }
}

/// k8s-openapi's `RawExtension`: any JSON value (a `serde_json::Value`
/// inside), numbers parsed as that parses them.
pub struct RawExtension;

impl<'de> Deserialize<'de> for RawExtension {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawExtension;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("RawExtension")
            }
            fn visit_newtype_struct<D: Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<RawExtension, D::Error> {
                AnyValue::deserialize(deserializer)?;
                Ok(RawExtension)
            }
        }
        deserializer.deserialize_newtype_struct("RawExtension", V)
    }
}

/// What `serde_json::Value` accepts, built into nothing.
struct AnyValue;

impl<'de> Deserialize<'de> for AnyValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AnyVisitor)
    }
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = AnyValue;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_none<E: de::Error>(self) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_unit<E: de::Error>(self) -> Result<AnyValue, E> {
        Ok(AnyValue)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<AnyValue, D::Error> {
        AnyValue::deserialize(deserializer)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<AnyValue, A::Error> {
        while seq.next_element::<AnyValue>()?.is_some() {}
        Ok(AnyValue)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue, A::Error> {
        while map.next_entry::<Str, AnyValue>()?.is_some() {}
        Ok(AnyValue)
    }
}
