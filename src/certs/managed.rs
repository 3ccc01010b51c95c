//! Managed certificates, the pure part: given what the Secret holds, whether
//! the webhook configurations carry its bundle, and the time, what to write.
//! `webhook::managed_certs` does the I/O around it.
//!
//! The Secret (type `kubernetes.io/tls`) holds:
//! - `tls.crt`, `tls.key`: the serving pair every replica serves;
//! - `ca.crt`: the CA bundle, what every webhook's `caBundle` must equal;
//! - `issuer.crt`, `issuer.key`: the CA that signed `tls.crt`;
//! - `next.crt`, `next.key`: during a CA renewal, the CA that takes over.
//!
//! The renewals, each one write of the Secret:
//! - serving certificate, after two thirds of its validity: a new pair from
//!   the same CA; the bundle does not change.
//! - CA, after two thirds of its validity, in three writes:
//!   1. a new CA joins the bundle (`next`), the serving pair stays;
//!   2. once the webhook configurations carry that bundle and [`settle`] has
//!      passed (the API server reads changed configurations within seconds),
//!      the new CA becomes the issuer and signs a new serving pair; the old
//!      CA stays in the bundle;
//!   3. once the webhook configurations carry the bundle and [`settle`] has
//!      passed again (every replica has seen the Secret through its watch
//!      and serves the new pair), the old CA leaves the bundle.

use std::collections::BTreeMap;
use std::net::IpAddr;

use rustls::pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

use super::{CaPem, CertInfo, LeafPem, PkiError, issue_leaf, new_ca};

/// What `serve --tls-secret` was told.
#[derive(Debug, Clone)]
pub struct Settings {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub cert_validity: Duration,
    pub ca_validity: Duration,
}

/// The Secret's keys (see the module documentation).
pub mod keys {
    pub const TLS_CRT: &str = "tls.crt";
    pub const TLS_KEY: &str = "tls.key";
    pub const BUNDLE: &str = "ca.crt";
    pub const ISSUER_CRT: &str = "issuer.crt";
    pub const ISSUER_KEY: &str = "issuer.key";
    pub const NEXT_CRT: &str = "next.crt";
    pub const NEXT_KEY: &str = "next.key";
}

/// The Secret's contents, PEM text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub leaf: LeafPem,
    pub bundle: String,
    pub issuer: CaPem,
    pub next: Option<CaPem>,
}

impl Stored {
    /// From the Secret's data; None when a key is missing or not UTF-8 (a
    /// Secret someone else wrote: it is replaced by a fresh one).
    pub fn from_data(data: &BTreeMap<String, Vec<u8>>) -> Option<Stored> {
        let text = |k: &str| {
            data.get(k)
                .and_then(|b| String::from_utf8(b.clone()).ok())
                .filter(|s| !s.trim().is_empty())
        };
        let next = match (text(keys::NEXT_CRT), text(keys::NEXT_KEY)) {
            (Some(cert), Some(key)) => Some(CaPem { cert, key }),
            _ => None,
        };
        Some(Stored {
            leaf: LeafPem {
                cert: text(keys::TLS_CRT)?,
                key: text(keys::TLS_KEY)?,
            },
            bundle: text(keys::BUNDLE)?,
            issuer: CaPem {
                cert: text(keys::ISSUER_CRT)?,
                key: text(keys::ISSUER_KEY)?,
            },
            next,
        })
    }

    pub fn to_data(&self) -> BTreeMap<String, Vec<u8>> {
        let mut data = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            data.insert(k.to_string(), v.as_bytes().to_vec());
        };
        put(keys::TLS_CRT, &self.leaf.cert);
        put(keys::TLS_KEY, &self.leaf.key);
        put(keys::BUNDLE, &self.bundle);
        put(keys::ISSUER_CRT, &self.issuer.cert);
        put(keys::ISSUER_KEY, &self.issuer.key);
        if let Some(next) = &self.next {
            put(keys::NEXT_CRT, &next.cert);
            put(keys::NEXT_KEY, &next.key);
        }
        data
    }
}

/// How long a change needs to reach every reader before the next step of a
/// CA renewal: a tenth of the CA's validity, at least 10 s, at most 10 min.
pub fn settle(ca_validity: Duration) -> Duration {
    let tenth: Duration = ca_validity / 10;
    tenth.clamp(Duration::seconds(10), Duration::minutes(10))
}

/// Why the Secret is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// There was none: a new CA and serving pair.
    Created,
    /// It did not hold a usable CA and pair (written by someone else, or
    /// damaged): replaced by a new CA and serving pair.
    Replaced,
    /// The serving certificate reached two thirds of its validity, or does
    /// not name what `--cert-dns`/`--cert-ip` ask, or was not signed by the
    /// issuer.
    ServingRenewed,
    /// CA renewal, step 1: the new CA joined the bundle.
    CaAdded,
    /// Step 2: the new CA signs a new serving pair.
    CaSwitched,
    /// Step 3: the old CA left the bundle.
    OldCaRemoved,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Created => "created",
            Why::Replaced => "replaced",
            Why::ServingRenewed => "serving certificate renewed",
            Why::CaAdded => "CA renewal: new CA added to the bundle",
            Why::CaSwitched => "CA renewal: serving certificate now signed by the new CA",
            Why::OldCaRemoved => "CA renewal: old CA removed from the bundle",
        }
    }
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Keep,
    Write(Box<Stored>, Why),
}

/// Parsed facts about what is stored.
struct Facts {
    leaf: CertInfo,
    issuer: CertInfo,
    next: Option<CertInfo>,
    bundle: Vec<CertInfo>,
}

fn facts(stored: &Stored) -> Option<Facts> {
    let leaf = CertInfo::parse_pem(&stored.leaf.cert)?;
    let issuer = CertInfo::parse_pem(&stored.issuer.cert)?;
    let next = match &stored.next {
        Some(n) => Some(CertInfo::parse_pem(&n.cert)?),
        None => None,
    };
    let bundle = CertInfo::parse_bundle(&stored.bundle)?;
    // The serving pair must load as a TLS identity, or nothing can serve it.
    pair_loads(&stored.leaf)?;
    Some(Facts {
        leaf,
        issuer,
        next,
        bundle,
    })
}

/// The pair loads as a TLS identity and its key is the certificate's.
fn pair_loads(leaf: &LeafPem) -> Option<()> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(leaf.cert.as_bytes())
        .collect::<Result<_, _>>()
        .ok()?;
    let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).ok()?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key)
        .ok()?;
    rustls::sign::CertifiedKey::new(chain, signing)
        .keys_match()
        .ok()
}

fn two_thirds(info: &CertInfo) -> OffsetDateTime {
    info.not_before + (info.not_after - info.not_before) * 2 / 3
}

/// Whether `leaf` was signed by the CA `ca` (by key identifier).
fn signed_by(leaf: &CertInfo, ca: &CertInfo) -> bool {
    leaf.issuer == ca.subject
        && leaf.authority_key_id.is_some()
        && leaf.authority_key_id == ca.subject_key_id
}

/// The serving certificate names exactly what the settings ask.
fn names_match(leaf_pem: &str, settings: &Settings) -> bool {
    let Some(der) = rustls::pki_types::CertificateDer::pem_slice_iter(leaf_pem.as_bytes())
        .next()
        .and_then(Result::ok)
    else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return false;
    };
    let mut dns = Vec::new();
    let mut ips = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                x509_parser::extensions::GeneralName::DNSName(d) => dns.push(d.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                    let ip = match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(IpAddr::from),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(IpAddr::from),
                        _ => None,
                    };
                    ips.extend(ip);
                }
                _ => {}
            }
        }
    }
    let mut want_dns = settings.dns.clone();
    let mut want_ips = settings.ips.clone();
    dns.sort();
    ips.sort();
    want_dns.sort();
    want_ips.sort();
    dns == want_dns && ips == want_ips
}

fn fresh(settings: &Settings, now: OffsetDateTime) -> Result<Stored, PkiError> {
    let issuer = new_ca(now, settings.ca_validity)?;
    let leaf = issue_leaf(
        &issuer,
        &settings.dns,
        &settings.ips,
        now,
        settings.cert_validity,
    )?;
    Ok(Stored {
        leaf,
        bundle: issuer.cert.clone(),
        issuer,
        next: None,
    })
}

/// The next step, given the Secret (None: absent), whether every webhook's
/// `caBundle` equals the Secret's `ca.crt`, and the time.
pub fn plan(
    stored: Option<&Stored>,
    injected: bool,
    settings: &Settings,
    now: OffsetDateTime,
) -> Result<Step, PkiError> {
    let Some(stored) = stored else {
        return Ok(Step::Write(Box::new(fresh(settings, now)?), Why::Created));
    };
    let Some(facts) = facts(stored) else {
        return Ok(Step::Write(Box::new(fresh(settings, now)?), Why::Replaced));
    };
    let settle = settle(settings.ca_validity);
    let leaf_ok = signed_by(&facts.leaf, &facts.issuer)
        && now < two_thirds(&facts.leaf)
        && names_match(&stored.leaf.cert, settings);
    let issuer_in_bundle = facts
        .bundle
        .iter()
        .any(|c| c.subject_key_id == facts.issuer.subject_key_id);
    if !issuer_in_bundle || now >= facts.issuer.not_after {
        // Nothing the API server trusts signs what is served: start over.
        return Ok(Step::Write(Box::new(fresh(settings, now)?), Why::Replaced));
    }

    match (&stored.next, &facts.next) {
        // Step 2: the new CA is trusted everywhere; let it sign.
        (Some(next), Some(next_info))
            if injected && now >= next_info.not_before + super::BACKDATE + settle =>
        {
            let leaf = issue_leaf(
                next,
                &settings.dns,
                &settings.ips,
                now,
                settings.cert_validity,
            )?;
            let switched = Stored {
                leaf,
                bundle: stored.bundle.clone(),
                issuer: next.clone(),
                next: None,
            };
            return Ok(Step::Write(Box::new(switched), Why::CaSwitched));
        }
        // Waiting for step 2; the serving pair may still need renewing.
        (Some(_), _) => {}
        // Step 1: time to renew the CA.
        (None, _) if now >= two_thirds(&facts.issuer) => {
            let next = new_ca(now, settings.ca_validity)?;
            let mut bundle = stored.bundle.clone();
            if !bundle.ends_with('\n') {
                bundle.push('\n');
            }
            bundle.push_str(&next.cert);
            let added = Stored {
                bundle,
                next: Some(next),
                ..stored.clone()
            };
            return Ok(Step::Write(Box::new(added), Why::CaAdded));
        }
        (None, _) => {
            // Step 3: old CAs leave once every replica serves the issuer's
            // pair (the Secret was written `settle` ago) and the
            // configurations carry the bundle; expired ones leave anyway.
            let others = facts.bundle.len() > 1;
            let leaf_settled = now >= facts.leaf.not_before + super::BACKDATE + settle;
            let expired = facts.bundle.iter().any(|c| now >= c.not_after);
            if others && ((injected && leaf_settled && leaf_ok) || expired) {
                let kept = Stored {
                    bundle: stored.issuer.cert.clone(),
                    ..stored.clone()
                };
                return Ok(Step::Write(Box::new(kept), Why::OldCaRemoved));
            }
        }
    }

    if !leaf_ok {
        let leaf = issue_leaf(
            &stored.issuer,
            &settings.dns,
            &settings.ips,
            now,
            settings.cert_validity,
        )?;
        let renewed = Stored {
            leaf,
            ..stored.clone()
        };
        return Ok(Step::Write(Box::new(renewed), Why::ServingRenewed));
    }
    Ok(Step::Keep)
}

/// Whether `bundle` (a `caBundle`, PEM) trusts the serving certificate
/// `leaf_pem`: it holds the CA whose key identifier the leaf names.
pub fn bundle_trusts(bundle: &str, leaf_pem: &str) -> bool {
    let (Some(cas), Some(leaf)) = (
        CertInfo::parse_bundle(bundle),
        CertInfo::parse_pem(leaf_pem),
    ) else {
        return false;
    };
    cas.iter()
        .any(|ca| signed_by(&leaf, ca) && ca.not_after > OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn settings() -> Settings {
        Settings {
            dns: vec!["sts-guard.sts-guard.svc".into()],
            ips: vec![],
            cert_validity: Duration::minutes(30),
            ca_validity: Duration::minutes(300),
        }
    }

    fn t0() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn created(now: OffsetDateTime) -> Stored {
        match plan(None, false, &settings(), now).unwrap() {
            Step::Write(s, Why::Created) => *s,
            other => panic!("{other:?}"),
        }
    }

    fn step(stored: &Stored, injected: bool, now: OffsetDateTime) -> (Option<Why>, Stored) {
        step_with(&settings(), stored, injected, now)
    }

    fn step_with(
        settings: &Settings,
        stored: &Stored,
        injected: bool,
        now: OffsetDateTime,
    ) -> (Option<Why>, Stored) {
        match plan(Some(stored), injected, settings, now).unwrap() {
            Step::Keep => (None, stored.clone()),
            Step::Write(s, why) => (Some(why), *s),
        }
    }

    fn subjects(bundle: &str) -> Vec<String> {
        CertInfo::parse_bundle(bundle)
            .unwrap()
            .into_iter()
            .map(|c| c.subject)
            .collect()
    }

    #[test]
    fn a_created_secret_is_consistent_and_trusted() {
        let s = created(t0());
        assert_eq!(s.bundle, s.issuer.cert);
        assert!(s.next.is_none());
        assert!(bundle_trusts(&s.bundle, &s.leaf.cert));
        assert_eq!(Stored::from_data(&s.to_data()), Some(s));
    }

    // Minutes after creation (serving 30 min, CA 300 min, settle 10 min).
    #[rstest]
    #[case::fresh(0, true, None)]
    #[case::before_two_thirds(19, true, None)]
    #[case::after_two_thirds(21, true, Some(Why::ServingRenewed))]
    #[case::not_injected_still_renews(21, false, Some(Why::ServingRenewed))]
    #[case::past_expiry(40, true, Some(Why::ServingRenewed))]
    #[case::ca_two_thirds(201, true, Some(Why::CaAdded))]
    #[case::ca_expired(301, true, Some(Why::Replaced))]
    fn from_a_fresh_secret(
        #[case] minutes: i64,
        #[case] injected: bool,
        #[case] expected: Option<Why>,
    ) {
        let now = t0();
        let s = created(now);
        let (why, _) = step(&s, injected, now + Duration::minutes(minutes));
        assert_eq!(why, expected);
    }

    #[test]
    fn a_renewed_serving_certificate_keeps_the_ca_and_bundle() {
        let now = t0();
        let s = created(now);
        let (_, r) = step(&s, true, now + Duration::minutes(21));
        assert_eq!(r.issuer, s.issuer);
        assert_eq!(r.bundle, s.bundle);
        assert_ne!(r.leaf, s.leaf);
        assert!(bundle_trusts(&r.bundle, &r.leaf.cert));
        assert_eq!(step(&r, true, now + Duration::minutes(22)).0, None);
    }

    /// The whole CA renewal: added, switched only once injected and
    /// settled, old CA removed only once injected and settled again; the
    /// bundle trusts the served certificate at every step.
    #[test]
    fn a_ca_renewal_goes_through_its_three_steps_in_order() {
        // Serving certificates of 2 h, so none needs renewing meanwhile.
        let settings = Settings {
            cert_validity: Duration::minutes(120),
            ..settings()
        };
        let step = |s: &Stored, injected, now| step_with(&settings, s, injected, now);
        let t = t0();
        let mut s = created(t);
        let at = |m: i64| t + Duration::minutes(m);
        // Keep the serving pair fresh up to the CA renewal.
        let (why, renewed) = step(&s, true, at(195));
        assert_eq!(why, Some(Why::ServingRenewed));
        s = renewed;

        let (why, added) = step(&s, true, at(201));
        assert_eq!(why, Some(Why::CaAdded));
        assert_eq!(added.leaf, s.leaf, "the serving pair stays");
        assert_eq!(subjects(&added.bundle).len(), 2);
        assert!(bundle_trusts(&added.bundle, &added.leaf.cert));

        // Settle not over, or the bundle not injected: wait.
        // (settle: a tenth of 300 min, at most 10 min)
        assert_eq!(step(&added, true, at(210)).0, None);
        assert_eq!(step(&added, false, at(215)).0, None);

        let (why, switched) = step(&added, true, at(215));
        assert_eq!(why, Some(Why::CaSwitched));
        assert_eq!(switched.issuer, *added.next.as_ref().unwrap());
        assert_eq!(switched.bundle, added.bundle, "the old CA is still trusted");
        assert!(bundle_trusts(&switched.bundle, &switched.leaf.cert));
        assert!(bundle_trusts(&switched.bundle, &added.leaf.cert));

        assert_eq!(step(&switched, true, at(222)).0, None);
        assert_eq!(step(&switched, false, at(230)).0, None);
        let (why, done) = step(&switched, true, at(230));
        assert_eq!(why, Some(Why::OldCaRemoved));
        assert_eq!(done.bundle, done.issuer.cert);
        assert!(bundle_trusts(&done.bundle, &done.leaf.cert));
        assert!(!bundle_trusts(&done.bundle, &added.leaf.cert));
        assert_eq!(step(&done, true, at(231)).0, None);
    }

    #[rstest]
    #[case::missing_key(keys::TLS_KEY)]
    #[case::missing_issuer(keys::ISSUER_KEY)]
    fn an_incomplete_secret_reads_as_none_so_a_fresh_one_is_written(#[case] remove: &str) {
        // (webhook::managed_certs logs it as Replaced: the Secret existed.)
        let s = created(t0());
        let mut data = s.to_data();
        data.remove(remove);
        assert_eq!(Stored::from_data(&data), None);
        assert!(matches!(
            plan(None, true, &settings(), t0()).unwrap(),
            Step::Write(_, Why::Created)
        ));
    }

    #[test]
    fn a_pair_that_does_not_belong_together_is_replaced() {
        let mut s = created(t0());
        s.leaf.key = created(t0()).leaf.key;
        assert_eq!(step(&s, true, t0()).0, Some(Why::Replaced));
    }

    #[test]
    fn changed_names_renew_the_serving_certificate() {
        let s = created(t0());
        let mut other = settings();
        other.dns.push("extra.example".into());
        assert!(matches!(
            plan(Some(&s), true, &other, t0()).unwrap(),
            Step::Write(_, Why::ServingRenewed)
        ));
    }

    #[rstest]
    #[case::short(Duration::minutes(3), Duration::seconds(18))]
    #[case::floor(Duration::seconds(30), Duration::seconds(10))]
    #[case::ceiling(Duration::days(1825), Duration::minutes(10))]
    fn settle_is_a_tenth_of_the_ca_validity_within_bounds(
        #[case] ca: Duration,
        #[case] expected: Duration,
    ) {
        assert_eq!(settle(ca), expected);
    }
}
