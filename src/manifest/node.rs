//! A YAML or JSON document as a tree that remembers where each node was
//! written, so a finding or a decode error can name its line and column.
//!
//! Scalars are resolved as kubectl resolves them (sigs.k8s.io/yaml on top of
//! go-yaml v2, YAML 1.1): `0755` is the octal 493, `yes`/`on` are booleans,
//! a repeated key keeps its last value. The parser's options say so; this
//! type only records what it is handed, with the node's position.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::rules::{FieldPath, Segment};

/// 1-based line and column of a node in its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One step down a tree: a mapping's key or a sequence's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// One node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub at: Position,
    pub value: NodeValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Seq(Vec<Node>),
    /// Keys in the order written, each once (the last value of a repeated
    /// key; YAML's non-string keys as their text, as kubectl turns them into
    /// JSON).
    Map(Vec<(String, Node)>),
}

impl Node {
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            NodeValue::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, NodeValue::Null)
    }

    /// Moves every line by `lines` and, on the first line, every column by
    /// `columns`: a node parsed from a slice of a larger text.
    pub fn shift(&mut self, lines: u64, columns: u64) {
        if self.at.line == 1 {
            self.at.column += columns;
        }
        self.at.line += lines;
        match &mut self.value {
            NodeValue::Seq(items) => items.iter_mut().for_each(|n| n.shift(lines, columns)),
            NodeValue::Map(entries) => entries
                .iter_mut()
                .for_each(|(_, n)| n.shift(lines, columns)),
            _ => {}
        }
    }

    /// The node at `path`, or the deepest node on the way to it (a missing
    /// field is best shown at its parent).
    pub fn position_of(&self, path: &FieldPath) -> Position {
        self.position_along(path.segments().iter().map(|segment| match segment {
            Segment::Field(key) => Step::Key(key),
            Segment::Index(i) => Step::Index(*i),
        }))
    }

    /// The node at the end of `steps`, or the deepest node on the way to it:
    /// the one walk behind a finding's path and a decode error's.
    pub(super) fn position_along<'a>(&self, steps: impl IntoIterator<Item = Step<'a>>) -> Position {
        let mut node = self;
        for step in steps {
            let next = match (step, &node.value) {
                (Step::Key(key), NodeValue::Map(_)) => node.get(key),
                (Step::Index(i), NodeValue::Seq(items)) => items.get(i),
                _ => None,
            };
            match next {
                Some(n) => node = n,
                None => break,
            }
        }
        node.at
    }

    /// The same document as JSON, for typed decoding.
    pub fn to_json(&self) -> Value {
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Number(n) => Value::Number(n.clone()),
            NodeValue::String(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), v.to_json()))
                    .collect::<Map<_, _>>(),
            ),
        }
    }

    /// A JSON value read without positions (every node at `at`).
    pub fn from_json(value: Value, at: Position) -> Node {
        let value = match value {
            Value::Null => NodeValue::Null,
            Value::Bool(b) => NodeValue::Bool(b),
            Value::Number(n) => NodeValue::Number(n),
            Value::String(s) => NodeValue::String(s),
            Value::Array(items) => {
                NodeValue::Seq(items.into_iter().map(|v| Node::from_json(v, at)).collect())
            }
            Value::Object(map) => NodeValue::Map(
                map.into_iter()
                    .map(|(k, v)| (k, Node::from_json(v, at)))
                    .collect(),
            ),
        };
        Node { at, value }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<NodeValue>::deserialize(d)?;
        Ok(Node {
            at: Position {
                line: spanned.referenced.line(),
                column: spanned.referenced.column(),
            },
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a YAML or JSON value")
    }

    fn visit_unit<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_none<E>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        NodeValue::deserialize(d)
    }
    fn visit_bool<E>(self, b: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<NodeValue, E> {
        Ok(NodeValue::Number(n.into()))
    }
    fn visit_i128<E: de::Error>(self, n: i128) -> Result<NodeValue, E> {
        // Beyond 64 bits JSON numbers lose nothing a rule reads; as a float,
        // like Go's decoder into interface{}.
        self.visit_f64(n as f64)
    }
    fn visit_u128<E: de::Error>(self, n: u128) -> Result<NodeValue, E> {
        self.visit_f64(n as f64)
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<NodeValue, E> {
        Number::from_f64(n)
            .map(NodeValue::Number)
            .ok_or_else(|| E::custom("a number that JSON cannot hold (.inf or .nan)"))
    }
    fn visit_str<E>(self, s: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<NodeValue, E> {
        Ok(NodeValue::String(s))
    }
    fn visit_bytes<E>(self, b: &[u8]) -> Result<NodeValue, E> {
        Ok(NodeValue::String(String::from_utf8_lossy(b).into_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(NodeValue::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Key>()? {
            let value = map.next_value::<Node>()?;
            // The last of a repeated key wins, where it was first written.
            match entries.iter_mut().find(|(k, _)| *k == key.0) {
                Some(entry) => entry.1 = value,
                None => entries.push((key.0, value)),
            }
        }
        Ok(NodeValue::Map(entries))
    }
}

/// A mapping key as JSON needs it: YAML allows `80: http` or `true: x`,
/// which kubectl writes as the strings "80" and "true".
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match NodeValue::deserialize(d)? {
            NodeValue::String(s) => s,
            NodeValue::Null => "null".to_string(),
            NodeValue::Bool(b) => b.to_string(),
            NodeValue::Number(n) => n.to_string(),
            NodeValue::Seq(_) | NodeValue::Map(_) => {
                return Err(de::Error::custom(
                    "a mapping key is itself a list or mapping; JSON (and so the API) cannot hold it",
                ));
            }
        };
        Ok(Key(text))
    }
}

#[cfg(test)]
mod tests {
    use super::{Node, Position, Step};
    use crate::rules::FieldPath;

    #[test]
    fn a_walk_ends_at_the_deepest_node_on_the_way() {
        let doc: Node = serde_saphyr::from_str("spec:\n  containers:\n  - name: a\n").unwrap();
        let at = |line, column| Position { line, column };
        let containers = [Step::Key("spec"), Step::Key("containers")];
        let walk = |steps: &[Step]| doc.position_along(steps.iter().copied());
        assert_eq!(
            walk(&[&containers[..], &[Step::Index(0), Step::Key("name")]].concat()),
            at(3, 11)
        );
        // A missing key, an index past the end, a key into a sequence: the
        // node reached so far.
        let spec = walk(&containers[..1]);
        assert_eq!(spec, at(2, 3));
        assert_eq!(walk(&[Step::Key("spec"), Step::Key("selector")]), spec);
        let list = walk(&containers);
        assert_ne!(list, spec);
        assert_eq!(walk(&[&containers[..], &[Step::Index(1)]].concat()), list);
        assert_eq!(
            walk(&[&containers[..], &[Step::Key("name")]].concat()),
            list
        );
        assert_eq!(
            doc.position_of(
                &FieldPath::of(&["spec", "containers"])
                    .index(0)
                    .field("name")
            ),
            at(3, 11)
        );
    }
}
