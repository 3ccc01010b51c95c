//! `StatefulSetExemption` objects judged against the policy: which
//! namespace each one exempts, whether the policy lets it, and (given the
//! time by whoever asks: no clock here) whether it has expired. The
//! webhook, `check` and `audit` all decide through this.

use super::objects::{ExemptionSpec, ExpiresAt, StatefulSetExemption};
use crate::rules::RuleId;

/// Whether an exemption object is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExemptionState {
    Active,
    /// Past its `expiresAt`.
    Expired,
    /// The policy does not allow exemption objects where it points.
    NotAllowed,
}

impl ExemptionState {
    pub const ALL: [ExemptionState; 3] = [
        ExemptionState::Active,
        ExemptionState::Expired,
        ExemptionState::NotAllowed,
    ];

    /// The metric label: `active`, `expired`, `not_allowed`.
    pub fn label(self) -> &'static str {
        match self {
            ExemptionState::Active => "active",
            ExemptionState::Expired => "expired",
            ExemptionState::NotAllowed => "not_allowed",
        }
    }

    /// The object's `status.state` (its `ACTIVE` column).
    pub fn word(self) -> &'static str {
        match self {
            ExemptionState::Active => "Active",
            ExemptionState::Expired => "Expired",
            ExemptionState::NotAllowed => "NotAllowed",
        }
    }
}

/// One exemption object, with what the policy made of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExemptionObject {
    /// The object's own namespace and name.
    pub namespace: String,
    pub name: String,
    /// The namespace whose StatefulSets it exempts.
    pub target: String,
    pub spec: ExemptionSpec,
    /// Why the policy does not honour it, if it does not.
    pub not_allowed: Option<String>,
}

impl ExemptionObject {
    pub fn state(&self, now: jiff::Timestamp) -> ExemptionState {
        if self.not_allowed.is_some() {
            ExemptionState::NotAllowed
        } else if self.spec.expires_at.is_some_and(|at| at.0 <= now) {
            ExemptionState::Expired
        } else {
            ExemptionState::Active
        }
    }

    fn covers(&self, name: &str, rule: RuleId) -> bool {
        (self.spec.stateful_set == "*" || self.spec.stateful_set == name)
            && self.spec.rules.contains(&rule)
    }

    /// `StatefulSetExemption shop/web-dns`, for messages.
    pub fn display(&self) -> String {
        format!("StatefulSetExemption {}/{}", self.namespace, self.name)
    }

    /// Why it is not honoured, in a sentence; `None` when it is.
    pub fn not_honoured(&self, now: jiff::Timestamp) -> Option<String> {
        match self.state(now) {
            ExemptionState::Active => None,
            ExemptionState::Expired => Some(format!(
                "{} expired at {}; it is no longer honoured",
                self.display(),
                self.spec
                    .expires_at
                    .map_or(String::new(), |at| at.0.to_string())
            )),
            ExemptionState::NotAllowed => Some(format!(
                "{} is not honoured: {}",
                self.display(),
                self.not_allowed.as_deref().unwrap_or_default()
            )),
        }
    }
}

/// The exemption objects, ordered by the namespace they exempt, so one
/// review reads one range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExemptionObjects(Vec<ExemptionObject>);

impl ExemptionObjects {
    /// Judges `objects` with `allowed_in(namespace)` (the policy's
    /// `allowExemptionObjects`); those in `platform_namespace` are always
    /// allowed and may name another namespace in `spec.namespace`.
    pub fn new(
        objects: impl IntoIterator<Item = StatefulSetExemption>,
        platform_namespace: &str,
        allowed_in: impl Fn(&str) -> bool,
    ) -> ExemptionObjects {
        let mut judged: Vec<ExemptionObject> = objects
            .into_iter()
            .map(|object| {
                let namespace = object.metadata.namespace.unwrap_or_default();
                let name = object.metadata.name.unwrap_or_default();
                let spec = object.spec;
                let platform = namespace == platform_namespace;
                let (target, not_allowed) = match spec.namespace.as_deref() {
                    Some(other) if platform => (other.to_string(), None),
                    Some(other) if other != namespace => (
                        namespace.clone(),
                        Some(format!(
                            "spec.namespace is honoured only in sts-guard's namespace ({platform_namespace}); \
                             an exemption exempts StatefulSets of its own namespace"
                        )),
                    ),
                    _ => (namespace.clone(), None),
                };
                let not_allowed = not_allowed.or_else(|| {
                    (!platform && !allowed_in(&target)).then(|| {
                        format!(
                            "the policy does not allow exemption objects in namespace {target} \
                             (allowExemptionObjects)"
                        )
                    })
                });
                ExemptionObject {
                    namespace,
                    name,
                    target,
                    spec,
                    not_allowed,
                }
            })
            .collect();
        judged.sort_by(|a, b| {
            (&a.target, &a.namespace, &a.name).cmp(&(&b.target, &b.namespace, &b.name))
        });
        ExemptionObjects(judged)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ExemptionObject> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The objects that exempt `namespace/name` from `rule`, in force or
    /// not, in order (target, then object namespace and name).
    pub fn covering(
        &self,
        namespace: &str,
        name: &str,
        rule: RuleId,
    ) -> impl Iterator<Item = &ExemptionObject> {
        let start = self.0.partition_point(|e| e.target.as_str() < namespace);
        self.0[start..]
            .iter()
            .take_while(move |e| e.target == namespace)
            .filter(move |e| e.covers(name, rule))
    }

    /// How many objects are in each state at `now`.
    pub fn count_by_state(&self, now: jiff::Timestamp) -> [(ExemptionState, usize); 3] {
        ExemptionState::ALL.map(|state| {
            (
                state,
                self.0.iter().filter(|e| e.state(now) == state).count(),
            )
        })
    }

    /// When the first object in force at `now` expires: what is decided
    /// changes then without any object changing.
    pub fn next_expiry(&self, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
        self.0
            .iter()
            .filter(|e| e.state(now) == ExemptionState::Active)
            .filter_map(|e| e.spec.expires_at.map(|at| at.0))
            .min()
    }

    /// Objects in force now that expire before `until`, soonest first.
    pub fn expiring(&self, now: jiff::Timestamp, until: jiff::Timestamp) -> Vec<&ExemptionObject> {
        let mut soon: Vec<&ExemptionObject> = self
            .0
            .iter()
            .filter(|e| e.state(now) == ExemptionState::Active)
            .filter(|e| e.spec.expires_at.is_some_and(|ExpiresAt(at)| at < until))
            .collect();
        soon.sort_by_key(|e| e.spec.expires_at);
        soon
    }
}

/// What exempts a finding, or the exemption object that would have but is
/// not in force (worth a note to the user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exempting<'a> {
    /// The reason shown with the finding.
    Honoured(String),
    Ignored(&'a ExemptionObject),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::policy::objects::ExpiresAt;
    use kube::api::ObjectMeta;

    const PLATFORM: &str = "sts-guard";

    fn at(text: &str) -> jiff::Timestamp {
        text.parse().unwrap()
    }

    fn object(
        ns: &str,
        sts: &str,
        rules: &[&str],
        spec_ns: Option<&str>,
        expires: Option<&str>,
    ) -> StatefulSetExemption {
        StatefulSetExemption {
            metadata: ObjectMeta {
                name: Some(format!("{sts}-exemption")),
                namespace: Some(ns.into()),
                ..ObjectMeta::default()
            },
            spec: ExemptionSpec {
                stateful_set: sts.into(),
                rules: rules.iter().map(|r| RuleId::parse(r).unwrap()).collect(),
                reason: "why".into(),
                expires_at: expires.map(|e| ExpiresAt(at(e))),
                ticket: Some("OPS-1".into()),
                namespace: spec_ns.map(str::to_string),
            },
            status: None,
        }
    }

    /// Whether `shop/web`'s readiness-probe finding is exempted at noon on
    /// 2026-12-07, by one object, under a policy that lets `shop` (only)
    /// own exemption objects.
    #[rstest::rstest]
    #[case::in_an_allowed_namespace(object("shop", "web", &["readiness-probe"], None, None), Some(true))]
    #[case::every_statefulset(object("shop", "*", &["readiness-probe"], None, None), Some(true))]
    #[case::another_statefulset(object("shop", "db", &["readiness-probe"], None, None), None)]
    #[case::another_rule(object("shop", "web", &["liveness-probe"], None, None), None)]
    #[case::not_yet_expired(object("shop", "web", &["readiness-probe"], None, Some("2026-12-07T12:00:01Z")), Some(true))]
    #[case::expired_at_that_second(object("shop", "web", &["readiness-probe"], None, Some("2026-12-07T12:00:00Z")), Some(false))]
    #[case::in_a_namespace_not_allowed(object("batch", "web", &["readiness-probe"], None, None), None)]
    #[case::naming_another_namespace_from_a_team_namespace(object("batch", "web", &["readiness-probe"], Some("shop"), None), None)]
    #[case::the_platform_teams_for_shop(object(PLATFORM, "web", &["readiness-probe"], Some("shop"), None), Some(true))]
    #[case::the_platform_teams_for_a_namespace_not_allowed(object(PLATFORM, "web", &["readiness-probe"], Some("batch"), None), None)]
    fn an_exemption_object_exempts_shop_web(
        #[case] exemption: StatefulSetExemption,
        #[case] honoured: Option<bool>,
    ) {
        let policy = Policy::from_yaml("namespaces: {shop: {allowExemptionObjects: true}}", "t")
            .unwrap()
            .with_exemption_objects([exemption], PLATFORM);
        let now = at("2026-12-07T12:00:00Z");
        let got = match policy.exemption("shop", "web", RuleId("readiness-probe"), now) {
            Some(Exempting::Honoured(reason)) => {
                assert!(
                    reason.starts_with("why (OPS-1; StatefulSetExemption "),
                    "{reason}"
                );
                Some(true)
            }
            Some(Exempting::Ignored(_)) => Some(false),
            None => None,
        };
        assert_eq!(got, honoured);
    }

    #[test]
    fn objects_are_counted_by_state_and_listed_before_they_expire() {
        let policy = Policy::from_yaml("namespaces: {shop: {allowExemptionObjects: true}}", "t")
            .unwrap()
            .with_exemption_objects(
                [
                    object(
                        "shop",
                        "a",
                        &["readiness-probe"],
                        None,
                        Some("2026-12-09T00:00:00Z"),
                    ),
                    object(
                        "shop",
                        "b",
                        &["readiness-probe"],
                        None,
                        Some("2026-12-08T00:00:00Z"),
                    ),
                    object(
                        "shop",
                        "c",
                        &["readiness-probe"],
                        None,
                        Some("2027-01-01T00:00:00Z"),
                    ),
                    object(
                        "shop",
                        "d",
                        &["readiness-probe"],
                        None,
                        Some("2026-12-01T00:00:00Z"),
                    ),
                    object("shop", "e", &["readiness-probe"], None, None),
                    object("batch", "f", &["readiness-probe"], None, None),
                ],
                PLATFORM,
            );
        let now = at("2026-12-07T12:00:00Z");
        let counts = policy.exemption_objects().count_by_state(now);
        assert_eq!(
            counts,
            [
                (ExemptionState::Active, 4),
                (ExemptionState::Expired, 1),
                (ExemptionState::NotAllowed, 1)
            ]
        );
        let soon: Vec<&str> = policy
            .exemption_objects()
            .expiring(now, at("2026-12-14T12:00:00Z"))
            .iter()
            .map(|e| e.spec.stateful_set.as_str())
            .collect();
        assert_eq!(soon, ["b", "a"]);
    }
}
