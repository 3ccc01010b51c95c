//! `sts-guard certs`: a CA and a serving certificate signed by it, or, with
//! `--ca DIR`, only a new serving certificate from the CA kept in DIR.

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use anyhow::Context;

use crate::certs::{self, CaPem};

/// Validity of the serving certificate; rotate well before (certs/README.md).
pub const LEAF_VALIDITY_DAYS: i64 = 365;
/// Validity of a new CA: several serving certificates, each renewed with
/// `--ca`, before the CA itself has to change.
pub const CA_VALIDITY_DAYS: i64 = 5 * 365;

/// Writes `ca.crt`, `ca.key` (0600), `tls.crt`, `tls.key` (0600) into
/// `out`; with `ca_dir`, reads `ca.crt` and `ca.key` from there instead of
/// making a new CA, and writes only `tls.crt`, `tls.key` (and `ca.crt`
/// when `out` is another folder, so `out` is complete for the overlay).
///
/// Never replaces a CA: without `ca_dir`, refuses when `out` already holds
/// `ca.key` or `ca.crt` (the key renewals need); with `ca_dir` elsewhere,
/// when `out` holds a different CA. [`run_with`] and `force` replace it.
pub fn run(
    out: &Path,
    dns: &[String],
    ips: &[IpAddr],
    ca_dir: Option<&Path>,
) -> anyhow::Result<()> {
    run_with(out, dns, ips, ca_dir, false)
}

/// [`run`]; with `force` (and no `ca_dir`), a CA already in `out` is
/// replaced by a new one.
pub fn run_with(
    out: &Path,
    dns: &[String],
    ips: &[IpAddr],
    ca_dir: Option<&Path>,
    force: bool,
) -> anyhow::Result<()> {
    if dns.is_empty() && ips.is_empty() {
        anyhow::bail!("give at least one --dns NAME or --ip ADDR for the serving certificate");
    }
    if force && ca_dir.is_some() {
        anyhow::bail!("--force replaces the CA in --out with a new one; it cannot go with --ca");
    }
    if !force {
        refuse_to_replace_a_ca(out, ca_dir)?;
    }
    let now = time::OffsetDateTime::now_utc();
    let ca = match ca_dir {
        Some(dir) => {
            let read = |f: &str| {
                let path = dir.join(f);
                fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
            };
            CaPem {
                cert: read("ca.crt")?,
                key: read("ca.key")?,
            }
        }
        None => certs::new_ca(now, time::Duration::days(CA_VALIDITY_DAYS))?,
    };
    let leaf = certs::issue_leaf(&ca, dns, ips, now, time::Duration::days(LEAF_VALIDITY_DAYS))
        .with_context(|| match ca_dir {
            Some(dir) => format!(
                "issuing a serving certificate from the CA in {}",
                dir.display()
            ),
            None => "issuing a serving certificate".to_string(),
        })?;
    let not_after = certs::CertInfo::parse_pem(&leaf.cert)
        .map(|i| i.not_after.date().to_string())
        .unwrap_or_default();

    fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let same_dir = ca_dir.is_some_and(|dir| same_path(dir, out));
    let mut written = Vec::new();
    if !same_dir {
        write(&out.join("ca.crt"), ca.cert.as_bytes(), 0o644)?;
        written.push("ca.crt");
    }
    if ca_dir.is_none() {
        write(&out.join("ca.key"), ca.key.as_bytes(), 0o600)?;
        written.push("ca.key");
    }
    write(&out.join("tls.crt"), leaf.cert.as_bytes(), 0o644)?;
    write(&out.join("tls.key"), leaf.key.as_bytes(), 0o600)?;
    written.extend(["tls.crt", "tls.key"]);
    let shown: Vec<String> = written
        .iter()
        .map(|f| format!("{}/{f}", out.display()))
        .collect();
    match ca_dir {
        None => eprintln!(
            "wrote {} (serving certificate valid until {not_after}, CA {CA_VALIDITY_DAYS} days); keep ca.key secret",
            shown.join(", ")
        ),
        Some(dir) => eprintln!(
            "wrote {} (serving certificate valid until {not_after}, signed by the CA in {})",
            shown.join(", "),
            dir.display()
        ),
    }
    Ok(())
}

/// The CA files `out` already holds, if any would be replaced or left
/// beside another CA's.
fn refuse_to_replace_a_ca(out: &Path, ca_dir: Option<&Path>) -> anyhow::Result<()> {
    let present = |f: &str| fs::symlink_metadata(out.join(f)).is_ok();
    let shown = out.display();
    match ca_dir {
        None => {
            let held: Vec<&str> = ["ca.crt", "ca.key"]
                .into_iter()
                .filter(|f| present(f))
                .collect();
            if !held.is_empty() {
                anyhow::bail!(
                    "{shown} already holds a CA ({}): give --ca {shown} for a new serving certificate from it, or --force to replace it",
                    held.join(", ")
                );
            }
        }
        Some(dir) if !same_path(dir, out) => {
            let differs =
                |f: &str| present(f) && fs::read(out.join(f)).ok() != fs::read(dir.join(f)).ok();
            let other: Vec<&str> = ["ca.crt", "ca.key"]
                .into_iter()
                .filter(|f| differs(f))
                .collect();
            if !other.is_empty() {
                anyhow::bail!(
                    "{shown} already holds another CA than {} ({}): give a folder without one as --out, or --ca {shown} to use its own",
                    dir.display(),
                    other.join(", ")
                );
            }
        }
        Some(_) => {}
    }
    Ok(())
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
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
