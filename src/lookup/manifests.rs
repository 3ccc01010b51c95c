//! Services and PodDisruptionBudgets known from manifests (offline
//! `check`) or a cluster listing (`audit`): plain maps of what the rules
//! read. (The type keeps its first name, `ManifestLookups`, for now.)
//!
//! The same Service can be defined more than once in one input (several
//! environments rendered into one namespace). Which one a cluster ends up
//! with depends on the order of the applies, so `check` gives an answer
//! that does not: a StatefulSet is checked against every distinct
//! definition and passes only if it passes with each. The report names the
//! duplicates and where each is.

use std::collections::HashMap;
use std::sync::Arc;

use crate::manifest::InputError;
use crate::rules::{BudgetsState, Lookups, ServiceState};
use crate::view::{DisruptionBudget, Service};

#[derive(Default, Debug)]
pub struct ManifestLookups {
    by_name: HashMap<(String, String), Vec<Definition>>,
    /// PodDisruptionBudgets by namespace.
    budgets: HashMap<String, Vec<Arc<DisruptionBudget>>>,
}

#[derive(Debug)]
struct Definition {
    service: Arc<Service>,
    /// Where it was read (`app.yaml:12:1`); empty for a cluster listing.
    place: String,
}

/// A Service defined more than once, and where.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Duplicate {
    pub namespace: String,
    pub name: String,
    /// Every place it is defined, in input order.
    pub places: Vec<String>,
}

impl ManifestLookups {
    /// The Services of manifest files (`serve --services-from`, tests).
    /// The Services and PodDisruptionBudgets of manifest files (`serve
    /// --services-from`, tests); the first input error stops it (a server
    /// must not start on half its input).
    pub fn read(paths: &[std::path::PathBuf]) -> Result<ManifestLookups, InputError> {
        use crate::manifest::InputObject;
        let mut objects = ManifestLookups::default();
        let read = crate::manifest::read_objects(paths, "default", |object| match object {
            InputObject::Service(s) => {
                let place = s.source.to_string();
                objects.insert(&s.service, &s.namespace, place);
            }
            InputObject::DisruptionBudget(b) => objects.insert_budget(b.budget),
            _ => {}
        });
        match read.errors.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(objects),
        }
    }

    /// Adds a Service in `namespace`; `place` says where it was read.
    pub fn insert(
        &mut self,
        service: &k8s_openapi::api::core::v1::Service,
        namespace: &str,
        place: String,
    ) {
        self.insert_projection(Service::of(service, namespace), place);
    }

    /// Adds what the rules read of a Service.
    pub fn insert_projection(&mut self, service: Service, place: String) {
        self.by_name
            .entry((service.namespace.clone(), service.name.clone()))
            .or_default()
            .push(Definition {
                service: Arc::new(service),
                place,
            });
    }

    /// Adds what the rules read of a PodDisruptionBudget.
    pub fn insert_budget(&mut self, budget: DisruptionBudget) {
        self.budgets
            .entry(budget.namespace.clone())
            .or_default()
            .push(Arc::new(budget));
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Every Service defined more than once, sorted by namespace and name.
    pub fn duplicates(&self) -> Vec<Duplicate> {
        let mut found: Vec<Duplicate> = self
            .by_name
            .iter()
            .filter(|(_, defs)| defs.len() > 1)
            .map(|((namespace, name), defs)| Duplicate {
                namespace: namespace.clone(),
                name: name.clone(),
                places: defs.iter().map(|d| d.place.clone()).collect(),
            })
            .collect();
        found.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        found
    }
}

/// What the rules read of a Service, as a sort key: two definitions that
/// agree on it are the same answer.
fn what_the_rule_reads(service: &Service) -> String {
    serde_json::to_string(&(&service.cluster_ip, &service.selector)).unwrap_or_default()
}

impl Lookups for ManifestLookups {
    fn disruption_budgets(&self, namespace: &str) -> BudgetsState {
        BudgetsState::Found(self.budgets.get(namespace).cloned().unwrap_or_default())
    }

    fn service(&self, namespace: &str, name: &str) -> ServiceState {
        let Some(defs) = self.by_name.get(&(namespace.to_string(), name.to_string())) else {
            return ServiceState::NotFound;
        };
        if let [only] = defs.as_slice() {
            return ServiceState::Found(only.service.clone());
        }
        // In an order that does not depend on the input's.
        let mut distinct: Vec<(String, Arc<Service>)> = defs
            .iter()
            .map(|d| (what_the_rule_reads(&d.service), d.service.clone()))
            .collect();
        distinct.sort_by(|a, b| a.0.cmp(&b.0));
        distinct.dedup_by(|a, b| a.0 == b.0);
        match distinct.len() {
            1 => ServiceState::Found(distinct.remove(0).1),
            _ => ServiceState::Several(distinct.into_iter().map(|(_, s)| s).collect()),
        }
    }
}
