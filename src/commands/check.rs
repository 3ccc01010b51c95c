//! `sts-guard check -f PATH...`: the webhook's answer for manifests, offline.
//! Services and PodDisruptionBudgets anywhere in the input count as
//! existing.

use std::path::PathBuf;

use super::report::{Body, ObjectReport, Origin, Run, RunReport};
use crate::lookup::{Objects, Services};
use crate::manifest::{self, InputObject, InputStatefulSet};
use crate::policy::{Policy, PolicyError};

pub struct CheckOptions {
    /// Files, folders (recursively), or `-` for stdin.
    pub paths: Vec<PathBuf>,
    /// Namespace of objects that have none.
    pub namespace: String,
    /// The policy file `serve` takes; `None` enforces every rule.
    pub policy: Option<PathBuf>,
}

/// Reads the manifests and reviews every StatefulSet in them, in input
/// order. Files that cannot be read are in the report's `errors`, beside
/// the findings of every file that could.
pub fn check(options: &CheckOptions) -> Result<RunReport, PolicyError> {
    let policy = Policy::load_or_default(options.policy.as_deref())?;
    let mut looked_up = Objects::default();
    // (input position, report): reviews finish out of order, see below.
    let mut done: Vec<(usize, ObjectReport)> = Vec::new();
    let mut waiting: Vec<(usize, InputStatefulSet)> = Vec::new();
    let mut position = 0;

    let read = manifest::read_objects(&options.paths, &options.namespace, |object| {
        position += 1;
        match object {
            InputObject::LookedUp(o) => looked_up.insert(o.object, o.source.to_string()),
            InputObject::Invalid(bad) => done.push((
                position,
                ObjectReport {
                    namespace: bad.namespace,
                    name: bad.name,
                    origin: Origin::File(bad.source),
                    body: Body::Invalid(bad.message, Some(bad.at)),
                    positions: Vec::new(),
                },
            )),
            // A StatefulSet that looks nothing up is reviewed and dropped at
            // once. The others wait for the whole input: their Service or
            // PodDisruptionBudget may come later (or be defined again), and
            // the answer must not depend on the order of the files.
            InputObject::StatefulSet(s) if crate::rules::needs(&s.sts, &s.namespace).is_empty() => {
                done.push((position, review_input(*s, &policy, &looked_up)));
            }
            InputObject::StatefulSet(s) => waiting.push((position, *s)),
        }
    });

    for (position, s) in waiting {
        done.push((position, review_input(s, &policy, &looked_up)));
    }
    done.sort_by_key(|(position, _)| *position);
    Ok(RunReport {
        command: Run::Check,
        objects: done.into_iter().map(|(_, report)| report).collect(),
        errors: read.errors,
        duplicates: looked_up.duplicates::<Services>(),
        documents: Some(read.documents),
    })
}

fn review_input(s: InputStatefulSet, policy: &Policy, looked_up: &Objects) -> ObjectReport {
    let mut report = ObjectReport::reviewed(
        &s.sts,
        s.namespace,
        Origin::File(s.source),
        policy,
        looked_up,
    );
    report.positions = report
        .outcomes()
        .iter()
        .map(|o| s.node.position_of(&o.finding.path))
        .collect();
    report
}
