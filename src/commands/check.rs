//! `sts-guard check -f PATH...`: the webhook's answer for manifests, offline.
//! Services and PodDisruptionBudgets anywhere in the input count as
//! existing.

use std::path::PathBuf;

use super::report::{Body, Expiring, ObjectReport, Origin, Run, RunReport};
use crate::lookup::{Objects, Services};
use crate::manifest::{self, InputObject, InputStatefulSet, PolicyObject};
use crate::policy::{Policy, PolicyError};

pub struct CheckOptions {
    /// Files, folders (recursively), or `-` for stdin.
    pub paths: Vec<PathBuf>,
    /// Namespace of objects that have none.
    pub namespace: String,
    /// The policy file `serve` takes; `None`: the `StatefulSetPolicy` in
    /// the input, else the built-in default.
    pub policy: Option<PathBuf>,
    /// sts-guard's own namespace: exemption objects there are always
    /// honoured and may name another namespace.
    pub platform_namespace: String,
}

/// Reads the manifests and reviews every StatefulSet in them, in input
/// order. Files that cannot be read are in the report's `errors`, beside
/// the findings of every file that could.
pub fn check(options: &CheckOptions) -> Result<RunReport, PolicyError> {
    let file_policy = options.policy.as_deref().map(Policy::load).transpose()?;
    let now = jiff::Timestamp::now();
    let mut looked_up = Objects::default();
    // (input position, report): reviews finish out of order, see below.
    let mut done: Vec<(usize, ObjectReport)> = Vec::new();
    let mut waiting: Vec<(usize, InputStatefulSet)> = Vec::new();
    let mut policy_object = None;
    let mut exemptions = Vec::new();
    let mut bad_policy_objects = Vec::new();
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
            // Every StatefulSet waits for the whole input: its Service,
            // PodDisruptionBudget, the policy or an exemption may come
            // later (or be defined again), and the answer must not depend
            // on the order of the files.
            InputObject::StatefulSet(s) => waiting.push((position, *s)),
            // As `kubectl apply` would leave it: the last one stands.
            InputObject::PolicyObject(PolicyObject::Policy(p), source) => {
                policy_object = Some((*p, source));
            }
            InputObject::PolicyObject(PolicyObject::Exemption(e), _) => exemptions.push(*e),
            InputObject::BadPolicyObject(e) => bad_policy_objects.push(e),
        }
    });

    let base = match (file_policy, policy_object) {
        (Some(policy), _) => policy,
        (None, Some((object, source))) => Policy::from_spec(object.spec, &source.to_string())?,
        (None, None) => Policy::default(),
    };
    let policy = base.with_exemption_objects(exemptions, &options.platform_namespace);
    for (position, s) in waiting {
        done.push((position, review_input(s, &policy, &looked_up, now)));
    }
    done.sort_by_key(|(position, _)| *position);
    Ok(RunReport {
        command: Run::Check,
        objects: done.into_iter().map(|(_, report)| report).collect(),
        errors: read.errors.into_iter().chain(bad_policy_objects).collect(),
        duplicates: looked_up.duplicates::<Services>(),
        documents: Some(read.documents),
        expiring: Expiring::of(&policy, now),
    })
}

fn review_input(
    s: InputStatefulSet,
    policy: &Policy,
    looked_up: &Objects,
    now: jiff::Timestamp,
) -> ObjectReport {
    let mut report = ObjectReport::reviewed(
        &s.sts,
        s.namespace,
        Origin::File(s.source),
        policy,
        looked_up,
        now,
    );
    report.positions = report
        .outcomes()
        .iter()
        .map(|o| s.node.position_of(&o.finding.path))
        .collect();
    report
}
