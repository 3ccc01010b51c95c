//! Label maps and selectors as the caches hold them. `serve` keeps one per
//! cached headless Service and PodDisruptionBudget, tens of thousands in a
//! large cluster: a `BTreeMap<String, String>` of two labels allocates an
//! eleven-slot node (about 560 bytes) and a string each; [`Labels`] keeps
//! every key and value in one string and their ends in one slice, two
//! allocations of about as many bytes as the labels have.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Labels, sorted by key, one value per key (a repeated key keeps its last
/// value, as the API server's decoder does).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Labels {
    /// key₀ value₀ key₁ value₁ ..., concatenated.
    text: Box<str>,
    /// Where each key and value ends in `text`.
    ends: Box<[u32]>,
}

impl Labels {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut start = 0;
        let mut strings = self.ends.iter().map(move |&end| {
            let s = &self.text[start..end as usize];
            start = end as usize;
            s
        });
        std::iter::from_fn(move || Some((strings.next()?, strings.next()?)))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// True when every label here is among `labels`, with the same value
    /// (`matchLabels` semantics).
    pub fn all_in(&self, labels: &BTreeMap<String, String>) -> bool {
        self.iter()
            .all(|(k, v)| labels.get(k).map(String::as_str) == Some(v))
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Labels {
        let pairs: Vec<(K, V)> = pairs.into_iter().collect();
        // Sorted by key; a repeated key keeps its last value.
        let mut sorted = BTreeMap::new();
        for (k, v) in &pairs {
            sorted.insert(k.as_ref(), v.as_ref());
        }
        let mut text = String::new();
        let mut ends = Vec::with_capacity(sorted.len() * 2);
        for (k, v) in sorted {
            for s in [k, v] {
                text.push_str(s);
                // Labels are at most 63 + 253 bytes a key and 63 a value;
                // only a hand-made manifest could pass 4 GiB, and it would
                // not fit in the 8 MiB an object may take anyway.
                ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
            }
        }
        Labels {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        }
    }
}

impl From<BTreeMap<String, String>> for Labels {
    fn from(map: BTreeMap<String, String>) -> Labels {
        map.into_iter().collect()
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
        struct LabelsVisitor;
        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut pairs = BTreeMap::<String, String>::new();
                while let Some((k, v)) = map.next_entry()? {
                    pairs.insert(k, v);
                }
                Ok(pairs.into())
            }
        }
        d.deserialize_map(LabelsVisitor)
    }
}

/// A label selector (`matchLabels` and `matchExpressions`, ANDed), as a
/// PodDisruptionBudget carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Selector {
    #[serde(default, deserialize_with = "super::nullable")]
    pub match_labels: Labels,
    #[serde(default, deserialize_with = "super::nullable")]
    pub match_expressions: Box<[Requirement]>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Requirement {
    pub key: Box<str>,
    pub operator: Operator,
    #[serde(default, deserialize_with = "super::nullable")]
    pub values: Box<[Box<str>]>,
}

/// A `matchExpressions` operator, the four the API server accepts
/// (`kube::core::Expression` has the same), typed once when read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    /// Any other word: the API server refuses it, so it selects nothing.
    Other(Box<str>),
}

impl Operator {
    pub fn parse(word: &str) -> Operator {
        match word {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => Operator::Other(other.into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Operator::In => "In",
            Operator::NotIn => "NotIn",
            Operator::Exists => "Exists",
            Operator::DoesNotExist => "DoesNotExist",
            Operator::Other(word) => word,
        }
    }
}

impl Serialize for Operator {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Operator {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Operator, D::Error> {
        let word = std::borrow::Cow::<str>::deserialize(d)?;
        Ok(Operator::parse(&word))
    }
}

impl Selector {
    /// Label-selector semantics: every `matchLabels` entry and every
    /// expression holds.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels.all_in(labels)
            && self.match_expressions.iter().all(|e| {
                let value = labels.get(&*e.key).map(String::as_str);
                let listed = |v: &str| e.values.iter().any(|x| &**x == v);
                match e.operator {
                    Operator::In => value.is_some_and(listed),
                    Operator::NotIn => value.is_none_or(|v| !listed(v)),
                    Operator::Exists => value.is_some(),
                    Operator::DoesNotExist => value.is_none(),
                    Operator::Other(_) => false,
                }
            })
    }
}

impl From<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> for Selector {
    fn from(s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector) -> Selector {
        Selector {
            match_labels: s.match_labels.iter().flatten().collect(),
            match_expressions: s
                .match_expressions
                .iter()
                .flatten()
                .map(|e| Requirement {
                    key: e.key.as_str().into(),
                    operator: Operator::parse(&e.operator),
                    values: e
                        .values
                        .iter()
                        .flatten()
                        .map(|v| v.as_str().into())
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn labels_read_back_sorted_with_the_last_value_of_a_repeated_key() {
        let read: Labels =
            serde_json::from_str(r#"{"b": "2", "a": "1", "b": "3", "": ""}"#).unwrap();
        assert_eq!(
            read.iter().collect::<Vec<_>>(),
            [("", ""), ("a", "1"), ("b", "3")]
        );
        assert_eq!(read.get("b"), Some("3"));
        assert_eq!(read.get("c"), None);
        assert_eq!(
            serde_json::to_value(&read).unwrap(),
            json!({"": "", "a": "1", "b": "3"})
        );
        assert!(Labels::default().is_empty());
        assert!(!read.is_empty());
    }

    #[test]
    fn match_labels_need_every_pair() {
        let selector: Labels = [("app", "web"), ("tier", "db")].into_iter().collect();
        assert!(selector.all_in(&labels(&[("app", "web"), ("tier", "db"), ("x", "y")])));
        assert!(!selector.all_in(&labels(&[("app", "web")])));
        assert!(!selector.all_in(&labels(&[("app", "web"), ("tier", "cache")])));
        assert!(Labels::default().all_in(&labels(&[])));
    }

    #[test]
    fn selectors_read_as_the_api_writes_them_and_select_as_it_does() {
        let selector: Selector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["db", "cache"]},
                {"key": "canary", "operator": "DoesNotExist"},
                {"key": "zone", "operator": "NotIn", "values": ["b"]},
                {"key": "app", "operator": "Exists", "values": null}
            ]
        }))
        .unwrap();
        let pod = |extra: &[(&str, &str)]| {
            let mut l = labels(&[("app", "web"), ("tier", "db")]);
            l.extend(labels(extra));
            l
        };
        assert!(selector.selects(&pod(&[])));
        assert!(selector.selects(&pod(&[("zone", "a")])));
        assert!(!selector.selects(&pod(&[("zone", "b")])));
        assert!(!selector.selects(&pod(&[("canary", "1")])));
        assert!(!selector.selects(&labels(&[("app", "web"), ("tier", "web")])));
        let empty: Selector =
            serde_json::from_value(json!({"matchLabels": null, "matchExpressions": null})).unwrap();
        assert!(
            empty.selects(&labels(&[])),
            "an empty selector selects every pod"
        );
        let odd: Selector = serde_json::from_value(
            json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}),
        )
        .unwrap();
        assert!(!odd.selects(&labels(&[("a", "2")])));
    }

    /// Selects exactly what kube's typed selector (`kube::core::Selector`,
    /// from the same `LabelSelector`) selects.
    #[rstest::rstest]
    #[case::match_labels(json!({"matchLabels": {"app": "web"}}))]
    #[case::two_match_labels(json!({"matchLabels": {"app": "web", "tier": "db"}}))]
    #[case::in_(json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["db", "cache"]}]}))]
    #[case::not_in(json!({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]}))]
    #[case::exists(json!({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}))]
    #[case::does_not_exist(json!({"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}))]
    #[case::labels_and_expressions(json!({"matchLabels": {"app": "web"}, "matchExpressions": [
        {"key": "zone", "operator": "NotIn", "values": ["b"]}, {"key": "tier", "operator": "Exists"}]}))]
    #[case::in_nothing(json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": []}]}))]
    #[case::empty(json!({}))]
    fn selects_what_kubes_typed_selector_selects(#[case] selector: serde_json::Value) {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
        use kube::core::SelectorExt;
        let api: LabelSelector = serde_json::from_value(selector.clone()).unwrap();
        let kube = kube::core::Selector::try_from(api.clone()).unwrap();
        let ours_read: Selector = serde_json::from_value(selector).unwrap();
        let ours_converted = Selector::from(&api);
        assert_eq!(ours_read, ours_converted);
        let pods = [
            labels(&[]),
            labels(&[("app", "web")]),
            labels(&[("app", "web"), ("tier", "db")]),
            labels(&[("app", "web"), ("tier", "cache"), ("zone", "a")]),
            labels(&[("app", "web"), ("tier", "db"), ("zone", "b")]),
            labels(&[("app", "api"), ("tier", "db"), ("zone", "a")]),
            labels(&[("tier", "")]),
        ];
        for pod in &pods {
            assert_eq!(ours_read.selects(pod), kube.matches(pod), "{pod:?}");
        }
    }

    #[test]
    fn an_operator_the_api_server_refuses_selects_nothing_and_kube_refuses_it_too() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
        let selector =
            json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]});
        let api: LabelSelector = serde_json::from_value(selector.clone()).unwrap();
        assert!(kube::core::Selector::try_from(api).is_err());
        let ours: Selector = serde_json::from_value(selector).unwrap();
        assert_eq!(
            ours.match_expressions[0].operator,
            Operator::Other("Gt".into())
        );
        assert!(!ours.selects(&labels(&[("a", "2")])));
        assert_eq!(
            serde_json::to_value(&ours.match_expressions[0].operator).unwrap(),
            json!("Gt")
        );
    }
}
