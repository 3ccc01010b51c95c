//! Managed certificates (`serve --tls-secret --webhook-configuration`):
//! replicas started at once agree on one CA, inject it, serve a certificate
//! it trusts, and renew serving certificate and CA under load with no
//! failed admission.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use kube::api::PostParams;

use crate::support::client::{Client, is_ready, tls_connector};
use crate::support::control_plane::{
    ControlPlane, free_ports, http_get, random_suffix, sts_guard_bin, wait_for,
};
use crate::support::webhook::{Registration, WEBHOOK_LABEL, metric_sum, sts_guard_command};
use crate::{DENIED, Ns, Sts, Svc, accepts, apply, assert_has, cluster};

struct Replica {
    pid: u32,
    addr: SocketAddr,
    metrics: SocketAddr,
}

/// `sts-guard serve` in managed mode (`--tls-secret SECRET
/// --webhook-configuration CONFIG`) on free loopback ports, for `localhost`
/// and 127.0.0.1: the command, and where it will listen (webhook, metrics).
pub(crate) fn managed_serve(
    cp: &ControlPlane,
    secret: &str,
    config: &str,
) -> (std::process::Command, SocketAddr, SocketAddr) {
    let ports = free_ports(2);
    let addr: SocketAddr = ([127, 0, 0, 1], ports[0]).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], ports[1]).into();
    let mut cmd = sts_guard_command(cp, &sts_guard_bin());
    cmd.arg("serve")
        .args(["--listen", &addr.to_string()])
        .args(["--metrics-listen", &metrics.to_string()])
        .args(["--tls-secret", secret, "--webhook-configuration", config])
        .args(["--cert-dns", "localhost", "--cert-ip", "127.0.0.1"])
        .args(["--shutdown-delay", "0s"]);
    (cmd, addr, metrics)
}

/// [`managed_serve`] with `extra` flags, spawned by the control plane.
fn start_replica(
    cp: &ControlPlane,
    name: &str,
    secret: &str,
    config: &str,
    extra: &[&str],
) -> Replica {
    let (mut cmd, addr, metrics) = managed_serve(cp, secret, config);
    cmd.args(extra);
    let pid = cp.spawn(name, &mut cmd).unwrap();
    Replica { pid, addr, metrics }
}

/// One key of the Secret, decoded; None while it does not exist.
fn secret_key(cp: &ControlPlane, ns: &str, name: &str, key: &str) -> Option<String> {
    let template = format!("{{{{index .data \"{key}\" | base64decode}}}}");
    let out = cp.kubectl(&[
        "get",
        "secret",
        "-n",
        ns,
        name,
        "-o",
        &format!("go-template={template}"),
    ]);
    (out.code == 0 && out.stdout.contains("BEGIN")).then_some(out.stdout)
}

fn certificates(pem: &str) -> usize {
    pem.matches("-----BEGIN CERTIFICATE-----").count()
}

/// The Secret's current bundle, written to `file`.
fn bundle_file(cp: &ControlPlane, ns: &str, name: &str, file: &Path) -> bool {
    match secret_key(cp, ns, name, "ca.crt") {
        Some(pem) => std::fs::write(file, pem).is_ok(),
        None => false,
    }
}

/// Waits until every replica answers /readyz 200 over TLS trusting the
/// Secret's bundle.
fn wait_all_ready(cp: &ControlPlane, ns: &str, name: &str, file: &Path, replicas: &[&Replica]) {
    wait_for(
        "every replica ready with a certificate the Secret's bundle trusts",
        Duration::from_secs(60),
        Duration::from_millis(250),
        || {
            if !bundle_file(cp, ns, name, file) {
                return Ok(false);
            }
            let connector = tls_connector(file);
            Ok(replicas
                .iter()
                .all(|r| crate::support::control_plane::block_on(is_ready(r.addr, &connector))))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", cp.logs(40)));
}

fn validations(r: &Replica) -> f64 {
    let (_, body) = http_get(r.metrics, "/metrics").expect("GET /metrics");
    metric_sum(
        &body,
        "sts_guard_admission_requests_total",
        &["endpoint=\"validate\""],
    )
}

/// Registers deploy/'s configurations under `sts-guard-<tag>`, for
/// StatefulSets labelled with the tag, pointing at `addr`, caBundle empty.
fn register_empty(cp: &ControlPlane, tag: &str, addr: SocketAddr) -> Registration {
    let registration = Registration::only_labelled(tag);
    let list = registration
        .configurations(cp, &format!("https://{addr}"), b"")
        .unwrap();
    cp.kubectl_with_input(&["apply", "-f", "-"], &list.to_string())
        .assert_exit(0);
    registration
}

fn cleanup(cp: &ControlPlane, registration: &Registration, replicas: &[&Replica]) {
    let names = registration.names();
    cp.kubectl(&["delete", &names[0], &names[1]]);
    for r in replicas {
        cp.stop_process(r.pid);
    }
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn two_replicas_started_at_once_agree_on_one_ca_inject_it_and_deny_through_the_api_server() {
    let cp = &cluster().cp;
    let tag = format!("managed-{}", random_suffix(5));
    let home = Ns::fresh("managed-home").await;
    let secret = format!("{}/sts-guard-tls", home.name);
    let config = format!("sts-guard-{tag}");
    // Both at once, before the configurations exist with any caBundle.
    let a = start_replica(cp, &format!("{tag}-a"), &secret, &config, &[]);
    let b = start_replica(cp, &format!("{tag}-b"), &secret, &config, &[]);
    let file = cp.work().join(format!("{tag}-bundle.crt"));
    // Serving the Secret's certificate, but no configuration carries its
    // CA yet (none exists): not ready.
    wait_for(
        "a replica serving the Secret's certificate",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || Ok(bundle_file(cp, &home.name, "sts-guard-tls", &file)),
    )
    .unwrap();
    let mut served = None;
    for _ in 0..50 {
        if let Ok(client) = Client::connect(a.addr, &file).await {
            served = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = served
        .expect("the Secret's certificate served")
        .get("/readyz")
        .await
        .unwrap();
    assert_eq!(status, 503, "{}", String::from_utf8_lossy(&body));
    assert_has(&String::from_utf8_lossy(&body), "not yet trusted");

    let registration = register_empty(cp, &tag, a.addr);
    wait_all_ready(cp, &home.name, "sts-guard-tls", &file, &[&a, &b]);
    let bundle = std::fs::read_to_string(&file).unwrap();
    assert_eq!(certificates(&bundle), 1, "exactly one CA:\n{bundle}");
    // Both serve the Secret's certificate.
    let served_a = Client::connect(a.addr, &file).await.unwrap().peer_cert;
    let served_b = Client::connect(b.addr, &file).await.unwrap().peer_cert;
    assert_eq!(served_a, served_b);
    // Every webhook carries the bundle.
    for kind in [
        "validatingwebhookconfiguration",
        "mutatingwebhookconfiguration",
    ] {
        let template =
            "go-template={{range .webhooks}}{{.clientConfig.caBundle | base64decode}}{{end}}";
        let out = cp.kubectl(&["get", kind, &config, "-o", template]);
        out.assert_exit(0);
        assert_eq!(out.stdout, bundle, "{kind}");
    }

    // Denied through the API server, by this webhook.
    let ns = Ns::fresh("managed").await;
    accepts(&ns, &Svc::new("web").yaml());
    let before = validations(&a);
    let bad = Sts::new("web").no_readiness().label(WEBHOOK_LABEL, &tag);
    let out = apply(&ns, &bad.yaml(), &[]);
    out.assert_exit(1);
    assert_has(&out.stderr, DENIED);
    assert!(
        validations(&a) > before,
        "the managed webhook was not called"
    );

    // Someone empties a caBundle: it is put back.
    let names = registration.names();
    cp.kubectl(&[
        "patch",
        &names[0],
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/webhooks/0/clientConfig/caBundle","value":""}]"#,
    ])
    .assert_exit(0);
    wait_for(
        "the caBundle to be put back",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || {
            let out = cp.kubectl(&[
                "get",
                &names[0],
                "-o",
                "jsonpath={.webhooks[0].clientConfig.caBundle}",
            ]);
            Ok(!out.stdout.trim().is_empty())
        },
    )
    .unwrap();
    cleanup(cp, &registration, &[&a, &b]);
}

/// `--cert-validity 2m --ca-validity 3m`: the serving certificate is
/// renewed about every minute and the CA once (added, switched, old one
/// removed) within about two and a half minutes, while StatefulSets are
/// created through the API server without a single failure.
#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn serving_and_ca_renewals_under_load_fail_no_admission() {
    let c = cluster();
    let cp = &c.cp;
    let tag = format!("renew-{}", random_suffix(5));
    let home = Ns::fresh("renew-home").await;
    let secret = format!("{}/sts-guard-tls", home.name);
    let config = format!("sts-guard-{tag}");
    let short = ["--cert-validity", "2m", "--ca-validity", "3m"];
    let a = start_replica(cp, &format!("{tag}-a"), &secret, &config, &short);
    let b = start_replica(cp, &format!("{tag}-b"), &secret, &config, &short);
    let registration = register_empty(cp, &tag, a.addr);
    let file: PathBuf = cp.work().join(format!("{tag}-bundle.crt"));
    wait_all_ready(cp, &home.name, "sts-guard-tls", &file, &[&a, &b]);
    let first_ca = secret_key(cp, &home.name, "sts-guard-tls", "issuer.crt").unwrap();

    let ns = Ns::fresh("renew").await;
    accepts(&ns, &Svc::new("web").yaml());
    let api: Api<StatefulSet> = Api::namespaced(cp.client().await, &ns.name);
    let before = validations(&a);
    let started = Instant::now();
    let mut served = BTreeSet::new();
    let (mut created, mut failures) = (0u32, Vec::new());
    let mut last_sample = Instant::now() - Duration::from_secs(10);
    let done = |served: &BTreeSet<Vec<u8>>| {
        let bundle = secret_key(cp, &home.name, "sts-guard-tls", "ca.crt").unwrap_or_default();
        let issuer = secret_key(cp, &home.name, "sts-guard-tls", "issuer.crt").unwrap_or_default();
        served.len() >= 3 && certificates(&bundle) == 1 && issuer != first_ca
    };
    while started.elapsed() < Duration::from_secs(240) {
        let sts: StatefulSet = serde_saphyr::from_str(
            &Sts::new(&format!("web-{created}"))
                .service("web")
                .app("web")
                .label(WEBHOOK_LABEL, &tag)
                .yaml(),
        )
        .unwrap();
        match api.create(&PostParams::default(), &sts).await {
            Ok(_) => {}
            Err(e) => failures.push(format!("{:.0?}: {e}", started.elapsed())),
        }
        created += 1;
        if last_sample.elapsed() >= Duration::from_secs(5) {
            last_sample = Instant::now();
            // What a new connection gets, trusted by the current bundle.
            if bundle_file(cp, &home.name, "sts-guard-tls", &file) {
                match Client::connect(a.addr, &file).await {
                    Ok(client) => {
                        served.insert(client.peer_cert);
                    }
                    Err(e) => failures.push(format!(
                        "{:.0?}: served certificate not trusted: {e}",
                        started.elapsed()
                    )),
                }
            }
            if done(&served) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    eprintln!(
        "renewals: {created} creates in {elapsed:.0?}, {} served certificates, failures: {}",
        served.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures, the first: {:#?}\n{}",
        failures.len(),
        &failures[..failures.len().min(5)],
        cp.logs(40)
    );
    assert!(
        done(&served),
        "renewals did not complete in {elapsed:.0?}: {} served\n{}",
        served.len(),
        cp.logs(60)
    );
    assert!(
        validations(&a) - before >= f64::from(created) * 0.9,
        "creates did not go through the managed webhook"
    );
    cleanup(cp, &registration, &[&a, &b]);
}

/// deploy/'s RBAC (rbac.yaml and rbac-managed-certs.yaml, names and
/// namespace swapped for this test's) is all a managed replica needs: run
/// as that ServiceAccount (impersonated), it creates the Secret, injects
/// the bundle and becomes ready.
#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn the_shipped_rbac_is_enough_for_managed_certificates() {
    let cp = &cluster().cp;
    let tag = format!("rbac-{}", random_suffix(5));
    let home = Ns::fresh("rbac-home").await;
    let sa = format!("sts-guard-{tag}");
    let mut rbac = String::new();
    for file in [
        "deploy/base/rbac.yaml",
        "deploy/base/rbac-managed-certs.yaml",
    ] {
        let text =
            std::fs::read_to_string(crate::support::control_plane::repo_root().join(file)).unwrap();
        rbac.push_str(
            &text
                .replace(
                    "name: sts-guard-certificates\n",
                    &format!("name: sts-guard-certificates-{tag}\n"),
                )
                .replace(
                    "name: sts-guard-auditor\n",
                    &format!("name: sts-guard-auditor-{tag}\n"),
                )
                .replace("name: sts-guard\n", &format!("name: {sa}\n"))
                .replace(
                    "namespace: sts-guard\n",
                    &format!("namespace: {}\n", home.name),
                )
                .replace(
                    r#"resourceNames: ["sts-guard"]"#,
                    &format!(r#"resourceNames: ["{sa}"]"#),
                ),
        );
        rbac.push_str("\n---\n");
    }
    assert!(!rbac.contains("namespace: sts-guard\n") && rbac.contains(&sa));
    cp.kubectl_with_input(&["apply", "-f", "-"], &rbac)
        .assert_exit(0);

    // The admin kubeconfig, impersonating the ServiceAccount.
    let kubeconfig = std::fs::read_to_string(&cp.kubeconfig).unwrap().replace(
        "  user:\n",
        &format!(
            "  user:\n    as: system:serviceaccount:{}:{sa}\n",
            home.name
        ),
    );
    let kubeconfig_path = cp.work().join(format!("{tag}-kubeconfig"));
    std::fs::write(&kubeconfig_path, kubeconfig).unwrap();
    // Impersonation works, and the ServiceAccount may not read other Secrets.
    let mut can_i = cp.command("kubectl");
    can_i
        .env("KUBECONFIG", &kubeconfig_path)
        .args(["auth", "can-i", "get", "secrets", "-n", &home.name]);
    assert_eq!(
        crate::support::control_plane::run(&mut can_i, None)
            .stdout
            .trim(),
        "no"
    );

    let registration = Registration::only_labelled(&tag);
    let ports = free_ports(2);
    let addr: SocketAddr = ([127, 0, 0, 1], ports[0]).into();
    let list = registration
        .configurations(cp, &format!("https://{addr}"), b"")
        .unwrap();
    cp.kubectl_with_input(&["apply", "-f", "-"], &list.to_string())
        .assert_exit(0);
    let mut cmd = sts_guard_command(cp, &sts_guard_bin());
    cmd.env("KUBECONFIG", &kubeconfig_path)
        .arg("serve")
        .args(["--listen", &addr.to_string()])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", ports[1])])
        .args(["--tls-secret", &format!("{}/sts-guard-tls", home.name)])
        .args(["--webhook-configuration", &sa])
        .args(["--cert-dns", "localhost", "--cert-ip", "127.0.0.1"])
        .args(["--shutdown-delay", "0s"]);
    let pid = cp.spawn(&tag, &mut cmd).unwrap();
    let replica = Replica {
        pid,
        addr,
        metrics: ([127, 0, 0, 1], ports[1]).into(),
    };
    let file = cp.work().join(format!("{tag}-bundle.crt"));
    wait_all_ready(cp, &home.name, "sts-guard-tls", &file, &[&replica]);
    let log = std::fs::read_to_string(cp.log_path(&tag)).unwrap();
    assert!(!log.contains("forbidden"), "{log}");
    cleanup(cp, &registration, &[&replica]);
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn a_lookup_timeout_the_registration_does_not_leave_room_for_is_refused_at_start() {
    let cp = &cluster().cp;
    let tag = format!("timeout-{}", random_suffix(5));
    let home = Ns::fresh("timeout").await;
    // deploy/'s configurations: timeoutSeconds 5.
    let registration = register_empty(cp, &tag, ([127, 0, 0, 1], free_ports(1)[0]).into());
    let config = format!("sts-guard-{tag}");
    let secret = format!("{}/sts-guard-tls", home.name);
    let name = format!("serve-{tag}");
    let replica = start_replica(cp, &name, &secret, &config, &["--lookup-timeout", "4500ms"]);
    wait_for(
        "serve to refuse to start",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || Ok(!cp.is_running(replica.pid)),
    )
    .unwrap();
    let log = std::fs::read_to_string(cp.log_path(&name)).unwrap();
    assert_has(
        &log,
        &format!(
            "--lookup-timeout 4s 500ms leaves less than 1s of timeoutSeconds: 5 of webhook \"validate.sts-guard.io\" in ValidatingWebhookConfiguration \"{config}\"; lower --lookup-timeout to 4s or less, or raise timeoutSeconds"
        ),
    );
    // With the default (2 s) the same registration starts and serves.
    let replica = start_replica(cp, &format!("{name}-ok"), &secret, &config, &[]);
    let bundle = cp.work().join(format!("{tag}-bundle.pem"));
    wait_all_ready(cp, &home.name, "sts-guard-tls", &bundle, &[&replica]);
    cleanup(cp, &registration, &[&replica]);
}
