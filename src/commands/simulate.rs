//! One StatefulSet through both webhooks, the way the API server would run
//! them on a CREATE: mutating first, then validating the mutated object.

use thiserror::Error;

use crate::lookup::Lookups;
use crate::policy::Policy;
use crate::review::{self, ObjectRef, Operation, Outcome, Request};
use crate::view::StatefulSet;

/// What both webhooks would say about one StatefulSet.
#[derive(Debug, Clone, Default)]
pub struct Simulation {
    /// Every finding of the validating webhook and what it does.
    pub outcomes: Vec<Outcome>,
    /// Names of the mutations the mutating webhook would apply.
    pub mutations: Vec<&'static str>,
    pub patch: Option<json_patch::Patch>,
    /// Notes on the object's sts-guard annotations (ignored values,
    /// exemptions the policy does not allow).
    pub notes: Vec<String>,
}

#[derive(Debug, Error)]
enum PatchError {
    #[error("cannot encode the object: {0}")]
    Encode(serde_json::Error),
    #[error("the patch does not apply: {0}")]
    Apply(json_patch::PatchError),
    #[error("the patched object does not decode: {0}")]
    Decode(serde_json::Error),
}

/// Reviews `sts` as a CREATE (not dry-run) in `namespace`, at `now`.
pub fn simulate(
    sts: &StatefulSet,
    namespace: &str,
    policy: &Policy,
    lookups: &dyn Lookups,
    now: jiff::Timestamp,
) -> Simulation {
    let name = sts.name();
    let request = |sts| Request {
        object: ObjectRef { namespace, name },
        sts,
        old: None,
        operation: Operation::Create,
        dry_run: false,
        now,
    };
    let mutated = review::mutate(&request(sts), policy);
    let mut notes = mutated.notes;

    let patched = match &mutated.patch {
        Some(patch) => match apply(sts, patch) {
            Ok(patched) => Some(patched),
            Err(e) => {
                // A core bug, not the user's: say so and validate what we have.
                notes.push(format!(
                    "mutate.sts-guard.io: {e}; validated the object as written"
                ));
                None
            }
        },
        None => None,
    };
    let validated = review::validate(&request(patched.as_ref().unwrap_or(sts)), policy, lookups);
    notes.extend(validated.notes);

    Simulation {
        outcomes: validated.outcomes,
        mutations: mutated.mutations,
        patch: mutated.patch,
        notes,
    }
}

fn apply(sts: &StatefulSet, patch: &json_patch::Patch) -> Result<StatefulSet, PatchError> {
    let mut doc = serde_json::to_value(sts).map_err(PatchError::Encode)?;
    json_patch::patch(&mut doc, patch).map_err(PatchError::Apply)?;
    serde_json::from_value(doc).map_err(PatchError::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lookup::NoLookups;
    use crate::review::Action;
    use serde_json::json;

    fn sts(annotations: serde_json::Value) -> StatefulSet {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "annotations": annotations},
            "spec": {
                "serviceName": "web",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "app",
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}}
                    }]}
                }
            }
        }))
        .unwrap()
    }

    #[test]
    fn mutations_are_listed_and_validation_still_runs() {
        let r = simulate(
            &sts(json!({"sts-guard.io/parallel": "true", "sts-guard.io/startup-probe": "true"})),
            "shop",
            &Policy::default(),
            &NoLookups,
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(r.mutations, vec!["parallel", "startup-probe"]);
        assert_eq!(r.patch.as_ref().map(|p| p.0.len()), Some(2));
        let denied: Vec<_> = r
            .outcomes
            .iter()
            .filter(|o| o.action == Action::Deny)
            .map(|o| o.finding.rule.as_str())
            .collect();
        assert_eq!(denied, vec!["readiness-probe", "headless-service"]);
    }

    #[test]
    fn annotation_notes_become_notes() {
        let r = simulate(
            &sts(json!({"sts-guard.io/parallel": "yes", "sts-guard.io/exempt": "all"})),
            "shop",
            &Policy::default(),
            &NoLookups,
            jiff::Timestamp::UNIX_EPOCH,
        );
        assert_eq!(r.notes.len(), 2, "{:?}", r.notes);
        assert!(r.notes.iter().all(|n| n.starts_with("sts-guard.io/")));
    }
}
