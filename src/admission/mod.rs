//! The pure core: an admission request and a context in, a decision out.
//! No I/O here: the HTTP edge decodes, calls [`review`], encodes.

pub mod patch;
mod validate;
mod warnings;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use serde::Serialize;

use crate::policy::Policy;
use crate::rules::{Finding, RuleId, ServiceLookup};

pub use validate::validate;
pub use warnings::{
    MAX_DENIAL_BYTES, MAX_DENIAL_LINE_BYTES, MAX_DENIAL_PROBLEMS, MAX_WARNING_BYTES,
    MAX_WARNINGS_TOTAL_BYTES,
};

/// Annotation prefix every sts-guard annotation shares.
pub const ANNOTATION_PREFIX: &str = "sts-guard.io/";
/// Owner exemption: comma-separated rule ids (or `all`); only honoured when
/// the policy allows owner exemptions in the namespace.
pub const EXEMPT_ANNOTATION: &str = "sts-guard.io/exempt";

/// Which webhook is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Validate,
    Mutate,
}

impl Endpoint {
    pub const fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// What the review reads besides the request.
pub struct Context<'a> {
    pub policy: &'a Policy,
    pub services: &'a dyn ServiceLookup,
}

/// What was done with one finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action", content = "why")]
pub enum Action {
    /// Denies the request.
    Deny,
    /// Allowed with a warning; `why` says why it was not denied.
    Warn(WarnReason),
    /// Allowed silently; logged and counted.
    Audit,
    /// Not applied to this object.
    Exempt(String),
}

impl Action {
    /// Label used in metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Action::Deny => "deny",
            Action::Warn(_) => "warn",
            Action::Audit => "audit",
            Action::Exempt(_) => "exempt",
        }
    }
}

/// Why an enforced finding only warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WarnReason {
    /// The namespace or rule is in warn mode.
    WarnMode,
    /// UPDATE: the old object already broke the rule (ratcheting).
    AlreadyBroken,
    /// UPDATE: `serviceName` is immutable; a vanished Service never blocks.
    ServiceGoneOnUpdate,
    /// Dry-run: the Service may be in the same apply but not stored.
    DryRunServiceMissing,
    /// The Service could not be looked up (API server unreachable).
    LookupFailed,
}

impl WarnReason {
    /// Appended to the warning so the user knows why it was not denied.
    pub fn note(self) -> &'static str {
        match self {
            WarnReason::WarnMode => "",
            WarnReason::AlreadyBroken => " (allowed: already so before this update)",
            WarnReason::ServiceGoneOnUpdate => " (allowed on update: serviceName is immutable)",
            WarnReason::DryRunServiceMissing => {
                " (allowed on dry-run: the same apply may create it)"
            }
            WarnReason::LookupFailed => " (allowed: Service lookup failed)",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub finding: Finding,
    #[serde(flatten)]
    pub action: Action,
}

/// The answer to one admission request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// `None`: allowed. `Some(message)`: denied with that message.
    pub denial: Option<String>,
    /// Shown by kubectl as `Warning: ...`; already cut to the API server's limits.
    pub warnings: Vec<String>,
    /// RFC 6902 patch; `None` when nothing changes.
    pub patch: Option<json_patch::Patch>,
    /// Every finding and what was done with it (for logs, metrics, reports).
    pub outcomes: Vec<Outcome>,
    /// Names of the mutations the patch applies (`parallel`, `startup-probe`).
    pub mutations: Vec<&'static str>,
    /// Notes on the object's `sts-guard.io/` annotations (a value ignored,
    /// an exemption the policy does not allow), uncut; also among `warnings`.
    pub notices: Vec<String>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.denial.is_none()
    }

    /// Rule ids that denied this request.
    pub fn denied_rules(&self) -> impl Iterator<Item = RuleId> + '_ {
        self.outcomes
            .iter()
            .filter(|o| o.action == Action::Deny)
            .map(|o| o.finding.rule)
    }

    /// The decision as the API server expects it, built from the request so
    /// the uid is always echoed.
    pub fn into_response(self, request: &AdmissionRequest<StatefulSet>) -> AdmissionResponse {
        let mut response = AdmissionResponse::from(request);
        if !self.warnings.is_empty() {
            response.warnings = Some(self.warnings);
        }
        if let Some(message) = self.denial {
            let mut denied = response.deny(message);
            // 403 so kubectl reports "Forbidden", as for an RBAC or policy denial.
            denied.result.code = 403;
            denied.result.reason = "Forbidden".into();
            return denied;
        }
        match self.patch {
            Some(patch) => match response.clone().with_patch(patch) {
                Ok(patched) => patched,
                // Serializing a Patch of JSON values cannot fail; if it ever
                // does, allowing unpatched is the safe answer for a mutation.
                Err(_) => response,
            },
            None => response,
        }
    }
}

/// Identity of the object under review, for messages and logs.
pub struct ObjectRef<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

impl<'a> ObjectRef<'a> {
    pub fn of(request: &'a AdmissionRequest<StatefulSet>, sts: &'a StatefulSet) -> Self {
        let meta = &sts.metadata;
        let namespace = request
            .namespace
            .as_deref()
            .or(meta.namespace.as_deref())
            .unwrap_or("default");
        let name = Some(request.name.as_str())
            .filter(|n| !n.is_empty())
            .or(meta.name.as_deref())
            .or(meta.generate_name.as_deref())
            .unwrap_or("");
        ObjectRef { namespace, name }
    }
}

/// Reviews one request for one endpoint. Pure: same input, same decision,
/// so reinvocation and dry-run get identical answers.
pub fn review(
    request: &AdmissionRequest<StatefulSet>,
    endpoint: Endpoint,
    ctx: &Context<'_>,
) -> Decision {
    let Some(sts) = request.object.as_ref() else {
        // DELETE and CONNECT carry no object; nothing to check or change.
        return Decision::default();
    };
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return Decision::default();
    }
    let subject = ReviewSubject {
        object: ObjectRef::of(request, sts),
        sts,
        old: request.old_object.as_ref(),
        operation: request.operation.clone(),
        dry_run: request.dry_run,
    };
    match endpoint {
        Endpoint::Validate => validate(&subject, ctx),
        Endpoint::Mutate => patch::mutate(&subject, ctx.policy),
    }
}

/// A request reduced to what the review reads; `check` and `audit` build it
/// without an AdmissionRequest.
pub struct ReviewSubject<'a> {
    pub object: ObjectRef<'a>,
    pub sts: &'a StatefulSet,
    pub old: Option<&'a StatefulSet>,
    pub operation: Operation,
    pub dry_run: bool,
}

#[cfg(test)]
mod tests;
