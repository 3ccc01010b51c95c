//! The webhook's own PKI: a CA and serving certificates signed by it, used
//! by `sts-guard certs` (files) and by `serve`'s managed mode (a Secret).
//!
//! Every certificate carries a Subject and an Authority Key Identifier, and
//! every CA a subject of its own (`CN=sts-guard CA <timestamp>`): during a
//! CA rotation old and new CA sit in one bundle, and OpenSSL picks the
//! issuer by subject and AKI, so two CAs sharing a name under a leaf
//! without an AKI fail OpenSSL clients (RFC 5280 requires the AKI).

use std::net::IpAddr;

pub mod managed;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use thiserror::Error;
use time::OffsetDateTime;

#[derive(Debug, Error)]
pub enum PkiError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{what} is not a PEM certificate")]
    NotACertificate { what: String },
    #[error("{what} is not a PEM private key: {message}")]
    NotAKey { what: String, message: String },
    #[error("{what} does not belong to the CA certificate")]
    KeyMismatch { what: String },
    #[error("give at least one DNS name or IP address for the serving certificate")]
    NoNames,
}

/// A CA certificate with its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct CaPem {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for CaPem {
    // Never print a private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaPem").finish_non_exhaustive()
    }
}

/// A serving certificate (PEM) and its private key (PEM, PKCS#8).
#[derive(Clone, PartialEq, Eq)]
pub struct LeafPem {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for LeafPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LeafPem").finish_non_exhaustive()
    }
}

/// Certificates start a minute back, so a slightly slow clock elsewhere
/// (the API server's) still accepts them.
pub const BACKDATE: time::Duration = time::Duration::minutes(1);

/// A new self-signed CA valid from `now - BACKDATE` for `validity`, with a
/// subject of its own: `CN=sts-guard CA <UTC timestamp, nanoseconds>`.
pub fn new_ca(now: OffsetDateTime, validity: time::Duration) -> Result<CaPem, PkiError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name =
        common_name(&format!("sts-guard CA {}", now.unix_timestamp_nanos()));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // A self-signed CA's AKI is its own SKI; harmless and what OpenSSL writes.
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - BACKDATE;
    params.not_after = now + validity;
    let cert = params.self_signed(&key)?;
    Ok(CaPem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A serving certificate for `dns` and `ips`, signed by `ca`, valid from
/// `now - BACKDATE` for `validity` but never past the CA's own expiry.
pub fn issue_leaf(
    ca: &CaPem,
    dns: &[String],
    ips: &[IpAddr],
    now: OffsetDateTime,
    validity: time::Duration,
) -> Result<LeafPem, PkiError> {
    if dns.is_empty() && ips.is_empty() {
        return Err(PkiError::NoNames);
    }
    let ca_key = KeyPair::from_pem(&ca.key).map_err(|e| PkiError::NotAKey {
        what: "the CA key".into(),
        message: e.to_string(),
    })?;
    let ca_info = CertInfo::parse_pem(&ca.cert).ok_or_else(|| PkiError::NotACertificate {
        what: "the CA certificate".into(),
    })?;
    if ca_info.public_key != rcgen::PublicKeyData::subject_public_key_info(&ca_key) {
        return Err(PkiError::KeyMismatch {
            what: "the CA key".into(),
        });
    }
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(|_| PkiError::NotACertificate {
            what: "the CA certificate".into(),
        })?;

    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(dns.first().map(String::as_str).unwrap_or("sts-guard"));
    params.subject_alt_names = dns
        .iter()
        .map(|d| Ok(SanType::DnsName(d.as_str().try_into()?)))
        .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_, rcgen::Error>>()?;
    // ExplicitNoCa writes basicConstraints CA:FALSE and, with it, the SKI.
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = now - BACKDATE;
    params.not_after = (now + validity).min(ca_info.not_after);
    let cert = params.signed_by(&key, &issuer)?;
    Ok(LeafPem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// What managed mode and the tests read from a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub subject: String,
    pub issuer: String,
    pub subject_key_id: Option<Vec<u8>>,
    pub authority_key_id: Option<Vec<u8>>,
    /// DER of the SubjectPublicKeyInfo.
    pub public_key: Vec<u8>,
}

impl CertInfo {
    pub fn parse_der(der: &[u8]) -> Option<CertInfo> {
        use x509_parser::extensions::ParsedExtension;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let mut subject_key_id = None;
        let mut authority_key_id = None;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => subject_key_id = Some(id.0.to_vec()),
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    authority_key_id = aki.key_identifier.as_ref().map(|id| id.0.to_vec())
                }
                _ => {}
            }
        }
        let time = |t: x509_parser::time::ASN1Time| {
            OffsetDateTime::from_unix_timestamp(t.timestamp()).ok()
        };
        Some(CertInfo {
            not_before: time(cert.validity().not_before)?,
            not_after: time(cert.validity().not_after)?,
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            subject_key_id,
            authority_key_id,
            public_key: cert.public_key().raw.to_vec(),
        })
    }

    /// The first certificate of a PEM text.
    pub fn parse_pem(pem: &str) -> Option<CertInfo> {
        let der = CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()?
            .ok()?;
        CertInfo::parse_der(&der)
    }

    /// Every certificate of a PEM bundle; None if any does not parse.
    pub fn parse_bundle(pem: &str) -> Option<Vec<CertInfo>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|der| der.ok().and_then(|d| CertInfo::parse_der(&d)))
            .collect()
    }
}

/// When the served certificate and the CA that signed it expire: what
/// `sts_guard_certificate_expiry_timestamp_seconds` exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry {
    pub serving: OffsetDateTime,
    /// None when no given certificate signed the serving one.
    pub ca: Option<OffsetDateTime>,
}

impl Expiry {
    /// From the served chain (leaf first) and `more` certificates that may
    /// hold its CA (a `ca.crt` beside the files, the managed Secret's
    /// bundle). The CA is the one whose key identifier the leaf names (by
    /// subject when it names none); of several (a CA re-issued with the
    /// same key), the one that lasts longest, since any of them verifies.
    pub fn of(chain: &[CertInfo], more: &[CertInfo]) -> Option<Expiry> {
        let (leaf, rest) = chain.split_first()?;
        let signed = |ca: &&CertInfo| match &leaf.authority_key_id {
            Some(aki) => ca.subject_key_id.as_ref() == Some(aki),
            None => ca.subject == leaf.issuer,
        };
        let ca = rest
            .iter()
            .chain(more)
            .filter(|c| *c != leaf)
            .filter(signed)
            .map(|c| c.not_after)
            .max();
        Some(Expiry {
            serving: leaf.not_after,
            ca,
        })
    }

    /// As [`Expiry::of`], from PEM texts; None when the chain does not
    /// parse. Certificates of `more` that do not parse are skipped.
    pub fn of_pem(chain: &str, more: Option<&str>) -> Option<Expiry> {
        let chain = CertInfo::parse_bundle(chain)?;
        let more: Vec<CertInfo> = more
            .into_iter()
            .flat_map(|pem| CertificateDer::pem_slice_iter(pem.as_bytes()))
            .filter_map(|der| CertInfo::parse_der(&der.ok()?))
            .collect();
        Expiry::of(&chain, &more)
    }
}

fn common_name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    #[test]
    fn every_certificate_has_ski_and_aki_and_the_leaf_points_at_its_ca() {
        let ca = new_ca(now(), time::Duration::days(10)).unwrap();
        let leaf = issue_leaf(
            &ca,
            &["a.example".into()],
            &[],
            now(),
            time::Duration::days(1),
        )
        .unwrap();
        let ca_info = CertInfo::parse_pem(&ca.cert).unwrap();
        let leaf_info = CertInfo::parse_pem(&leaf.cert).unwrap();
        assert!(ca_info.subject_key_id.is_some());
        assert_eq!(ca_info.authority_key_id, ca_info.subject_key_id);
        assert!(leaf_info.subject_key_id.is_some());
        assert_eq!(leaf_info.authority_key_id, ca_info.subject_key_id);
        assert_eq!(leaf_info.issuer, ca_info.subject);
    }

    #[test]
    fn two_cas_never_share_a_subject() {
        let a = CertInfo::parse_pem(&new_ca(now(), time::Duration::days(1)).unwrap().cert).unwrap();
        let b = CertInfo::parse_pem(&new_ca(now(), time::Duration::days(1)).unwrap().cert).unwrap();
        assert_ne!(a.subject, b.subject);
        assert!(a.subject.starts_with("CN=sts-guard CA "), "{}", a.subject);
    }

    #[test]
    fn a_leaf_never_outlives_its_ca() {
        let ca = new_ca(now(), time::Duration::hours(1)).unwrap();
        let leaf = issue_leaf(&ca, &["a".into()], &[], now(), time::Duration::days(9)).unwrap();
        let (ca, leaf) = (
            CertInfo::parse_pem(&ca.cert).unwrap(),
            CertInfo::parse_pem(&leaf.cert).unwrap(),
        );
        assert_eq!(leaf.not_after, ca.not_after);
    }

    #[test]
    fn a_foreign_key_is_refused() {
        let mut ca = new_ca(now(), time::Duration::days(1)).unwrap();
        ca.key = new_ca(now(), time::Duration::days(1)).unwrap().key;
        let err = issue_leaf(&ca, &["a".into()], &[], now(), time::Duration::days(1)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the CA key does not belong to the CA certificate"
        );
    }

    /// Which CA's expiry is reported, from the chain or the certificates
    /// beside it.
    #[rstest::rstest]
    #[case::ca_in_the_chain(true, &[], Some(0))]
    #[case::ca_beside_the_files(false, &[0], Some(0))]
    #[case::rotation_old_and_new_ca_in_the_bundle(false, &[1, 0], Some(0))]
    #[case::only_another_ca(false, &[1], None)]
    #[case::no_ca_at_all(false, &[], None)]
    fn the_expiry_is_the_leafs_and_its_own_cas(
        #[case] ca_in_chain: bool,
        #[case] beside: &[usize],
        #[case] want_ca: Option<usize>,
    ) {
        let days = time::Duration::days;
        // 0 signs the leaf; 1 is another CA (the one a rotation replaces).
        let cas = [
            new_ca(now(), days(300)).unwrap(),
            new_ca(now(), days(30)).unwrap(),
        ];
        let leaf = issue_leaf(&cas[0], &["a".into()], &[], now(), days(9)).unwrap();
        let info = |pem: &str| CertInfo::parse_pem(pem).unwrap();
        let chain = if ca_in_chain {
            format!("{}{}", leaf.cert, cas[0].cert)
        } else {
            leaf.cert.clone()
        };
        let more: String = beside.iter().map(|&i| cas[i].cert.as_str()).collect();
        let got = Expiry::of_pem(&chain, Some(&more)).unwrap();
        assert_eq!(got.serving, info(&leaf.cert).not_after);
        assert_eq!(got.ca, want_ca.map(|i| info(&cas[i].cert).not_after));
    }

    #[test]
    fn a_chain_that_does_not_parse_has_no_expiry() {
        assert_eq!(Expiry::of_pem("not a certificate", None), None);
    }

    #[test]
    fn a_bundle_parses_into_its_certificates() {
        let a = new_ca(now(), time::Duration::days(1)).unwrap().cert;
        let b = new_ca(now(), time::Duration::days(1)).unwrap().cert;
        assert_eq!(CertInfo::parse_bundle(&format!("{a}{b}")).unwrap().len(), 2);
    }
}
