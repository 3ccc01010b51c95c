//! `sts-guard certs`: files, modes, and a certificate that really serves.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
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
    assert_eq!(mode("ca.key"), 0o600);
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

fn certs(out: &Path, ca: Option<&Path>) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sts-guard"));
    cmd.args(["certs", "--dns", "sts-guard.sts-guard.svc", "--out"])
        .arg(out);
    if let Some(ca) = ca {
        cmd.arg("--ca").arg(ca);
    }
    cmd.output().unwrap()
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The overlap of every CA rotation: old and new CA in one bundle. OpenSSL
/// picks the issuer by subject and Authority Key Identifier, so this holds
/// only with distinct CA subjects and an AKI on the leaf.
#[test]
fn a_leaf_of_either_ca_verifies_against_a_bundle_of_both_with_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    assert!(certs(&old, None).status.success());
    assert!(certs(&new, None).status.success());
    let bundle = dir.path().join("bundle.crt");
    for order in [[&old, &new], [&new, &old]] {
        let mut text = std::fs::read_to_string(order[0].join("ca.crt")).unwrap();
        text += &std::fs::read_to_string(order[1].join("ca.crt")).unwrap();
        std::fs::write(&bundle, text).unwrap();
        for leaf in [&old, &new] {
            let (ok, out) = openssl(&[
                "verify",
                "-CAfile",
                bundle.to_str().unwrap(),
                leaf.join("tls.crt").to_str().unwrap(),
            ]);
            assert!(ok, "{out}");
        }
    }
    let subject = |d: &Path| {
        openssl(&[
            "x509",
            "-noout",
            "-subject",
            "-in",
            d.join("ca.crt").to_str().unwrap(),
        ])
        .1
    };
    assert_ne!(subject(&old), subject(&new));
    let (_, text) = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        new.join("tls.crt").to_str().unwrap(),
    ]);
    assert!(text.contains("X509v3 Authority Key Identifier"), "{text}");
    assert!(text.contains("X509v3 Subject Key Identifier"), "{text}");
    let (_, ca_text) = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-in",
        new.join("ca.crt").to_str().unwrap(),
    ]);
    assert!(
        ca_text.contains("X509v3 Subject Key Identifier"),
        "{ca_text}"
    );
}

/// `--ca DIR`: a new serving certificate, the same CA (rotation in one step).
#[test]
fn certs_with_ca_issues_only_a_new_serving_certificate_from_that_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    assert!(certs(&ca_dir, None).status.success());
    let ca_before = std::fs::read(ca_dir.join("ca.crt")).unwrap();
    let key_before = std::fs::read(ca_dir.join("ca.key")).unwrap();
    let leaf_before = std::fs::read(ca_dir.join("tls.crt")).unwrap();

    // In place: the CA files stay as they were, the serving pair changes.
    let out = certs(&ca_dir, Some(&ca_dir));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(ca_dir.join("ca.crt")).unwrap(), ca_before);
    assert_eq!(std::fs::read(ca_dir.join("ca.key")).unwrap(), key_before);
    assert_ne!(std::fs::read(ca_dir.join("tls.crt")).unwrap(), leaf_before);
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        ca_dir.join("ca.crt").to_str().unwrap(),
        ca_dir.join("tls.crt").to_str().unwrap(),
    ]);
    assert!(ok, "{text}");

    // Into another folder: ca.crt is copied for the overlay, the key is not.
    let other = dir.path().join("other");
    assert!(certs(&other, Some(&ca_dir)).status.success());
    assert_eq!(std::fs::read(other.join("ca.crt")).unwrap(), ca_before);
    assert!(!other.join("ca.key").exists());
    let mode = std::fs::metadata(other.join("tls.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A CA already in --out is never replaced without --force: exit 2, one
/// line naming what is there and pointing at --ca, nothing written.
#[rstest::rstest]
#[case::key_only(&["ca.key"])]
#[case::cert_only(&["ca.crt"])]
#[case::both(&["ca.crt", "ca.key"])]
fn certs_refuses_to_replace_a_ca_in_out(#[case] held: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    for f in held {
        std::fs::write(dir.path().join(f), format!("the {f} renewals need")).unwrap();
    }
    let out = certs(dir.path(), None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let shown = dir.path().display();
    assert_eq!(
        stderr(&out),
        format!(
            "error: {shown} already holds a CA ({}): give --ca {shown} for a new serving certificate from it, or --force to replace it\n",
            held.join(", ")
        )
    );
    for f in held {
        assert_eq!(
            std::fs::read_to_string(dir.path().join(f)).unwrap(),
            format!("the {f} renewals need")
        );
    }
    assert!(!dir.path().join("tls.crt").exists());
    assert!(!dir.path().join("tls.key").exists());
}

/// --force replaces the CA on purpose; the keys end up 0600 even over a
/// loose old one.
#[test]
fn certs_force_replaces_the_ca_with_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    assert!(certs(dir.path(), None).status.success());
    let ca_before = std::fs::read(dir.path().join("ca.crt")).unwrap();
    let key = dir.path().join("ca.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let key_before = std::fs::read(&key).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_sts-guard"))
        .args(["certs", "--dns", "localhost", "--force", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_ne!(std::fs::read(dir.path().join("ca.crt")).unwrap(), ca_before);
    assert_ne!(std::fs::read(&key).unwrap(), key_before);
    assert_eq!(mode_of(&key), 0o600);
    assert_eq!(mode_of(&dir.path().join("tls.key")), 0o600);
    let (ok, text) = openssl(&[
        "verify",
        "-CAfile",
        dir.path().join("ca.crt").to_str().unwrap(),
        dir.path().join("tls.crt").to_str().unwrap(),
    ]);
    assert!(ok, "{text}");
}

#[test]
fn certs_force_with_ca_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_sts-guard"))
        .args(["certs", "--dns", "localhost", "--force", "--ca"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert!(!dir.path().join("tls.key").exists());
}

/// `--ca A --out B` where B holds another CA: refused, B untouched; where
/// B holds the same CA (a copy of it), fine.
#[test]
fn certs_with_ca_never_writes_over_another_ca_in_out() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    assert!(certs(&a, None).status.success());
    assert!(certs(&b, None).status.success());
    let b_ca = std::fs::read(b.join("ca.crt")).unwrap();

    let out = certs(&b, Some(&a));
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        format!(
            "error: {} already holds another CA than {} (ca.crt, ca.key): give a folder without one as --out, or --ca {} to use its own\n",
            b.display(),
            a.display(),
            b.display()
        )
    );
    assert_eq!(std::fs::read(b.join("ca.crt")).unwrap(), b_ca);

    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for f in ["ca.crt", "ca.key"] {
        std::fs::copy(a.join(f), copy.join(f)).unwrap();
    }
    let out = certs(&copy, Some(&a));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn certs_with_a_folder_holding_no_ca_key_says_which_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = certs(&dir.path().join("out"), Some(dir.path()));
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ca.crt"), "{stderr}");
    assert!(!stderr.contains("Os {"), "debug formatting: {stderr}");
}

/// An OpenSSL-based client (Python's `ssl`) opening a new connection per
/// request, with old and new CA in its bundle, while `serve` goes from a
/// pair of the old CA to a pair of the new one (kubelet's `..data` swap):
/// not one failure. (With CAs sharing one subject under leaves without an
/// AKI, OpenSSL picks the first CA by name and fails the other's.)
#[tokio::test]
async fn an_openssl_client_with_both_cas_sees_no_failure_across_a_ca_rotation() {
    if Command::new("python3").arg("--version").output().is_err() {
        eprintln!("python3 not found: skipped");
        return;
    }
    let staging = tempfile::tempdir().unwrap();
    let (old, new) = (staging.path().join("old"), staging.path().join("new"));
    support::make_certs(&old);
    support::make_certs(&new);
    let bundle = staging.path().join("bundle.crt");
    let text = std::fs::read_to_string(old.join("ca.crt")).unwrap()
        + &std::fs::read_to_string(new.join("ca.crt")).unwrap();
    std::fs::write(&bundle, text).unwrap();
    let pair = |d: &Path| ["tls.crt", "tls.key"].map(|f| std::fs::read(d.join(f)).unwrap());

    let root = tempfile::tempdir().unwrap();
    let [cert, key] = pair(&old);
    support::mount_version(root.path(), "v1", &[("tls.crt", &cert), ("tls.key", &key)]);
    let serve = support::Serve::start(root.path(), &[]);
    serve.wait_ready(&support::tls_connector(&bundle)).await;

    const CLIENT: &str = r#"
import socket, ssl, sys, time
port, cafile, seconds = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
ctx = ssl.create_default_context(cafile=cafile)
ok, failed, errors, issuers = 0, 0, [], set()
end = time.time() + seconds
while time.time() < end:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                issuers.add(str(tls.getpeercert()["issuer"]))
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                head = tls.recv(64)
        if b" 200 " in head:
            ok += 1
        else:
            failed += 1
            errors.append(repr(head))
    except Exception as e:
        failed += 1
        errors.append(str(e))
print(ok, failed, len(issuers), errors[:3])
"#;
    let client = Command::new("python3")
        .args(["-c", CLIENT, &serve.addr.port().to_string()])
        .arg(&bundle)
        .arg("4")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let [cert, key] = pair(&new);
    support::mount_version(root.path(), "v2", &[("tls.crt", &cert), ("tls.key", &key)]);
    let out = tokio::task::spawn_blocking(move || client.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).to_string();
    println!("openssl client across the rotation: ok failed issuers errors = {line}");
    let mut fields = line.split_whitespace();
    let ok: u32 = fields.next().unwrap().parse().unwrap();
    let failed: u32 = fields.next().unwrap().parse().unwrap();
    let issuers: u32 = fields.next().unwrap().parse().unwrap();
    assert!(ok > 20, "{line}");
    assert_eq!(failed, 0, "{line}");
    assert_eq!(issuers, 2, "both CAs' certificates were served: {line}");
}
