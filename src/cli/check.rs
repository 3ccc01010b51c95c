//! `sts-guard check -f PATH...`: the webhook's answer for manifests, offline.
//! Services anywhere in the input count as existing.

use std::path::PathBuf;

use thiserror::Error;

use super::input::{self, InputError, InputObject, InputStatefulSet};
use super::report::{Body, Command, ObjectReport, Origin, Report};
use crate::lookup::ManifestServices;
use crate::policy::{Policy, PolicyError};
use crate::rules::{ServiceLookup, ServiceState};

pub struct CheckOptions {
    /// Files, folders (recursively), or `-` for stdin.
    pub paths: Vec<PathBuf>,
    /// Namespace of objects that have none.
    pub namespace: String,
    /// The policy file `serve` takes; `None` enforces every rule.
    pub policy: Option<PathBuf>,
}

#[derive(Debug, Error)]
pub enum CheckError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// Reads the manifests and reviews every StatefulSet in them, in input
/// order.
pub fn check(options: &CheckOptions) -> Result<Report, CheckError> {
    let policy = Policy::load_or_default(options.policy.as_deref())?;
    let mut services = ManifestServices::default();
    // (input position, report): reviews finish out of order, see below.
    let mut done: Vec<(usize, ObjectReport)> = Vec::new();
    let mut waiting: Vec<(usize, InputStatefulSet)> = Vec::new();
    let mut position = 0;

    input::read_objects(&options.paths, &options.namespace, |object| {
        position += 1;
        match object {
            InputObject::Service(svc, ns) => services.insert(*svc, &ns),
            InputObject::Invalid(bad) => done.push((
                position,
                ObjectReport {
                    namespace: bad.namespace,
                    name: bad.name,
                    origin: Origin::File(bad.source),
                    body: Body::Invalid(bad.message),
                },
            )),
            // A StatefulSet whose Service is already known is reviewed and
            // dropped at once, so the usual order (helm and kustomize put
            // Services first) holds no object longer than its document.
            // The others wait: their Service may come later in the input.
            InputObject::StatefulSet(s) if !needs_later_service(&s, &services) => {
                done.push((position, review_input(*s, &policy, &services)));
            }
            InputObject::StatefulSet(s) => waiting.push((position, *s)),
        }
    })?;

    for (position, s) in waiting {
        done.push((position, review_input(s, &policy, &services)));
    }
    done.sort_by_key(|(position, _)| *position);
    Ok(Report {
        command: Command::Check,
        objects: done.into_iter().map(|(_, report)| report).collect(),
    })
}

/// True when the StatefulSet names a Service not seen yet.
fn needs_later_service(s: &InputStatefulSet, services: &ManifestServices) -> bool {
    let name = s
        .sts
        .spec
        .as_ref()
        .and_then(|spec| spec.service_name.as_deref())
        .unwrap_or("");
    !name.is_empty() && !matches!(services.service(&s.namespace, name), ServiceState::Found(_))
}

fn review_input(s: InputStatefulSet, policy: &Policy, services: &ManifestServices) -> ObjectReport {
    ObjectReport::reviewed(
        &s.sts,
        s.namespace,
        Origin::File(s.source),
        policy,
        services,
    )
}
