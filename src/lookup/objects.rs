//! Objects of the looked-up kinds known from manifests (offline `check`,
//! `serve --services-from`) or a cluster listing (`audit`): ordered maps
//! of what the rules read, answering like the cluster would.
//!
//! An object can be defined more than once in one input (several
//! environments rendered into one namespace); each definition is kept,
//! with where it was read, and the kind decides what that means
//! ([`super::Kind::from_objects`]). The report names the Services defined
//! more than once, and where.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::listing::Key;
use super::{Answer, Lookups, Member, Need, Object, ObjectMaps};

/// The objects of every looked-up kind, from manifests or a listing.
#[derive(Default, Debug)]
pub struct Objects {
    maps: ObjectMaps,
}

/// One kind's definitions, by (namespace, name).
pub type Definitions<T> = BTreeMap<Key, Vec<Definition<T>>>;

#[derive(Debug)]
pub struct Definition<T> {
    pub object: Arc<T>,
    /// Where it was read (`app.yaml:12:1`); empty for a cluster listing.
    pub place: String,
}

/// An object defined more than once, and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Duplicate {
    pub namespace: String,
    pub name: String,
    /// Every place it is defined, in input order.
    pub places: Vec<String>,
}

pub(super) fn insert<T>(defined: &mut Definitions<T>, key: Key, object: Arc<T>, place: String) {
    defined
        .entry(key)
        .or_default()
        .push(Definition { object, place });
}

impl Objects {
    /// Adds an object; `place` says where it was read (empty for a
    /// listing).
    pub fn insert(&mut self, object: Object, place: String) {
        object.insert_into(&mut self.maps, place);
    }

    /// Every object of kind `K` defined more than once, sorted by namespace
    /// and name.
    pub fn duplicates<K: Member>(&self) -> Vec<Duplicate> {
        K::definitions(&self.maps)
            .iter()
            .filter(|(_, defs)| defs.len() > 1)
            .map(|((namespace, name), defs)| Duplicate {
                namespace: namespace.to_string(),
                name: name.to_string(),
                places: defs.iter().map(|d| d.place.clone()).collect(),
            })
            .collect()
    }
}

impl Lookups for Objects {
    fn answer(&self, need: &Need) -> Answer {
        need.answer_in(&self.maps)
    }
}
