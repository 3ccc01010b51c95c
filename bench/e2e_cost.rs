//! What sts-guard adds to a StatefulSet write through a real kube-apiserver,
//! beside what a null webhook adds (one that answers `allowed: true` with
//! the uid and reads nothing), registered the same way (deploy/'s
//! mutating and validating configurations): the latency the client sees,
//! in the shapes users have.
//!
//! Five arms take turns write by write (the order rotating): a
//! StatefulSet labelled for no webhook, one for the null webhook, one for
//! sts-guard, one for the ValidatingAdmissionPolicies `sts-guard policy
//! vap` generates (no webhook) and one for sts-guard and those policies
//! together (all registered at once, each for its own label), so what the
//! API server and etcd themselves vary falls on all of them alike.
//! Each round sends COUNT writes of every shape per arm over one
//! keep-alive connection (a kube client); the p50, p90 and p99 of each arm
//! and shape are pooled over the rounds. The added latency is an arm's p50
//! minus the no-webhook p50; the ratio is sts-guard's added over the null
//! webhook's. sts-guard runs with `mode: audit`, so every shape is
//! admitted (a denial is not a write) while every rule and lookup still
//! runs. Also shown: the Service and PodDisruptionBudget requests
//! sts-guard made (the API server's audit log), each webhook's CPU time
//! per AdmissionReview, and the per-call latency the API server measured.
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

use support::Client;
use support::control_plane::{
    ControlPlane, block_on, free_ports, random_suffix, run, sts_guard_bin, wait_for,
};
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
    /// The ValidatingAdmissionPolicies `sts-guard policy vap` generates, no
    /// webhook.
    Vap,
    /// sts-guard's webhook and the generated policies together.
    Both,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("null-webhook") if args.len() == 5 => null_webhook(&args[2], &args[3], &args[4]),
        _ => bench(),
    };
    match result {
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
    // Both webhooks registered at once, each for the StatefulSets labelled
    // for it: writes to no webhook, the null webhook and sts-guard take
    // turns, one by one, so the API server's and etcd's own noise falls on
    // all three alike.
    for phase in [Phase::Null, Phase::StsGuard, Phase::Both] {
        register(&cp, phase, &guard, &null)?;
    }
    apply_generated_policies(&cp, &policy)?;
    // The objects the UPDATE shapes update, one per arm.
    for (shape, ns) in SHAPES.iter().zip(&namespaces).filter(|(s, _)| s.update) {
        for phase in PHASES {
            let sts = statefulset(&format!("updated-{}", phase.label()), shape.replicas, phase);
            rt.block_on(
                Api::<StatefulSet>::namespaced(client.clone(), ns)
                    .create(&PostParams::default(), &sts),
            )?;
        }
    }

    let lookups_before = lookup_counts(&cp, &namespaces);
    let cpu_before = (cpu_time(null.pid), cpu_time(guard.pid));
    let reviews_before = (
        null.served()?,
        guard.requests("validate") + guard.requests("mutate"),
    );
    let calls_before = webhook_calls(&cp);
    let started = Instant::now();
    let mut latencies: BTreeMap<(Phase, usize), Vec<Duration>> = BTreeMap::new();
    for round in 0..rounds {
        for (i, (shape, ns)) in SHAPES.iter().zip(&namespaces).enumerate() {
            let api = Api::<StatefulSet>::namespaced(client.clone(), ns);
            for (phase, times) in rt.block_on(writes_of(&api, shape, count, round))? {
                latencies.entry((phase, i)).or_default().extend(times);
            }
        }
    }
    let elapsed = started.elapsed();
    let cpu = (
        cpu_time(null.pid) - cpu_before.0,
        cpu_time(guard.pid) - cpu_before.1,
    );
    let reviews = (
        null.served()? - reviews_before.0,
        guard.requests("validate") + guard.requests("mutate") - reviews_before.1,
    );
    let calls = webhook_calls(&cp);
    let lookups_after = lookup_counts(&cp, &namespaces);

    report(count, rounds, &latencies);
    println!();
    for (resource, n) in &lookups_after {
        println!(
            "- {resource}: {} GET/LIST requests by sts-guard in the benchmark's namespaces ({:.0} s, {} writes through sts-guard)",
            n - lookups_before[resource],
            elapsed.as_secs_f64(),
            count * rounds * SHAPES.len()
        );
    }
    for (who, prefix, cpu, reviews) in [
        ("null webhook", "null-", cpu.0, reviews.0),
        ("sts-guard", "", cpu.1, reviews.1),
    ] {
        let (n, seconds) = (
            calls.get(prefix).map_or(0.0, |c| c.0) - calls_before.get(prefix).map_or(0.0, |c| c.0),
            calls.get(prefix).map_or(0.0, |c| c.1) - calls_before.get(prefix).map_or(0.0, |c| c.1),
        );
        println!(
            "- {who}: {:.1} µs CPU time (user + system) per AdmissionReview ({reviews:.0} reviews, validate and mutate); the API server measured {:.3} ms per call on average ({n:.0} calls)",
            cpu.as_secs_f64() * 1e6 / reviews,
            seconds * 1e3 / n
        );
    }
    let (count, sum) = (
        guard.metric("sts_guard_admission_duration_seconds_count", &[]),
        guard.metric("sts_guard_admission_duration_seconds_sum", &[]),
    );
    println!(
        "- sts-guard's own time from a decoded body to an encoded answer: {:.1} µs on average ({count:.0} reviews)",
        sum * 1e6 / count
    );
    Ok(())
}

/// The arms of every write, in the order they take turns.
const PHASES: [Phase; 5] = [
    Phase::None,
    Phase::Null,
    Phase::StsGuard,
    Phase::Vap,
    Phase::Both,
];

impl Phase {
    /// The value of [`ARM_LABEL`] that sends a StatefulSet to this arm.
    fn label(self) -> &'static str {
        match self {
            Phase::None => "none",
            Phase::Null => "null",
            Phase::StsGuard => "sts-guard",
            Phase::Vap => "vap",
            Phase::Both => "both",
        }
    }
}

/// Applies the ValidatingAdmissionPolicies `policy` generates, their
/// bindings matching only the StatefulSets of the `vap` and `both` arms,
/// and waits until the API server enforces them: a probe binding (Deny,
/// for a probe label) denies a StatefulSet without a livenessProbe, then
/// goes.
fn apply_generated_policies(cp: &ControlPlane, policy: &std::path::Path) -> anyhow::Result<()> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
    let text = std::fs::read_to_string(policy)?;
    let policy = sts_guard::policy::Policy::from_yaml(&text, "bench policy")?;
    let arms = LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: ARM_LABEL.into(),
            operator: "In".into(),
            values: Some(vec![Phase::Vap.label().into(), Phase::Both.label().into()]),
        }]),
        ..LabelSelector::default()
    };
    let mut docs = Vec::new();
    for rule in sts_guard::vap::generate(&policy, "sts-guard", jiff::Timestamp::now()) {
        docs.push(serde_json::to_value(&rule.policy)?);
        for mut binding in rule.bindings {
            if let Some(resources) = binding
                .spec
                .as_mut()
                .and_then(|s| s.match_resources.as_mut())
            {
                resources.object_selector = Some(arms.clone());
            }
            docs.push(serde_json::to_value(&binding)?);
        }
    }
    docs.push(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "bench-probe"},
        "spec": {
            "policyName": "sts-guard-liveness-probe",
            "validationActions": ["Deny"],
            "matchResources": {"objectSelector": {"matchLabels": {ARM_LABEL: "vap-probe"}}},
        },
    }));
    let list = json!({"apiVersion": "v1", "kind": "List", "items": docs});
    let out = cp.kubectl_with_input(&["apply", "-f", "-"], &list.to_string());
    if out.code != 0 {
        bail!("applying the generated policies\n{out}");
    }
    let ns = format!("probe-{}", random_suffix(6));
    cp.kubectl(&["create", "namespace", &ns]).assert_exit(0);
    let probe = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "probe", "labels": {ARM_LABEL: "vap-probe"}},
        "spec": {
            "serviceName": "probe", "selector": {"matchLabels": {"app": "probe"}},
            "template": {"metadata": {"labels": {"app": "probe"}},
                         "spec": {"containers": [{"name": "app", "image": "a"}]}},
        },
    });
    wait_for(
        "the generated policies enforced",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let out = cp.kubectl_with_input(
                &["create", "--dry-run=server", "-n", &ns, "-f", "-"],
                &probe.to_string(),
            );
            Ok(out.code != 0 && out.stderr.contains("sts-guard-liveness-probe"))
        },
    )?;
    cp.kubectl(&["delete", "validatingadmissionpolicybinding", "bench-probe"])
        .assert_exit(0);
    Ok(())
}

/// Which webhook a StatefulSet goes to: its configurations' objectSelector.
const ARM_LABEL: &str = "e2e.sts-guard.io/webhook";

/// GET/LIST requests sts-guard made in `namespaces`, by resource.
fn lookup_counts(cp: &ControlPlane, namespaces: &[String]) -> BTreeMap<&'static str, usize> {
    ["services", "poddisruptionbudgets"]
        .into_iter()
        .map(|r| (r, namespaces.iter().map(|ns| lookups(cp, r, ns)).sum()))
        .collect()
}

/// `count` writes of `shape` per arm (after 10 unmeasured), the arms
/// taking turns write by write (the order rotating): each arm's latencies.
async fn writes_of(
    api: &Api<StatefulSet>,
    shape: &Shape,
    count: usize,
    round: usize,
) -> anyhow::Result<BTreeMap<Phase, Vec<Duration>>> {
    let mut times: BTreeMap<Phase, Vec<Duration>> = BTreeMap::new();
    let tag = random_suffix(4);
    for i in 0..count + 10 {
        let mut order = PHASES;
        order.rotate_left(i % PHASES.len());
        for phase in order {
            let started = Instant::now();
            if shape.update {
                let patch =
                    json!({"metadata": {"annotations": {"bench": format!("{round}-{tag}-{i}")}}});
                let name = format!("updated-{}", phase.label());
                api.patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await?;
            } else {
                let name = format!("s-{tag}-{}-{i}", phase.label());
                api.create(
                    &PostParams::default(),
                    &statefulset(&name, shape.replicas, phase),
                )
                .await?;
            }
            if i >= 10 {
                times.entry(phase).or_default().push(started.elapsed());
            }
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

/// Registers deploy/'s configurations for `phase`'s webhook, matching the
/// StatefulSets labelled for it (the null webhook's under other names, so
/// the API server's metrics tell the two apart), and waits until the API
/// server calls it.
fn register(
    cp: &ControlPlane,
    phase: Phase,
    guard: &Webhook,
    null: &NullWebhook,
) -> anyhow::Result<()> {
    let (url, ca) = match phase {
        Phase::Null => (null.url.clone(), null.ca.clone()),
        Phase::StsGuard | Phase::Both => (guard.url.clone(), guard.ca.clone()),
        Phase::None | Phase::Vap => bail!("no webhook for {phase:?}"),
    };
    let registration = Registration::only_labelled(phase.label());
    let mut list = registration.configurations(cp, &url, &std::fs::read(ca)?)?;
    if phase == Phase::Null {
        for cfg in list["items"].as_array_mut().unwrap() {
            for hook in cfg["webhooks"].as_array_mut().unwrap() {
                hook["name"] = json!(format!("null-{}", hook["name"].as_str().unwrap()));
            }
        }
    }
    let out = cp.kubectl_with_input(&["apply", "-f", "-"], &list.to_string());
    if out.code != 0 {
        bail!("registering {phase:?}\n{out}");
    }
    let ns = format!("probe-{}", random_suffix(6));
    cp.kubectl(&["create", "namespace", &ns]).assert_exit(0);
    let probe = serde_json::to_string(&statefulset("probe", 0, phase))?;
    let served = || match phase {
        Phase::Null => null.served().unwrap_or(-1.0),
        _ => guard.requests("validate"),
    };
    wait_for(
        &format!("{phase:?} called"),
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let before = served();
            cp.kubectl_with_input(
                &["create", "--dry-run=server", "-n", &ns, "-f", "-"],
                &probe,
            );
            Ok(served() > before)
        },
    )
}

fn report(count: usize, rounds: usize, latencies: &BTreeMap<(Phase, usize), Vec<Duration>>) {
    let writes: usize = latencies.values().map(Vec::len).sum();
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
        "{count} writes per shape and arm in each of {rounds} rounds ({writes} measured), the arms taking turns write by write, one keep-alive connection; {} cores; {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        version.stdout.trim()
    );
    println!();
    println!(
        "| shape | no webhook p50 ms | null webhook adds p50 ms | sts-guard adds p50 ms | ratio | sts-guard p90 / p99 ms | generated VAPs add p50 ms | sts-guard + VAPs add p50 ms |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (i, shape) in SHAPES.iter().enumerate() {
        let pct = |phase, q| percentile(&latencies[&(phase, i)], q);
        let base = pct(Phase::None, 0.5);
        let null = pct(Phase::Null, 0.5) - base;
        let guard = pct(Phase::StsGuard, 0.5) - base;
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2}× | {:.2} / {:.2} | {:.2} | {:.2} |",
            shape.name,
            base,
            null,
            guard,
            guard / null,
            pct(Phase::StsGuard, 0.9),
            pct(Phase::StsGuard, 0.99),
            pct(Phase::Vap, 0.5) - base,
            pct(Phase::Both, 0.5) - base,
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
fn statefulset(name: &str, replicas: u32, phase: Phase) -> StatefulSet {
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
        "metadata": {"name": name, "labels": {"bench": "create", ARM_LABEL: phase.label()}},
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

/// `e2e-cost null-webhook ADDR CERT KEY`: answers every AdmissionReview
/// `allowed: true` with its uid, over TLS, and `GET` with how many it
/// answered. A process of its own, like sts-guard, so the two are
/// compared alike (and their CPU time read alike).
fn null_webhook(addr: &str, cert: &str, key: &str) -> anyhow::Result<()> {
    sts_guard::install_crypto_provider();
    let chain: Vec<CertificateDer> =
        CertificateDer::pem_file_iter(cert)?.collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(key)?;
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let served = Arc::new(AtomicU64::new(0));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let _ = tcp.set_nodelay(true);
            let (acceptor, served) = (acceptor.clone(), served.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let served = served.clone();
                    async move {
                        if req.method() == hyper::Method::GET {
                            let count = served.load(Ordering::Relaxed).to_string();
                            return Ok(hyper::Response::new(Full::new(Bytes::from(count))));
                        }
                        let body = req.into_body().collect().await?.to_bytes();
                        let uid = serde_json::from_slice::<Value>(&body)
                            .ok()
                            .and_then(|r| r["request"]["uid"].as_str().map(str::to_string))
                            .unwrap_or_default();
                        served.fetch_add(1, Ordering::Relaxed);
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
    })
}

/// The null webhook process, as the benchmark sees it.
struct NullWebhook {
    pid: u32,
    addr: SocketAddr,
    url: String,
    ca: std::path::PathBuf,
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
        let addr: SocketAddr = ([127, 0, 0, 1], free_ports(1)[0]).into();
        let pid = cp.spawn(
            "null-webhook",
            std::process::Command::new(std::env::current_exe()?)
                .arg("null-webhook")
                .arg(addr.to_string())
                .arg(certs.join("tls.crt"))
                .arg(certs.join("tls.key")),
        )?;
        let null = NullWebhook {
            pid,
            addr,
            url: format!("https://{addr}"),
            ca: certs.join("ca.crt"),
        };
        wait_for(
            "the null webhook",
            Duration::from_secs(10),
            Duration::from_millis(50),
            || Ok(null.served().is_ok()),
        )?;
        Ok(null)
    }

    /// AdmissionReviews it answered so far.
    fn served(&self) -> anyhow::Result<f64> {
        block_on(async {
            let mut client = Client::connect(self.addr, &self.ca).await?;
            let (_, body) = client.get("/").await.map_err(|e| anyhow::anyhow!("{e}"))?;
            Ok(String::from_utf8_lossy(&body).parse()?)
        })
    }
}

/// Calls the API server has made so far to the webhooks named
/// `<prefix>validate.sts-guard.io` and `<prefix>mutate.sts-guard.io`, and
/// the seconds they took, as it measured them
/// (`apiserver_admission_webhook_admission_duration_seconds`), by prefix
/// (`""` for sts-guard, `"null-"` for the null webhook).
fn webhook_calls(cp: &ControlPlane) -> BTreeMap<&'static str, (f64, f64)> {
    let out = cp.kubectl(&["get", "--raw", "/metrics"]);
    let sample = |family: &str, prefix: &str| -> f64 {
        out.stdout
            .lines()
            .filter(|l| l.starts_with(family))
            .filter(|l| {
                ["validate", "mutate"]
                    .iter()
                    .any(|w| l.contains(&format!("name=\"{prefix}{w}.sts-guard.io\"")))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    ["", "null-"]
        .into_iter()
        .map(|prefix| {
            (
                prefix,
                (
                    sample(
                        "apiserver_admission_webhook_admission_duration_seconds_count{",
                        prefix,
                    ),
                    sample(
                        "apiserver_admission_webhook_admission_duration_seconds_sum{",
                        prefix,
                    ),
                ),
            )
        })
        .collect()
}

/// CPU time (user + system) the process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces), from the
    // state on: utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    // Clock ticks; 100 per second on Linux (USER_HZ).
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}
