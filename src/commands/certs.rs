//! `sts-guard certs`: a CA and a serving certificate signed by it.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// Validity of both certificates; rotate well before (see certs/README.md).
const VALIDITY_DAYS: i64 = 365;

pub fn run(out: &Path, dns: &[String], ips: &[IpAddr]) -> anyhow::Result<()> {
    if dns.is_empty() && ips.is_empty() {
        anyhow::bail!("give at least one --dns NAME or --ip ADDR for the serving certificate");
    }
    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let now = time_now();

    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name("sts-guard CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = now;
    ca.not_after = now + time::Duration::days(VALIDITY_DAYS);
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca, ca_key);

    let key = KeyPair::generate()?;
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name = name(dns.first().map(String::as_str).unwrap_or("sts-guard"));
    leaf.subject_alt_names = dns
        .iter()
        .map(|d| Ok(SanType::DnsName(d.as_str().try_into()?)))
        .chain(ips.iter().map(|ip| Ok(SanType::IpAddress(*ip))))
        .collect::<Result<_, rcgen::Error>>()?;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = now;
    leaf.not_after = now + time::Duration::days(VALIDITY_DAYS);
    let leaf_cert = leaf.signed_by(&key, &issuer)?;

    write(&out.join("ca.crt"), ca_cert.pem().as_bytes(), 0o644)?;
    write(&out.join("tls.crt"), leaf_cert.pem().as_bytes(), 0o644)?;
    write(&out.join("tls.key"), key.serialize_pem().as_bytes(), 0o600)?;
    eprintln!(
        "wrote {0}/ca.crt, {0}/tls.crt, {0}/tls.key (valid {VALIDITY_DAYS} days)",
        out.display()
    );
    Ok(())
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn time_now() -> time::OffsetDateTime {
    // A minute back, so a slightly slow clock elsewhere still accepts it.
    time::OffsetDateTime::now_utc() - time::Duration::minutes(1)
}

/// Writes with the mode set at creation, so a key is never briefly readable.
fn write(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(mode);
        let mut f = options
            .open(path)
            .with_context(|| format!("writing {}", path.display()))?;
        // An existing file keeps its old mode on open: set it explicitly.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
    }
    #[cfg(not(unix))]
    {
        let _ = mode;
        let mut f = options.open(path)?;
        f.write_all(bytes)?;
    }
    Ok(())
}
