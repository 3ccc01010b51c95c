//! Services known from manifests (offline `check`) or a cluster listing
//! (`audit`): a plain map.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;

use crate::rules::{ServiceLookup, ServiceState};

#[derive(Default, Debug)]
pub struct ManifestServices {
    by_name: HashMap<(String, String), Arc<Service>>,
}

impl ManifestServices {
    /// Adds a Service; `default_namespace` stands in when it has none.
    pub fn insert(&mut self, service: Service, default_namespace: &str) {
        let ns = service
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| default_namespace.to_string());
        let name = service.metadata.name.clone().unwrap_or_default();
        self.by_name.insert((ns, name), Arc::new(service));
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

impl ServiceLookup for ManifestServices {
    fn service(&self, namespace: &str, name: &str) -> ServiceState {
        match self.by_name.get(&(namespace.to_string(), name.to_string())) {
            Some(s) => ServiceState::Found(s.clone()),
            None => ServiceState::NotFound,
        }
    }
}
