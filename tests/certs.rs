//! `sts-guard certs`: files, modes, and a certificate that really serves.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

#[test]
fn certs_writes_ca_cert_and_a_private_key_only_its_owner_reads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("nested/out");
    let status = Command::new(env!("CARGO_BIN_EXE_sts-guard"))
        .args([
            "certs",
            "--dns",
            "sts-guard.sts-guard.svc",
            "--ip",
            "127.0.0.1",
            "--out",
        ])
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let mode = |f: &str| std::fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("tls.key"), 0o600);
    assert_eq!(mode("tls.crt"), 0o644);
    assert_eq!(mode("ca.crt"), 0o644);
    let crt = std::fs::read_to_string(out.join("tls.crt")).unwrap();
    let ca = std::fs::read_to_string(out.join("ca.crt")).unwrap();
    assert!(crt.starts_with("-----BEGIN CERTIFICATE-----"));
    assert_ne!(crt, ca);
    // The pair loads as a TLS identity (the same check serve makes).
    sts_guard::install_crypto_provider();
    let key = std::fs::read(out.join("tls.key")).unwrap();
    sts_guard::webhook::tls::certified_key(crt.as_bytes(), &key, "tls.crt", "tls.key").unwrap();
}

#[test]
fn certs_without_a_name_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_sts-guard"))
        .args(["certs", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--dns"));
    assert!(!dir.path().join("tls.key").exists());
}

#[test]
fn rerunning_certs_over_a_loose_key_tightens_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tls.key"), "old").unwrap();
    std::fs::set_permissions(
        dir.path().join("tls.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_sts-guard"))
        .args(["certs", "--dns", "localhost", "--out"])
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    let mode = std::fs::metadata(dir.path().join("tls.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}
