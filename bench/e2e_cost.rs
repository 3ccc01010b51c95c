//! What sts-guard adds to a StatefulSet write through a real kube-apiserver,
//! beside what a null webhook adds (one that answers `allowed: true` with
//! the uid and reads nothing), registered the same way (deploy/'s
//! mutating and validating configurations): the latency the client sees,
//! in the shapes users have.
//!
//! Each round runs three phases back to back, in alternating order: no
//! webhook, the null webhook, sts-guard; each phase sends COUNT writes of
//! every shape over one keep-alive connection (a kube client) and the p50,
//! p90 and p99 of each phase and shape are pooled over the rounds. The
//! added latency is a phase's p50 minus the no-webhook p50; the ratio is
//! sts-guard's added over the null webhook's. sts-guard runs with
//! `mode: audit`, so every shape is admitted (a denial is not a write)
//! while every rule and lookup still runs; the API server's audit log
//! counts the Service and PodDisruptionBudget requests sts-guard made.
//!
//!   bench/e2e-cost.sh [COUNT] [ROUNDS]      (default 200 and 3)
//!
//! Built as the example `e2e-cost`; it shares the e2e tests' control plane
//! fixture (tests/support). sts-guard is `STS_GUARD_BIN` or target/release.

#[path = "../tests/support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};

use support::control_plane::{ControlPlane, random_suffix, run, sts_guard_bin, wait_for};
use support::webhook::{Registration, Webhook};

/// One shape of write.
struct Shape {
    name: &'static str,
    replicas: u32,
    service: ServiceKind,
    budget: bool,
    update: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum ServiceKind {
    /// A headless Service selecting the pods: in sts-guard's watch cache.
    Headless,
    /// A ClusterIP Service: not in the watch (it watches headless ones).
    ClusterIp,
    /// No Service of that name.
    Absent,
}

const SHAPES: &[Shape] = &[
    Shape {
        name: "replicas 0, headless Service",
        replicas: 0,
        service: ServiceKind::Headless,
        budget: false,
        update: false,
    },
    Shape {
        name: "replicas 3, headless Service, budget",
        replicas: 3,
        service: ServiceKind::Headless,
        budget: true,
        update: false,
    },
    Shape {
        name: "replicas 3, headless Service, no budget",
        replicas: 3,
        service: ServiceKind::Headless,
        budget: false,
        update: false,
    },
    Shape {
        name: "replicas 3, ClusterIP Service (not cached), no budget",
        replicas: 3,
        service: ServiceKind::ClusterIp,
        budget: false,
        update: false,
    },
    Shape {
        name: "replicas 3, no Service, no budget",
        replicas: 3,
        service: ServiceKind::Absent,
        budget: false,
        update: false,
    },
    Shape {
        name: "UPDATE replicas 3, headless Service, no budget",
        replicas: 3,
        service: ServiceKind::Headless,
        budget: false,
        update: true,
    },
    Shape {
        name: "UPDATE replicas 3, no Service, no budget",
        replicas: 3,
        service: ServiceKind::Absent,
        budget: false,
        update: true,
    },
];

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Phase {
    None,
    Null,
    StsGuard,
}

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("e2e-cost: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: usize = args
        .next()
        .map_or(Ok(200), |a| a.parse())
        .context("COUNT")?;
    let rounds: usize = args.next().map_or(Ok(3), |a| a.parse()).context("ROUNDS")?;
    let cp = ControlPlane::start()?;
    let policy = cp.work().join("bench-policy.yaml");
    std::fs::write(&policy, "mode: audit\n")?;
    let guard = Webhook::start(&cp, "sts-guard", Some(&policy))?;
    let null = NullWebhook::start(&cp)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = rt.block_on(cp.client());

    // A namespace per shape, with what the shape says exists.
    let namespaces: Vec<String> = SHAPES
        .iter()
        .map(|shape| {
            let ns = format!("cost-{}", random_suffix(6));
            cp.kubectl(&["create", "namespace", &ns]).assert_exit(0);
            let mut docs = Vec::new();
            match shape.service {
                ServiceKind::Headless => docs.push(service("web", true)),
                ServiceKind::ClusterIp => docs.push(service("web", false)),
                ServiceKind::Absent => {}
            }
            if shape.budget {
                docs.push(BUDGET.to_string());
            }
            if !docs.is_empty() {
                cp.kubectl_with_input(&["apply", "-n", &ns, "-f", "-"], &docs.join("---\n"))
                    .assert_exit(0);
            }
            ns
        })
        .collect();
    // The objects the UPDATE shapes update, stored before any webhook.
    for (shape, ns) in SHAPES.iter().zip(&namespaces).filter(|(s, _)| s.update) {
        let sts = statefulset("updated", shape.replicas);
        rt.block_on(
            Api::<StatefulSet>::namespaced(client.clone(), ns).create(&PostParams::default(), &sts),
        )?;
    }

    let before: BTreeMap<&str, usize> = ["services", "poddisruptionbudgets"]
        .into_iter()
        .map(|r| (r, namespaces.iter().map(|ns| lookups(&cp, r, ns)).sum()))
        .collect();
    let mut latencies: BTreeMap<(Phase, usize), Vec<Duration>> = BTreeMap::new();
    let mut guard_time = Duration::ZERO;
    let mut writes = 0u64;
    for round in 0..rounds {
        let mut order = [Phase::None, Phase::Null, Phase::StsGuard];
        order.rotate_left(round % 3);
        for phase in order {
            switch(&cp, phase, &guard, &null, &namespaces[0])?;
            let started = Instant::now();
            for (i, (shape, ns)) in SHAPES.iter().zip(&namespaces).enumerate() {
                let api = Api::<StatefulSet>::namespaced(client.clone(), ns);
                let times = rt.block_on(writes_of(&api, shape, count, round))?;
                writes += times.len() as u64;
                latencies.entry((phase, i)).or_default().extend(times);
            }
            if phase == Phase::StsGuard {
                guard_time += started.elapsed();
            }
        }
    }
    let after: BTreeMap<&str, usize> = ["services", "poddisruptionbudgets"]
        .into_iter()
        .map(|r| (r, namespaces.iter().map(|ns| lookups(&cp, r, ns)).sum()))
        .collect();
    switch(&cp, Phase::None, &guard, &null, &namespaces[0])?;

    report(count, rounds, &latencies, writes);
    println!();
    for (resource, n) in &after {
        println!(
            "- {resource}: {} GET/LIST requests by sts-guard in the benchmark's namespaces over {rounds} sts-guard phases ({:.0} s, {} writes per phase)",
            n - before[resource],
            guard_time.as_secs_f64(),
            count * SHAPES.len()
        );
    }
    println!(
        "- null webhook answered {} AdmissionReviews",
        null.served.load(Ordering::Relaxed)
    );
    Ok(())
}

/// `count` writes of `shape` (after 10 unmeasured): their latencies.
async fn writes_of(
    api: &Api<StatefulSet>,
    shape: &Shape,
    count: usize,
    round: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(count);
    let tag = random_suffix(4);
    for i in 0..count + 10 {
        let started = Instant::now();
        if shape.update {
            let patch =
                json!({"metadata": {"annotations": {"bench": format!("{round}-{tag}-{i}")}}});
            api.patch("updated", &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        } else {
            let sts = statefulset(&format!("s-{tag}-{i}"), shape.replicas);
            api.create(&PostParams::default(), &sts).await?;
        }
        if i >= 10 {
            times.push(started.elapsed());
        }
    }
    if !shape.update {
        // Not measured; DELETE is not sent to the webhooks.
        api.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("bench=create"),
        )
        .await?;
    }
    Ok(times)
}

/// Registers `phase`'s webhook (or none) and waits until the API server
/// calls exactly it.
fn switch(
    cp: &ControlPlane,
    phase: Phase,
    guard: &Webhook,
    null: &NullWebhook,
    ns: &str,
) -> anyhow::Result<()> {
    let names = Registration::shipped().names();
    let served = || {
        (
            guard.requests("validate"),
            null.served.load(Ordering::Relaxed) as f64,
        )
    };
    let probe = || {
        let sts = serde_json::to_string(&statefulset("probe", 0)).unwrap();
        cp.kubectl_with_input(&["create", "--dry-run=server", "-n", ns, "-f", "-"], &sts);
    };
    match phase {
        Phase::None => {
            cp.kubectl(&["delete", "--ignore-not-found", &names[0], &names[1]])
                .assert_exit(0);
            // Gone once two probes in a row reach neither webhook.
            let mut quiet = 0;
            wait_for(
                "no webhook called",
                Duration::from_secs(30),
                Duration::from_millis(100),
                || {
                    let before = served();
                    probe();
                    quiet = if served() == before { quiet + 1 } else { 0 };
                    Ok(quiet >= 2)
                },
            )
        }
        Phase::Null | Phase::StsGuard => {
            let (url, ca) = match phase {
                Phase::Null => (null.url.clone(), null.ca.clone()),
                _ => (guard.url.clone(), guard.ca.clone()),
            };
            let list = Registration::shipped().configurations(cp, &url, &std::fs::read(ca)?)?;
            let out = cp.kubectl_with_input(&["apply", "-f", "-"], &list.to_string());
            if out.code != 0 {
                bail!("registering {phase:?}\n{out}");
            }
            wait_for(
                &format!("{phase:?} called"),
                Duration::from_secs(30),
                Duration::from_millis(100),
                || {
                    let (g0, n0) = served();
                    probe();
                    let (g1, n1) = served();
                    Ok(match phase {
                        Phase::Null => n1 > n0 && g1 == g0,
                        _ => g1 > g0 && n1 == n0,
                    })
                },
            )
        }
    }
}

fn report(
    count: usize,
    rounds: usize,
    latencies: &BTreeMap<(Phase, usize), Vec<Duration>>,
    writes: u64,
) {
    let version = run(
        std::process::Command::new(
            support::control_plane::control_plane_bin_dir()
                .unwrap_or_default()
                .join("kube-apiserver"),
        )
        .arg("--version"),
        None,
    );
    println!(
        "{count} writes per shape and phase in each of {rounds} rounds ({writes} in all), one keep-alive connection; {} cores; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        version.stdout.trim()
    );
    println!();
    println!(
        "| shape | no webhook p50 ms | null webhook adds p50 ms | sts-guard adds p50 ms | ratio | sts-guard p90 / p99 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, shape) in SHAPES.iter().enumerate() {
        let pct = |phase, q| percentile(&latencies[&(phase, i)], q);
        let base = pct(Phase::None, 0.5);
        let null = pct(Phase::Null, 0.5) - base;
        let guard = pct(Phase::StsGuard, 0.5) - base;
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2}× | {:.2} / {:.2} |",
            shape.name,
            base,
            null,
            guard,
            guard / null,
            pct(Phase::StsGuard, 0.9),
            pct(Phase::StsGuard, 0.99)
        );
    }
}

/// The `q` quantile of `times`, in milliseconds.
fn percentile(times: &[Duration], q: f64) -> f64 {
    let mut ms: Vec<f64> = times.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    ms[((ms.len() - 1) as f64 * q).round() as usize]
}

/// GETs and LISTs of `resource` in `ns` made by anything but kubectl.
fn lookups(cp: &ControlPlane, resource: &str, ns: &str) -> usize {
    cp.audited(resource, ns)
        .iter()
        .filter(|verb| matches!(verb.as_str(), "get" | "list"))
        .count()
}

const BUDGET: &str = "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec:
  maxUnavailable: 1
  selector: {matchLabels: {app: web}}
";

fn service(name: &str, headless: bool) -> String {
    let cluster_ip = if headless { "  clusterIP: None\n" } else { "" };
    format!(
        "apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
{cluster_ip}  selector: {{app: web}}
  ports: [{{name: http, port: 8000}}]
"
    )
}

/// A StatefulSet every rule passes (given its Service and budget): three
/// containers with both probes and a startup probe where liveness is short.
fn statefulset(name: &str, replicas: u32) -> StatefulSet {
    let container = |name: &str, port: i32| {
        json!({
            "name": name, "image": "registry.k8s.io/pause:3.10",
            "ports": [{"name": format!("p-{name}"), "containerPort": port}],
            "startupProbe": {"tcpSocket": {"port": port}, "failureThreshold": 30, "periodSeconds": 2},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 10},
            "readinessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 5},
        })
    };
    let value: Value = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "labels": {"bench": "create"}},
        "spec": {
            "serviceName": "web", "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [container("app", 8000), container("metrics", 9100), container("log", 9200)]},
            },
        },
    });
    serde_json::from_value(value).expect("a valid StatefulSet")
}

/// Answers every AdmissionReview `allowed: true` with its uid, over TLS,
/// on a thread of its own; counts what it answered.
struct NullWebhook {
    url: String,
    ca: std::path::PathBuf,
    served: Arc<AtomicU64>,
}

impl NullWebhook {
    fn start(cp: &ControlPlane) -> anyhow::Result<NullWebhook> {
        let certs = cp.work().join("null-webhook-certs");
        let out = run(
            std::process::Command::new(sts_guard_bin())
                .args(["certs", "--dns", "localhost", "--ip", "127.0.0.1", "--out"])
                .arg(&certs),
            None,
        );
        if out.code != 0 {
            bail!("sts-guard certs failed\n{out}");
        }
        sts_guard::install_crypto_provider();
        let chain: Vec<CertificateDer> =
            CertificateDer::pem_file_iter(certs.join("tls.crt"))?.collect::<Result<_, _>>()?;
        let key = PrivateKeyDer::from_pem_file(certs.join("tls.key"))?;
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr: SocketAddr = listener.local_addr()?;
        let served = Arc::new(AtomicU64::new(0));
        let counter = served.clone();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((tcp, _)) = listener.accept().await else { continue };
                    let _ = tcp.set_nodelay(true);
                    let (acceptor, counter) = (acceptor.clone(), counter.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else { return };
                        let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                            let counter = counter.clone();
                            async move {
                                let body = req.into_body().collect().await?.to_bytes();
                                let uid = serde_json::from_slice::<Value>(&body)
                                    .ok()
                                    .and_then(|r| r["request"]["uid"].as_str().map(str::to_string))
                                    .unwrap_or_default();
                                counter.fetch_add(1, Ordering::Relaxed);
                                let answer = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                                    "response": {"uid": uid, "allowed": true}});
                                Ok::<_, hyper::Error>(hyper::Response::new(Full::new(Bytes::from(answer.to_string()))))
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            });
        });
        Ok(NullWebhook {
            url: format!("https://{addr}"),
            ca: certs.join("ca.crt"),
            served,
        })
    }
}
