//! Prometheus metrics. Every finding is counted under its rule id.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::decision::{DecisionLabel, Endpoint};
use crate::lookup::{KINDS, KindInfo, LookupPath};
use crate::review::Outcome;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub endpoint: &'static str,
    /// allowed | warned | mutated | denied | invalid
    pub decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FindingLabels {
    pub endpoint: &'static str,
    pub rule: &'static str,
    /// deny | warn | audit | exempt
    pub action: &'static str,
    pub namespace: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EndpointLabels {
    pub endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LookupLabels {
    pub kind: &'static str,
    pub path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabels {
    pub path: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub what: &'static str,
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertificateLabels {
    /// serving | ca
    pub certificate: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// file | object | default
    pub source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// active | expired | not_allowed
    pub state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WhatLabels {
    pub what: &'static str,
}

/// One kind's lookups answered one way: `sts_guard_lookups_total` and the
/// kind's deprecated family, if it has one.
struct LookupSeries {
    lookups: Counter,
    deprecated: Option<Counter>,
}

/// One endpoint's request counters (by [`DecisionLabel`]) and duration
/// histogram, each created in its family on first use.
#[derive(Default)]
struct EndpointSeries {
    requests: [OnceLock<Counter>; DecisionLabel::ALL.len()],
    duration: OnceLock<Histogram>,
}

pub struct Metrics {
    registry: Registry,
    certificate_expiry: Family<CertificateLabels, Gauge>,
    cache_synced: Family<WhatLabels, Gauge>,
    policy_loaded: Gauge<f64, AtomicU64>,
    policy_source: Family<SourceLabels, Gauge>,
    exemptions: Family<StateLabels, Gauge>,
    last_reload_successful: Family<WhatLabels, Gauge>,
    ready: Gauge,
    requests: Family<RequestLabels, Counter>,
    findings: Family<FindingLabels, Counter>,
    duration: Family<EndpointLabels, Histogram>,
    lookups: Family<LookupLabels, Counter>,
    /// The per-kind families `lookups` replaced, kept for one release.
    service_lookups: Family<PathLabels, Counter>,
    budget_lookups: Family<PathLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    /// The series every review touches, resolved once per label set, so a
    /// review neither hashes its labels nor takes the family's lock.
    per_endpoint: [EndpointSeries; 2],
    /// The lookup counters, the same way: by kind (its place in
    /// [`crate::lookup::KINDS`]) and [`LookupPath`].
    per_lookup: [[OnceLock<LookupSeries>; LookupPath::ALL.len()]; KINDS.len()],
    /// Requests whose head was read and whose answer is not yet written.
    pub in_flight: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("sts_guard");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "AdmissionReview requests by endpoint and decision",
            requests.clone(),
        );
        let findings = Family::<FindingLabels, Counter>::default();
        registry.register(
            "rule_findings",
            "Rule findings by rule id and what was done with them",
            findings.clone(),
        );
        let duration = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
            // 50 µs .. ~3.3 s
            Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                0.00005, 2.0, 17,
            ))
        });
        registry.register(
            "admission_duration_seconds",
            "Time from a decoded body to an encoded answer",
            duration.clone(),
        );
        let lookups = Family::<LookupLabels, Counter>::default();
        registry.register(
            "lookups",
            "Lookups by kind (services, disruption-budgets) and where they were answered (cache, api, api-error, recent, static)",
            lookups.clone(),
        );
        let service_lookups = Family::<PathLabels, Counter>::default();
        registry.register(
            "service_lookups",
            "Deprecated, use sts_guard_lookups_total{kind=\"services\"}: Service lookups by where they were answered",
            service_lookups.clone(),
        );
        let budget_lookups = Family::<PathLabels, Counter>::default();
        registry.register(
            "disruption_budget_lookups",
            "Deprecated, use sts_guard_lookups_total{kind=\"disruption-budgets\"}: PodDisruptionBudget lookups by where they were answered",
            budget_lookups.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "reloads",
            "Reloads of the policy file and TLS certificate",
            reloads.clone(),
        );
        let certificate_expiry = Family::<CertificateLabels, Gauge>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "When the served certificate (serving) and the CA that signed it (ca) expire, in Unix seconds",
            certificate_expiry.clone(),
        );
        let cache_synced = Family::<WhatLabels, Gauge>::default();
        registry.register(
            "cache_synced",
            "1 once the watch cache of a kind (services, disruption-budgets) has its first full list, else 0",
            cache_synced.clone(),
        );
        let policy_loaded = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "policy_loaded_timestamp_seconds",
            "When the policy in force was loaded (start-up or the last successful reload), in Unix seconds",
            policy_loaded.clone(),
        );
        let policy_source = Family::<SourceLabels, Gauge>::default();
        registry.register(
            "policy_source",
            "1 for where the policy in force comes from: file (--config), object (StatefulSetPolicy default) or default (built in: no policy object)",
            policy_source.clone(),
        );
        let exemptions = Family::<StateLabels, Gauge>::default();
        registry.register(
            "exemptions",
            "StatefulSetExemption objects by state at this scrape: active, expired, not_allowed (the policy does not allow exemption objects where it points)",
            exemptions.clone(),
        );
        let last_reload_successful = Family::<WhatLabels, Gauge>::default();
        registry.register(
            "last_reload_successful",
            "1 when the last reload of the policy or certificate succeeded, 0 while it fails (the last good one is kept)",
            last_reload_successful.clone(),
        );
        let ready = Gauge::default();
        registry.register("ready", "1 when /readyz answers 200, else 0", ready.clone());
        let in_flight = Gauge::default();
        registry.register(
            "in_flight_requests",
            "Requests being read or answered",
            in_flight.clone(),
        );
        Arc::new(Metrics {
            in_flight,
            registry,
            requests,
            findings,
            duration,
            lookups,
            service_lookups,
            budget_lookups,
            reloads,
            certificate_expiry,
            cache_synced,
            policy_loaded,
            policy_source,
            exemptions,
            last_reload_successful,
            ready,
            per_endpoint: Default::default(),
            per_lookup: Default::default(),
        })
    }

    /// Counts a reviewed request (`label` from [`DecisionLabel::of`]),
    /// its findings and how long it took.
    pub fn record(
        &self,
        endpoint: Endpoint,
        namespace: &str,
        label: DecisionLabel,
        outcomes: &[Outcome],
        seconds: f64,
    ) {
        self.request(endpoint, label);
        for o in outcomes {
            self.findings
                .get_or_create(&FindingLabels {
                    endpoint: endpoint.as_str(),
                    rule: o.finding.rule.as_str(),
                    action: o.action.label(),
                    namespace: namespace.to_string(),
                })
                .inc();
        }
        self.per_endpoint[endpoint as usize]
            .duration
            .get_or_init(|| {
                self.duration
                    .get_or_create(&EndpointLabels {
                        endpoint: endpoint.as_str(),
                    })
                    .clone()
            })
            .observe(seconds);
    }

    pub fn request(&self, endpoint: Endpoint, decision: DecisionLabel) {
        self.per_endpoint[endpoint as usize].requests[decision as usize]
            .get_or_init(|| {
                self.requests
                    .get_or_create(&RequestLabels {
                        endpoint: endpoint.as_str(),
                        decision: decision.as_str(),
                    })
                    .clone()
            })
            .inc();
    }

    pub fn lookup(&self, kind: &'static KindInfo, path: LookupPath) {
        let resolve = || {
            let labels = LookupLabels {
                kind: kind.name,
                path: path.as_str(),
            };
            let deprecated = match kind.name {
                "services" => Some(&self.service_lookups),
                "disruption-budgets" => Some(&self.budget_lookups),
                _ => None,
            };
            LookupSeries {
                lookups: self.lookups.get_or_create(&labels).clone(),
                deprecated: deprecated.map(|family| {
                    family
                        .get_or_create(&PathLabels { path: labels.path })
                        .clone()
                }),
            }
        };
        let unkept;
        let series = match KINDS.iter().position(|k| k.name == kind.name) {
            Some(place) => self.per_lookup[place][path as usize].get_or_init(resolve),
            // Every kind is in KINDS; were one not, its series would be
            // resolved every time.
            None => {
                unkept = resolve();
                &unkept
            }
        };
        series.lookups.inc();
        if let Some(deprecated) = &series.deprecated {
            deprecated.inc();
        }
    }

    /// Counts a reload of `what` and records whether it succeeded.
    pub fn reload(&self, what: &'static str, ok: bool) {
        self.reloads
            .get_or_create(&ReloadLabels {
                what,
                result: if ok { "ok" } else { "error" },
            })
            .inc();
        self.reload_state(what, ok);
    }

    /// Records whether `what` is current without counting a reload (a
    /// managed-certificate pass that found nothing to change).
    pub fn reload_state(&self, what: &'static str, ok: bool) {
        self.last_reload_successful
            .get_or_create(&WhatLabels { what })
            .set(i64::from(ok));
    }

    /// The served certificate's expiry and its CA's (no `ca` sample when
    /// none is known).
    pub fn certificate_expiry(&self, expiry: &crate::certs::Expiry) {
        let set = |certificate, at: time::OffsetDateTime| {
            self.certificate_expiry
                .get_or_create(&CertificateLabels { certificate })
                .set(at.unix_timestamp());
        };
        set("serving", expiry.serving);
        match expiry.ca {
            Some(at) => set("ca", at),
            None => {
                self.certificate_expiry
                    .remove(&CertificateLabels { certificate: "ca" });
            }
        }
    }

    pub fn cache_synced(&self, what: &'static str, synced: bool) {
        self.cache_synced
            .get_or_create(&WhatLabels { what })
            .set(i64::from(synced));
    }

    /// A policy was loaded now.
    pub fn policy_loaded(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        self.policy_loaded.set(now.as_secs_f64());
    }

    /// Where the policy in force comes from: `file`, `object` or `default`.
    pub fn policy_source(&self, source: &'static str) {
        for s in ["file", "object", "default"] {
            self.policy_source
                .get_or_create(&SourceLabels { source: s })
                .set(i64::from(s == source));
        }
    }

    /// How many exemption objects are in each state now.
    pub fn exemptions(&self, counts: &[(crate::policy::ExemptionState, usize)]) {
        for (state, count) in counts {
            self.exemptions
                .get_or_create(&StateLabels {
                    state: state.label(),
                })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
    }

    pub fn ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(exposed: &str, series: &str) -> Option<u64> {
        exposed
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
    }

    /// Each kind's lookups are counted by where they were answered, in
    /// `sts_guard_lookups_total` and in the kind's deprecated family, the
    /// same after the series are resolved as the first time.
    #[test]
    fn lookups_are_counted_by_kind_and_path() {
        let metrics = Metrics::new();
        let (services, budgets) = (KINDS[0], KINDS[1]);
        assert_eq!(
            (services.name, budgets.name),
            ("services", "disruption-budgets")
        );
        for _ in 0..3 {
            metrics.lookup(services, LookupPath::Cache);
        }
        metrics.lookup(services, LookupPath::ApiError);
        metrics.lookup(budgets, LookupPath::Static);
        metrics.lookup(budgets, LookupPath::Static);
        let exposed = metrics.encode();
        for (series, count) in [
            (
                r#"sts_guard_lookups_total{kind="services",path="cache"}"#,
                Some(3),
            ),
            (
                r#"sts_guard_lookups_total{kind="services",path="api-error"}"#,
                Some(1),
            ),
            (
                r#"sts_guard_lookups_total{kind="disruption-budgets",path="static"}"#,
                Some(2),
            ),
            (
                r#"sts_guard_lookups_total{kind="services",path="static"}"#,
                None,
            ),
            (r#"sts_guard_service_lookups_total{path="cache"}"#, Some(3)),
            (
                r#"sts_guard_service_lookups_total{path="api-error"}"#,
                Some(1),
            ),
            (
                r#"sts_guard_disruption_budget_lookups_total{path="static"}"#,
                Some(2),
            ),
        ] {
            assert_eq!(sample(&exposed, series), count, "{series} in\n{exposed}");
        }
    }

    #[test]
    fn every_lookup_path_has_its_own_place() {
        for (place, path) in LookupPath::ALL.into_iter().enumerate() {
            assert_eq!(path as usize, place, "{path:?}");
        }
    }
}
