//! Scale benchmark: what sts-guard's memory and latency follow as a cluster
//! grows (BENCHMARKS.md, "Scale"). On the e2e tests' control plane
//! (tests/support: etcd + kube-apiserver on loopback, started with
//! `--service-cluster-ip-range=10.0.0.0/16`, since the default `/24` holds
//! 254 ClusterIPs), for each cluster size, with the objects created BEFORE
//! the webhook starts, and for two builds (old and new):
//!
//! - `serve`: seconds from spawn to the first 200 on /readyz (the watch
//!   cache synced), VmRSS 2 s after that, p50/p99 of /validate answered
//!   from the cache (oha at a fixed rate, one body; and a pass of REVIEWS
//!   different reviews naming as many different headless Services over one
//!   keep-alive connection, each checked to be allowed), VmRSS after that
//!   load and VmHWM, and the API requests made per admission (the deltas of
//!   `sts_guard_service_lookups_total{path="api"}` and
//!   `sts_guard_disruption_budget_lookups_total{path="api"}` over the load,
//!   and the API server's own count of Service GETs and PodDisruptionBudget
//!   LISTs);
//! - `audit`: wall time and peak RSS (`/usr/bin/time -v`, "Maximum
//!   resident set size"), median of AUDIT_RUNS runs, over every
//!   StatefulSet and Service.
//!
//! Steps grow one cluster: each adds the Services (and StatefulSets) the
//! previous step lacks. Objects are numbered, so steps always agree on
//! names:
//!
//! - Service i: namespace `scale-NN` (NN = i mod NAMESPACES), name
//!   `svc-iiiii`; headless (`clusterIP: None`) when i mod 3 == 0, else a
//!   ClusterIP Service; labels as Helm writes them; every other one carries
//!   a `kubectl.kubernetes.io/last-applied-configuration` annotation (the
//!   whole manifest again, as `kubectl apply` does);
//! - StatefulSet j: `db-jjjjj`, compliant (liveness, readiness and startup
//!   probes on every container, ports declared), naming headless Service 3j
//!   and selecting its labels, with a PodDisruptionBudget `db-jjjjj`
//!   selecting its pods; min(STATEFULSETS, headless Services) of them.
//!
//! They are created by WORKERS parallel requests over keep-alive
//! connections (a kube client). Before every measured run it waits, up to
//! QUIET_TIMEOUT seconds, until no build or fuzzer runs (a command line
//! holding `rustc`, `cargo `, `libfuzzer` or `fuzz/run`, unless it is a
//! `flock` still waiting for its lock); each row says whether the machine
//! was quiet then, and in how many of the once-a-second samples taken
//! during the run a build or fuzzer ran.
//!
//!   scale [SIZE...]           Services per step (default 100 1000 10000 20000 50000)
//!   scale report RESULTS.jsonl    the Markdown report of earlier results
//!
//! Built as the example `scale`; bench/scale.sh builds the two sts-guard
//! builds and oha and runs it. Environment: OLD_BIN, NEW_BIN (required),
//! OLD_REV, NEW_REV (their labels in the report), OHA (required),
//! STATEFULSETS=5000 NAMESPACES=50 WORKERS=8 RATE=500 CONNS=4
//! DURATION=30s OHA_RUNS=1 REVIEWS=2000 AUDIT_RUNS=3 QUIET_TIMEOUT=1800,
//! CP_BIN_DIR. Prints the Markdown report; everything (results.jsonl,
//! report.md, oha's JSON, bodies, logs) is kept in
//! target/bench-scale/<date>/.

#[path = "../benches/support/bodies.rs"]
mod bodies;
#[path = "common.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use http_body_util::BodyExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

use common::{env_or, note};
use support::Client;
use support::control_plane::{ControlPlane, Options, free_ports, http_get, repo_root};
use support::webhook::metric_sum;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("report") if args.len() == 2 => report_file(Path::new(&args[1])),
        Some("report") => Err(anyhow::anyhow!("usage: scale report RESULTS.jsonl")),
        _ => bench(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn env_required(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .with_context(|| format!("{name} is not set (bench/scale.sh sets it)"))
}

struct Settings {
    statefulsets: usize,
    namespaces: usize,
    workers: usize,
    rate: u32,
    conns: u32,
    duration: String,
    oha_runs: usize,
    reviews: usize,
    audit_runs: usize,
    quiet_timeout: Duration,
    oha: PathBuf,
    out: PathBuf,
}

/// One build under test: `old` or `new`.
struct Build {
    label: &'static str,
    rev: String,
    bin: PathBuf,
}

fn bench(args: &[String]) -> anyhow::Result<()> {
    let sizes: Vec<usize> = if args.is_empty() {
        vec![100, 1000, 10000, 20000, 50000]
    } else {
        args.iter()
            .map(|a| a.parse().with_context(|| format!("SIZE {a:?}")))
            .collect::<anyhow::Result<_>>()?
    };
    let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    // 2026-12-06T22:30:00Z -> 20261206-223000
    let digits: String = started.chars().filter(char::is_ascii_digit).collect();
    let out =
        repo_root()
            .join("target/bench-scale")
            .join(format!("{}-{}", &digits[..8], &digits[8..14]));
    fs::create_dir_all(&out)?;
    let s = Settings {
        statefulsets: env_or("STATEFULSETS", 5000)?,
        namespaces: env_or("NAMESPACES", 50)?,
        workers: env_or("WORKERS", 8)?,
        rate: env_or("RATE", 500)?,
        conns: env_or("CONNS", 4)?,
        duration: env_or("DURATION", "30s".to_string())?,
        oha_runs: env_or("OHA_RUNS", 1)?,
        reviews: env_or("REVIEWS", 2000)?,
        audit_runs: env_or("AUDIT_RUNS", 3)?,
        quiet_timeout: Duration::from_secs(env_or("QUIET_TIMEOUT", 1800)?),
        oha: PathBuf::from(env_required("OHA")?),
        out,
    };
    let builds = [
        Build {
            label: "old",
            rev: env_or("OLD_REV", "old".to_string())?,
            bin: PathBuf::from(env_required("OLD_BIN")?),
        },
        Build {
            label: "new",
            rev: env_or("NEW_REV", "new".to_string())?,
            bin: PathBuf::from(env_required("NEW_BIN")?),
        },
    ];
    if !Path::new("/usr/bin/time").is_file() {
        bail!("/usr/bin/time (GNU time) is required: apt-get install time");
    }

    let cp = ControlPlane::start_with(&Options {
        apiserver_flags: vec!["--service-cluster-ip-range=10.0.0.0/16".to_string()],
        // Every create would be a line: 50,000 Services are 50 MB of log.
        audit_log: false,
        // No controllers: the objects are only read.
        nodes: None,
    })?;
    let result = steps(&cp, &s, &builds, &sizes);
    // The logs (etcd, kube-apiserver, each serve) beside the results.
    let logs = s.out.join("logs");
    let _ = fs::create_dir_all(&logs);
    if let Ok(dir) = fs::read_dir(cp.work().join("logs")) {
        for entry in dir.flatten() {
            let _ = fs::copy(entry.path(), logs.join(entry.file_name()));
        }
    }
    result
}

fn steps(cp: &ControlPlane, s: &Settings, builds: &[Build], sizes: &[usize]) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = rt.block_on(cp.client());
    let certs = s.out.join("certs");
    let out = support::control_plane::run(
        Command::new(&builds[1].bin)
            .args(["certs", "--dns", "localhost", "--ip", "127.0.0.1", "--out"])
            .arg(&certs),
        None,
    );
    if out.code != 0 {
        bail!("sts-guard certs failed\n{out}");
    }
    let machine = machine();
    let apiserver_version = support::control_plane::run(
        Command::new(support::control_plane::control_plane_bin_dir()?.join("kube-apiserver"))
            .arg("--version"),
        None,
    )
    .stdout
    .split_whitespace()
    .nth(1)
    .unwrap_or("?")
    .to_string();
    note(&format!(
        "{machine}; kube-apiserver {apiserver_version}; old {} ({}), new {} ({})",
        builds[0].rev,
        builds[0].bin.display(),
        builds[1].rev,
        builds[1].bin.display()
    ));
    let typical: Value = serde_json::from_slice(&bodies::body("typical-validate"))?;
    let results_path = s.out.join("results.jsonl");
    let mut results = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&results_path)?;

    for &size in sizes {
        let headless = size.div_ceil(3);
        let sts = headless.min(s.statefulsets);
        note(&format!(
            "step: {size} Services ({headless} headless), {sts} StatefulSets"
        ));
        let populated = rt.block_on(populate(&client, size, sts, s.namespaces, s.workers))?;
        note(&format!("populated: {populated}"));
        let bodies_dir = s.out.join(format!("bodies-{size}"));
        write_bodies(&bodies_dir, &typical, sts, s.reviews, s.namespaces)?;
        std::thread::sleep(Duration::from_secs(5)); // the API server and etcd settle
        for build in builds {
            let quiet = wait_quiet(s.quiet_timeout);
            let load = fs::read_to_string("/proc/loadavg")?
                .split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ");
            note(&format!("{}: serve at {size}", build.label));
            let busy = Busy::start();
            let serve = measure_serve(cp, &rt, &client, s, build, size, &bodies_dir, &certs)?;
            let busy_serve = busy.stop();
            let quiet_audit = wait_quiet(s.quiet_timeout);
            note(&format!("{}: audit at {size}", build.label));
            let busy = Busy::start();
            let audit = measure_audit(cp, s, &build.bin)?;
            let busy_audit = busy.stop();
            let oha = oha_summary(s, build.label, size)?;
            let row = json!({
                "size": size, "headless": headless, "statefulsets": sts,
                "build": build.label, "rev": build.rev,
                "ready_s": serve.ready_s, "rss_sync_kib": serve.rss_sync_kib,
                "rss_load_kib": serve.rss_load_kib, "hwm_kib": serve.hwm_kib,
                "oha": oha, "varied": serve.varied,
                "api_lookups": serve.api_lookups, "cache_lookups": serve.cache_lookups,
                "apiserver_service_gets": serve.apiserver_service_gets,
                "budget_api_lookups": serve.budget_api_lookups,
                "apiserver_pdb_lists": serve.apiserver_pdb_lists,
                "audit_s": audit.seconds, "audit_rss_kib": audit.rss_kib,
                "audit_exit": audit.exit, "audit_all": audit.all,
                // As before: whether the machine was quiet when the build's
                // serve run started (the audit's wait is also in the note).
                "quiet": if quiet && quiet_audit { "yes" } else { "no" }, "load": load,
                "busy_serve": busy_serve, "busy_audit": busy_audit,
            });
            writeln!(results, "{row}")?;
            eprintln!("{row}");
        }
    }

    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let date = format!("{} {} UTC", &date[..10], &date[11..16]);
    let header = format!(
        "{date}; {machine}; kube-apiserver {apiserver_version}; old = {}, new = {}; oha {} req/s, {} connections, {}, latency-corrected; {} varied reviews over one connection; audit median of {}",
        builds[0].rev, builds[1].rev, s.rate, s.conns, s.duration, s.reviews, s.audit_runs
    );
    let report = format!("{header}\n\n{}\n", report(&read_results(&results_path)?));
    print!("{report}");
    fs::write(s.out.join("report.md"), report)?;
    note(&format!("kept in {}", s.out.display()));
    Ok(())
}

/// "2 × <model>, 24 GiB, kernel <release>"
fn machine() -> String {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(": ")
                .map(|(_, m)| m)
        })
        .unwrap_or("?");
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: f64 = meminfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("MemTotal:")?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0.0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} × {model}, {:.0} GiB, kernel {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        mem_kib / 1_048_576.0,
        kernel.trim()
    )
}

// ---- the quiet machine ---------------------------------------------------------

/// What a build or fuzzer's command line holds (as `pgrep -f
/// 'rustc|cargo |libfuzzer|fuzz/run'` matched before).
const BUSY: [&str; 4] = ["rustc", "cargo ", "libfuzzer", "fuzz/run"];

/// "PID command line" of each build or fuzzer running now. A `flock`
/// waiting to start one (how builds share this machine) runs nothing yet
/// and does not count.
fn builds() -> Vec<String> {
    let me = std::process::id().to_string();
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(raw) = fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // `flock LOCK cargo ...`, also behind `timeout`: the command it
        // starts once it holds the lock is a process of its own.
        let waits_for_lock = args.iter().any(|a| a.rsplit('/').next() == Some("flock"));
        let line = args.join(" ");
        if !waits_for_lock && BUSY.iter().any(|b| line.contains(b)) {
            found.push(format!("{pid} {line}"));
        }
    }
    found
}

fn builds_running() -> bool {
    !builds().is_empty()
}

/// Waits up to `timeout` until no build or fuzzer runs; false when it
/// still did (the run measures anyway).
fn wait_quiet(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut said = false;
    while builds_running() {
        if Instant::now() >= deadline {
            let which: Vec<String> = builds()
                .into_iter()
                .take(3)
                .map(|l| l.chars().take(120).collect())
                .collect();
            note(&format!(
                "still busy after {}s; measuring anyway: {}",
                timeout.as_secs(),
                which.join(";")
            ));
            return false;
        }
        if !said {
            note(&format!(
                "waiting for builds/fuzzers to finish (up to {}s)",
                timeout.as_secs()
            ));
            said = true;
        }
        std::thread::sleep(Duration::from_secs(5));
    }
    true
}

/// Once a second, whether a build or fuzzer runs, over a measured run.
struct Busy {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, usize)>,
}

impl Busy {
    fn start() -> Busy {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut busy, mut samples) = (0, 0);
            while !flag.load(Ordering::Relaxed) {
                busy += usize::from(builds_running());
                samples += 1;
                std::thread::sleep(Duration::from_secs(1));
            }
            (busy, samples)
        });
        Busy { stop, thread }
    }

    /// "busy/samples"
    fn stop(self) -> String {
        self.stop.store(true, Ordering::Relaxed);
        let (busy, samples) = self.thread.join().unwrap_or((0, 0));
        format!("{busy}/{samples}")
    }
}

// ---- the cluster ---------------------------------------------------------------

fn ns_of(i: usize, namespaces: usize) -> String {
    format!("scale-{:02}", i % namespaces)
}

fn svc_name(i: usize) -> String {
    format!("svc-{i:05}")
}

fn selector(i: usize) -> Value {
    json!({"app.kubernetes.io/name": svc_name(i), "app.kubernetes.io/instance": format!("{}-prod", svc_name(i))})
}

/// `a` with the keys of `b` added.
fn merged(a: &Value, b: Value) -> Value {
    let mut a = a.clone();
    if let (Some(a), Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

const COMPONENTS: [&str; 4] = ["api", "db", "cache", "worker"];

fn service(i: usize, namespaces: usize) -> Value {
    let (name, ns) = (svc_name(i), ns_of(i, namespaces));
    let labels = merged(
        &selector(i),
        json!({
            "app.kubernetes.io/version": format!("1.{}.{}", i % 17, i % 5),
            "app.kubernetes.io/component": COMPONENTS[i % 4],
            "app.kubernetes.io/part-of": format!("team-{:02}", i % 23),
            "app.kubernetes.io/managed-by": "Helm",
            "helm.sh/chart": format!("{name}-{}.{}.0", i % 7, i % 11),
        }),
    );
    let mut spec = json!({
        "selector": selector(i),
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"},
                  {"name": "metrics", "port": 9090, "targetPort": 9090, "protocol": "TCP"}],
    });
    if i.is_multiple_of(3) {
        spec["clusterIP"] = json!("None");
        spec["publishNotReadyAddresses"] = json!(true);
    }
    let mut obj = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns, "labels": labels,
                     "annotations": {"meta.helm.sh/release-name": format!("{name}-prod"),
                                     "meta.helm.sh/release-namespace": ns}},
        "spec": spec,
    });
    if i.is_multiple_of(2) {
        let applied = format!("{obj}\n");
        obj["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
            json!(applied);
    }
    obj
}

fn probe(port: u16, path: Option<&str>) -> Value {
    let mut p = json!({"periodSeconds": 10, "timeoutSeconds": 1, "failureThreshold": 3});
    match path {
        Some(path) => p["httpGet"] = json!({"path": path, "port": port}),
        None => p["tcpSocket"] = json!({"port": port}),
    }
    p
}

/// The liveness check, allowed 5 minutes before the first restart.
fn startup_probe(liveness: &Value) -> Value {
    merged(liveness, json!({"failureThreshold": 30}))
}

/// The PodDisruptionBudget of StatefulSet j.
fn budget(j: usize, namespaces: usize) -> Value {
    let h = 3 * j;
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
           "metadata": {"name": format!("db-{j:05}"), "namespace": ns_of(h, namespaces)},
           "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(h)}}})
}

/// StatefulSet j names headless Service 3j (so there are at most as many
/// StatefulSets as headless Services).
fn statefulset(j: usize, namespaces: usize) -> Value {
    let h = 3 * j;
    let labels = merged(&selector(h), json!({"app.kubernetes.io/component": "db"}));
    let containers = json!([
        {"name": "app", "image": format!("registry.example.com/team/app:{}.0", j % 9),
         "ports": [{"name": "http", "containerPort": 8080}],
         "livenessProbe": probe(8080, None), "readinessProbe": probe(8080, Some("/ready")),
         "startupProbe": startup_probe(&probe(8080, None)),
         "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}},
        {"name": "metrics", "image": "registry.example.com/exporter:0.15",
         "ports": [{"name": "metrics", "containerPort": 9090}],
         "livenessProbe": probe(9090, None), "readinessProbe": probe(9090, Some("/metrics")),
         "startupProbe": startup_probe(&probe(9090, None))},
    ]);
    json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": format!("db-{j:05}"), "namespace": ns_of(h, namespaces), "labels": labels},
        "spec": {
            "serviceName": svc_name(h), "replicas": 3,
            "selector": {"matchLabels": selector(h)},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": containers}},
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "10Gi"}}}}],
        },
    })
}

/// Creates Services 0..services and StatefulSets (with their budgets)
/// 0..statefulsets that do not exist yet (409 counts as done), `workers`
/// at a time; one JSON line: created, seconds, objects/s.
async fn populate(
    client: &kube::Client,
    services: usize,
    statefulsets: usize,
    namespaces: usize,
    workers: usize,
) -> anyhow::Result<Value> {
    let started = Instant::now();
    for n in 0..namespaces {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns_of(n, namespaces)}});
        post(client, "/api/v1/namespaces".to_string(), ns).await?;
    }
    // What a previous, smaller step (or an interrupted run) stored already.
    let have_svc = existing(Api::<Service>::all(client.clone())).await?;
    let have_sts = existing(Api::<StatefulSet>::all(client.clone())).await?;
    let have_pdb = existing(Api::<PodDisruptionBudget>::all(client.clone())).await?;
    let mut jobs = Vec::new();
    for i in 0..services {
        let ns = ns_of(i, namespaces);
        if !have_svc.contains(&(ns.clone(), svc_name(i))) {
            jobs.push((
                format!("/api/v1/namespaces/{ns}/services"),
                service(i, namespaces),
            ));
        }
    }
    for j in 0..statefulsets {
        let key = (ns_of(3 * j, namespaces), format!("db-{j:05}"));
        if !have_sts.contains(&key) {
            jobs.push((
                format!("/apis/apps/v1/namespaces/{}/statefulsets", key.0),
                statefulset(j, namespaces),
            ));
        }
        if !have_pdb.contains(&key) {
            jobs.push((
                format!("/apis/policy/v1/namespaces/{}/poddisruptionbudgets", key.0),
                budget(j, namespaces),
            ));
        }
    }
    let created: usize = futures::stream::iter(jobs)
        .map(|(path, obj)| post(client, path, obj))
        .buffer_unordered(workers)
        .try_fold(
            0,
            |n, status| async move { Ok(n + usize::from(status == 201)) },
        )
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let per_second = if seconds > 0.0 {
        created as f64 / seconds
    } else {
        0.0
    };
    Ok(json!({"created": created, "seconds": round_to(seconds, 1),
              "per_second": round_to(per_second, 1)}))
}

/// POSTs `obj` to `path`: 201 (created) or 409 (there already); retried
/// on connection errors and on 429/500/503/504.
async fn post(client: &kube::Client, path: String, obj: Value) -> anyhow::Result<u16> {
    let body = serde_json::to_vec(&obj)?;
    for attempt in 0..8u32 {
        let request = hyper::Request::post(&path)
            .header("content-type", "application/json")
            .body(kube::client::Body::from(body.clone()))?;
        let backoff = Duration::from_millis(200 * u64::from(attempt + 1));
        let response = match client.send(request).await {
            Ok(response) => response,
            Err(_) => {
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let status = response.status().as_u16();
        let data = response.into_body().collect().await.map(|b| b.to_bytes());
        match status {
            201 | 409 => return Ok(status),
            429 | 500 | 503 | 504 => tokio::time::sleep(backoff).await,
            _ => {
                let data = data.unwrap_or_default();
                bail!(
                    "POST {path}: HTTP {status}: {:.400}",
                    String::from_utf8_lossy(&data)
                )
            }
        }
    }
    bail!("POST {path}: gave up after retries")
}

/// (namespace, name) of the objects stored, all namespaces, metadata only.
async fn existing<K>(api: Api<K>) -> anyhow::Result<std::collections::HashSet<(String, String)>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut names = std::collections::HashSet::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(5000);
        if let Some(token) = &token {
            params = params.continue_token(token);
        }
        let list = api.list_metadata(&params).await?;
        names.extend(list.items.into_iter().map(|o| {
            (
                o.metadata.namespace.unwrap_or_default(),
                o.metadata.name.unwrap_or_default(),
            )
        }));
        token = list.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            return Ok(names);
        }
    }
}

// ---- AdmissionReviews ----------------------------------------------------------

/// The typical review in the place of StatefulSet `web-hhhhh` naming
/// headless Service `h`, startup probes added.
fn review_naming(base: &Value, h: usize, namespaces: usize, uid: usize) -> Value {
    let mut r = base.clone();
    let (ns, name) = (ns_of(h, namespaces), format!("web-{h:05}"));
    let labels = merged(&selector(h), json!({"app.kubernetes.io/component": "web"}));
    let req = &mut r["request"];
    req["uid"] = json!(format!("00000000-0000-4000-8000-{uid:012}"));
    req["namespace"] = json!(ns);
    req["name"] = json!(name);
    let obj = &mut req["object"];
    obj["metadata"]["namespace"] = json!(ns);
    obj["metadata"]["name"] = json!(name);
    obj["metadata"]["labels"] = labels.clone();
    obj["spec"]["serviceName"] = json!(svc_name(h));
    obj["spec"]["selector"] = json!({"matchLabels": selector(h)});
    obj["spec"]["template"]["metadata"]["labels"] = labels;
    if let Some(containers) = obj["spec"]["template"]["spec"]["containers"].as_array_mut() {
        for c in containers {
            if c.get("livenessProbe").is_some() && c.get("startupProbe").is_none() {
                c["startupProbe"] = startup_probe(&c["livenessProbe"]);
            }
        }
    }
    r
}

/// DIR/one.json: the review in the place of StatefulSet 0 (its headless
/// Service and budget exist); DIR/many.jsonl: `count` of them, one per
/// line, in the places of `count` different StatefulSets (shuffled with a
/// fixed seed; cycling when there are fewer).
fn write_bodies(
    dir: &Path,
    base: &Value,
    statefulsets: usize,
    count: usize,
    namespaces: usize,
) -> anyhow::Result<()> {
    fs::create_dir_all(dir)?;
    fs::write(
        dir.join("one.json"),
        review_naming(base, 0, namespaces, 0).to_string(),
    )?;
    let mut ids: Vec<usize> = (0..statefulsets).map(|j| 3 * j).collect();
    shuffle(&mut ids, 12);
    let mut many = String::new();
    for k in 0..count {
        let h = ids[k % ids.len()];
        many.push_str(&review_naming(base, h, namespaces, k + 1).to_string());
        many.push('\n');
    }
    fs::write(dir.join("many.jsonl"), many)?;
    Ok(())
}

/// Fisher-Yates with splitmix64 seeded by `seed`: the same order every run.
fn shuffle<T>(items: &mut [T], seed: u64) {
    let mut state = seed;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    for i in (1..items.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

// ---- serve ---------------------------------------------------------------------

struct ServeFigures {
    ready_s: f64,
    rss_sync_kib: u64,
    rss_load_kib: u64,
    hwm_kib: u64,
    varied: Value,
    api_lookups: i64,
    cache_lookups: i64,
    apiserver_service_gets: i64,
    budget_api_lookups: i64,
    apiserver_pdb_lists: i64,
}

/// The lookup counters of sts-guard and the API server, summed.
struct Counters {
    api: f64,
    cache: f64,
    gets: f64,
    budget_api: f64,
    lists: f64,
}

impl Counters {
    fn read(
        rt: &tokio::runtime::Runtime,
        client: &kube::Client,
        metrics: SocketAddr,
    ) -> anyhow::Result<Counters> {
        let (status, ours) = http_get(metrics, "/metrics")?;
        if status != 200 {
            bail!("GET /metrics: {status}");
        }
        let theirs =
            rt.block_on(client.request_text(hyper::Request::get("/metrics").body(Vec::new())?))?;
        let lookups = "sts_guard_service_lookups_total";
        let budgets = "sts_guard_disruption_budget_lookups_total";
        let requests = "apiserver_request_total";
        Ok(Counters {
            api: metric_sum(&ours, lookups, &[r#"path="api""#]),
            cache: metric_sum(&ours, lookups, &[r#"path="cache""#]),
            gets: metric_sum(
                &theirs,
                requests,
                &[r#"resource="services""#, r#"verb="GET""#],
            ),
            budget_api: metric_sum(&ours, budgets, &[r#"path="api""#]),
            lists: metric_sum(
                &theirs,
                requests,
                &[r#"resource="poddisruptionbudgets""#, r#"verb="LIST""#],
            ),
        })
    }
}

fn status_kib(pid: u32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)?
                .strip_prefix(':')?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

#[allow(clippy::too_many_arguments)]
fn measure_serve(
    cp: &ControlPlane,
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    s: &Settings,
    build: &Build,
    size: usize,
    bodies: &Path,
    certs: &Path,
) -> anyhow::Result<ServeFigures> {
    let ports = free_ports(2);
    let addr: SocketAddr = ([127, 0, 0, 1], ports[0]).into();
    let metrics: SocketAddr = ([127, 0, 0, 1], ports[1]).into();
    let ca = certs.join("ca.crt");
    let name = format!("serve-{}-{size}", build.label);
    let mut cmd = cp.command(&build.bin);
    cmd.env("RUST_LOG", "warn")
        .arg("serve")
        .arg("--cert")
        .arg(certs.join("tls.crt"))
        .arg("--key")
        .arg(certs.join("tls.key"))
        .arg("--listen")
        .arg(addr.to_string())
        .arg("--metrics-listen")
        .arg(metrics.to_string())
        .args(["--shutdown-delay", "0s"]);
    let started = Instant::now();
    let pid = cp.spawn(&name, &mut cmd)?;
    let figures = (|| {
        let ready_s = wait_ready(cp, rt, pid, addr, &ca, started, Duration::from_secs(600))
            .with_context(|| {
                format!(
                    "{} serve never became ready at {size}\n{}",
                    build.label,
                    cp.logs(20)
                )
            })?;
        std::thread::sleep(Duration::from_secs(2));
        let rss_sync_kib = status_kib(pid, "VmRSS");
        let before = Counters::read(rt, client, metrics)?;
        // Every admission looks its Service up once: the cache and api
        // counters together count the admissions. One review first: the
        // oha body is allowed (oha checks only the status).
        rt.block_on(load(addr, &ca, &bodies.join("one.json")))
            .with_context(|| format!("{}: the oha body is not allowed", build.label))?;
        let varied = rt
            .block_on(load(addr, &ca, &bodies.join("many.jsonl")))
            .with_context(|| format!("{}: varied load failed at {size}", build.label))?;
        oha(s, &ca, addr.port(), bodies, None)?;
        for run in 1..=s.oha_runs {
            let out = s.out.join(format!("oha-{}-{size}-{run}.json", build.label));
            oha(s, &ca, addr.port(), bodies, Some(&out))
                .with_context(|| format!("{}: oha failed at {size}", build.label))?;
        }
        let after = Counters::read(rt, client, metrics)?;
        std::thread::sleep(Duration::from_secs(1));
        let delta = |a: f64, b: f64| (a - b).round() as i64;
        Ok(ServeFigures {
            ready_s,
            rss_sync_kib,
            rss_load_kib: status_kib(pid, "VmRSS"),
            hwm_kib: status_kib(pid, "VmHWM"),
            varied,
            api_lookups: delta(after.api, before.api),
            cache_lookups: delta(after.cache, before.cache),
            apiserver_service_gets: delta(after.gets, before.gets),
            budget_api_lookups: delta(after.budget_api, before.budget_api),
            apiserver_pdb_lists: delta(after.lists, before.lists),
        })
    })();
    cp.stop_process(pid);
    figures
}

/// Polls /readyz every 5 ms: seconds from `started` to the first 200.
fn wait_ready(
    cp: &ControlPlane,
    rt: &tokio::runtime::Runtime,
    pid: u32,
    addr: SocketAddr,
    ca: &Path,
    started: Instant,
    timeout: Duration,
) -> anyhow::Result<f64> {
    let connector = support::tls_connector(ca);
    while started.elapsed() < timeout {
        if !cp.is_running(pid) {
            bail!("process {pid} exited before it was ready");
        }
        if rt.block_on(support::is_ready(addr, &connector)) {
            return Ok(round_to(started.elapsed().as_secs_f64(), 3));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    bail!("not ready before the deadline")
}

/// POSTs every body of `path` (one JSON per line) to /validate over one
/// keep-alive connection; fails unless each is allowed. Count, p50, p99,
/// mean ms, and how many answers carried warnings, with the first one.
async fn load(addr: SocketAddr, ca: &Path, path: &Path) -> anyhow::Result<Value> {
    let text = fs::read_to_string(path)?;
    let mut client = Client::connect(addr, ca).await?;
    let (mut times, mut warned, mut first_warning) = (Vec::new(), 0, Value::Null);
    for (k, body) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let started = Instant::now();
        let (status, data) = client
            .request("POST", "/validate", body.to_string())
            .await
            .map_err(|e| anyhow::anyhow!("review {k}: {e}"))?;
        let elapsed = started.elapsed();
        let answer: Value = if status == 200 {
            serde_json::from_slice(&data).unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        if answer["response"]["allowed"] != json!(true) {
            bail!(
                "review {k}: HTTP {status}: {:.400}",
                String::from_utf8_lossy(&data)
            );
        }
        if let Some(warnings) = answer["response"]["warnings"].as_array()
            && !warnings.is_empty()
        {
            warned += 1;
            if first_warning.is_null() {
                first_warning = warnings[0].clone();
            }
        }
        times.push(elapsed.as_secs_f64() * 1e3);
    }
    if times.is_empty() {
        bail!("no reviews in {}", path.display());
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        times[((p / 100.0 * (times.len() - 1) as f64).round() as usize).min(times.len() - 1)]
    };
    let mean = times.iter().sum::<f64>() / times.len() as f64;
    Ok(
        json!({"count": times.len(), "p50": round_to(pct(50.0), 3), "p99": round_to(pct(99.0), 3),
              "mean": round_to(mean, 3), "warned": warned, "first_warning": first_warning}),
    )
}

/// oha against /validate with one.json: a 2 s warm-up at saturation
/// (`out` None), or a measured run at the fixed rate, latency-corrected,
/// its JSON into `out`.
fn oha(
    s: &Settings,
    ca: &Path,
    port: u16,
    bodies: &Path,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let mut cmd = Command::new(&s.oha);
    cmd.arg("--no-tui");
    match out {
        None => cmd.args(["--output-format", "quiet", "-z", "2s"]),
        Some(_) => cmd
            .args(["--output-format", "json", "-z", &s.duration, "-q"])
            .arg(s.rate.to_string())
            .arg("--latency-correction"),
    };
    cmd.arg("-c")
        .arg(s.conns.to_string())
        .args(["-m", "POST", "-T", "application/json", "-D"])
        .arg(bodies.join("one.json"))
        .arg("--cacert")
        .arg(ca)
        .arg(format!("https://localhost:{port}/validate"))
        .stdin(Stdio::null());
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(s.out.join("oha.log"))?;
    match out {
        None => {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            cmd.status()?;
        }
        Some(out) => {
            cmd.stdout(fs::File::create(out)?).stderr(log);
            let status = cmd.status()?;
            if !status.success() {
                bail!("oha exited {status}");
            }
        }
    }
    Ok(())
}

/// The oha runs of `build` at `size`: every answer a 200 (requests cut by
/// the deadline aside); median p50/p99/p99.9 in ms, requests, each run.
fn oha_summary(s: &Settings, build: &str, size: usize) -> anyhow::Result<Value> {
    let mut runs = Vec::new();
    for run in 1..=s.oha_runs {
        let path = s.out.join(format!("oha-{build}-{size}-{run}.json"));
        let o: Value = serde_json::from_str(&fs::read_to_string(&path)?)
            .with_context(|| path.display().to_string())?;
        let codes = o["statusCodeDistribution"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let errors: Vec<&String> = o["errorDistribution"]
            .as_object()
            .map(|e| {
                e.keys()
                    .filter(|k| !k.contains("aborted due to deadline"))
                    .collect()
            })
            .unwrap_or_default();
        if codes.keys().ne(["200"].iter()) || !errors.is_empty() {
            bail!(
                "{}: status codes {codes:?}, errors {errors:?}",
                path.display()
            );
        }
        let lat = &o["latencyPercentiles"];
        let ms = |key: &str| lat[key].as_f64().unwrap_or(f64::NAN) * 1e3;
        let requests: u64 = codes.values().filter_map(Value::as_u64).sum();
        runs.push(
            json!({"p50": ms("p50"), "p99": ms("p99"), "p999": ms("p99.9"), "requests": requests}),
        );
    }
    let median = |key: &str| {
        let mut v: Vec<f64> = runs.iter().filter_map(|r| r[key].as_f64()).collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let requests: u64 = runs.iter().filter_map(|r| r["requests"].as_u64()).sum();
    Ok(
        json!({"p50": median("p50"), "p99": median("p99"), "p999": median("p999"),
              "requests": requests, "runs": runs}),
    )
}

// ---- audit ---------------------------------------------------------------------

struct AuditFigures {
    seconds: f64,
    rss_kib: u64,
    exit: i32,
    /// Every run: "seconds... / KiB..."
    all: String,
}

/// `sts-guard audit` over all namespaces under `/usr/bin/time -v`, AUDIT_RUNS
/// times: the medians of wall time and "Maximum resident set size".
fn measure_audit(cp: &ControlPlane, s: &Settings, bin: &Path) -> anyhow::Result<AuditFigures> {
    let (mut secs, mut rss, mut exit) = (Vec::new(), Vec::new(), 0);
    let time_txt = s.out.join("time.txt");
    for _ in 0..s.audit_runs.max(1) {
        let out = support::control_plane::run(
            cp.command("/usr/bin/time")
                .arg("-v")
                .arg("-o")
                .arg(&time_txt)
                .arg(bin)
                .arg("audit")
                .stdout(Stdio::null()),
            None,
        );
        let report = fs::read_to_string(&time_txt)?;
        let field = |name: &str| {
            report
                .lines()
                .find(|l| l.trim_start().starts_with(name))
                .and_then(|l| l.rsplit_once(": "))
                .map(|(_, v)| v.trim().to_string())
                .with_context(|| format!("no {name:?} in /usr/bin/time's report"))
        };
        exit = field("Exit status")?.parse()?;
        if exit > 1 {
            bail!("audit exited {exit}\n{}", out.stderr);
        }
        // h:mm:ss or m:ss
        let wall = field("Elapsed (wall clock)")?;
        let seconds: f64 = wall
            .split(':')
            .rev()
            .enumerate()
            .map(|(i, x)| x.parse::<f64>().unwrap_or(0.0) * 60f64.powi(i as i32))
            .sum();
        secs.push(seconds);
        rss.push(field("Maximum resident set size")?.parse::<u64>()?);
    }
    let all = format!(
        "{} / {}",
        secs.iter()
            .map(f64::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        rss.iter().map(u64::to_string).collect::<Vec<_>>().join(" ")
    );
    // The lower median, as before.
    let mut sorted_secs = secs.clone();
    sorted_secs.sort_by(f64::total_cmp);
    let mut sorted_rss = rss.clone();
    sorted_rss.sort_unstable();
    Ok(AuditFigures {
        seconds: sorted_secs[(sorted_secs.len() - 1) / 2],
        rss_kib: sorted_rss[(sorted_rss.len() - 1) / 2],
        exit,
        all,
    })
}

// ---- the report ----------------------------------------------------------------

fn round_to(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

fn read_results(path: &Path) -> anyhow::Result<Vec<Value>> {
    fs::read_to_string(path)
        .with_context(|| path.display().to_string())?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| Ok(serde_json::from_str(l)?))
        .collect()
}

fn report_file(path: &Path) -> anyhow::Result<()> {
    println!("{}", report(&read_results(path)?));
    Ok(())
}

/// 12345 -> "12,345"
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// Least-squares slope and intercept of (x, y) points.
fn slope(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    if points.len() < 2 {
        return (f64::NAN, f64::NAN);
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 {
        return (f64::NAN, my);
    }
    let k = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>() / sxx;
    (k, my - k * mx)
}

/// The results as Markdown: one table (every size, old and new side by
/// side), memory growth per headless Service (least squares over the
/// sizes), and the targets of issue 12.
fn report(rows: &[Value]) -> String {
    const MIB: f64 = 1024.0;
    let f = |r: &Value, k: &str| r[k].as_f64().unwrap_or(0.0);
    let i = |r: &Value, k: &str| r[k].as_i64().unwrap_or(0);
    let mut out = vec![
        "| Services (headless) | StatefulSets | build | to /readyz s | RSS after sync MiB | \
         RSS after load MiB | VmHWM MiB | /validate p50 · p99 · p99.9 ms (oha) | \
         varied p50 · p99 ms | API requests / admissions | audit s | audit peak RSS MiB | quiet at start; busy during serve · audit |"
            .to_string(),
        "|---|---:|---|---:|---:|---:|---:|---|---|---|---:|---:|---|".to_string(),
    ];
    for r in rows {
        let (o, v) = (&r["oha"], &r["varied"]);
        let admissions = i(r, "api_lookups") + i(r, "cache_lookups");
        let api = i(r, "api_lookups") + i(r, "budget_api_lookups");
        let seen = i(r, "apiserver_service_gets") + i(r, "apiserver_pdb_lists");
        let warned = match v["warned"].as_i64() {
            Some(n) if n > 0 => format!(", {n} warned"),
            _ => String::new(),
        };
        let mut quiet = format!(
            "{}, load {}",
            r["quiet"].as_str().unwrap_or("?"),
            r["load"]
                .as_str()
                .unwrap_or("")
                .split_whitespace()
                .next()
                .unwrap_or("")
        );
        if let Some(serve) = r["busy_serve"].as_str() {
            quiet += &format!(
                "; busy {serve} s · {} s",
                r["busy_audit"].as_str().unwrap_or("?")
            );
        }
        out.push(format!(
            "| {} ({}) | {} | {} `{}` | {:.2} | {:.1} | {:.1} | {:.1} | {:.3} · {:.3} · {:.3} | {:.3} · {:.3}{warned} | {api} / {} (API server: {seen}) | {:.2} | {:.1} | {quiet} |",
            thousands(i(r, "size")),
            thousands(i(r, "headless")),
            thousands(i(r, "statefulsets")),
            r["build"].as_str().unwrap_or("?"),
            r["rev"].as_str().unwrap_or("?"),
            f(r, "ready_s"),
            f(r, "rss_sync_kib") / MIB,
            f(r, "rss_load_kib") / MIB,
            f(r, "hwm_kib") / MIB,
            f(o, "p50"),
            f(o, "p99"),
            f(o, "p999"),
            f(v, "p50"),
            f(v, "p99"),
            thousands(admissions),
            f(r, "audit_s"),
            f(r, "audit_rss_kib") / MIB,
        ));
    }
    out.push(String::new());
    let of = |build: &'static str| rows.iter().filter(move |r| r["build"] == build);
    for build in ["old", "new"] {
        let pts: Vec<(f64, f64)> = of(build)
            .map(|r| (f(r, "headless"), f(r, "rss_sync_kib") * 1024.0))
            .collect();
        let apts: Vec<(f64, f64)> = of(build)
            .map(|r| (f(r, "size"), f(r, "audit_rss_kib") * 1024.0))
            .collect();
        if pts.len() >= 2 {
            let ((k, c), (ka, ca)) = (slope(&pts), slope(&apts));
            out.push(format!(
                "- {build}: RSS after sync ≈ {:.1} MiB + {} bytes per headless Service \
                 (= {} bytes per Service at a third headless); audit peak RSS ≈ \
                 {:.1} MiB + {} bytes per Service (StatefulSets grow with it up to their cap)",
                c / 1_048_576.0,
                thousands(k.round() as i64),
                thousands((k / 3.0).round() as i64),
                ca / 1_048_576.0,
                thousands(ka.round() as i64),
            ));
        }
    }
    out.push(String::new());
    let mut checks = Vec::new();
    let at = |size: i64| of("new").find(|r| i(r, "size") == size);
    let small = of("new").min_by_key(|r| i(r, "size"));
    let met = |ok: bool| if ok { "met" } else { "NOT met" };
    if let Some(r) = at(20000) {
        let v = f(r, "rss_sync_kib") / MIB;
        checks.push(format!(
            "RSS after sync at 20,000 Services ≤ 24 MiB: {v:.1} MiB — {}",
            met(v <= 24.0)
        ));
    }
    if let Some(r) = at(50000) {
        let v = f(r, "rss_sync_kib") / MIB;
        checks.push(format!(
            "RSS after sync at 50,000 Services ≤ 32 MiB: {v:.1} MiB — {}",
            met(v <= 32.0)
        ));
        if let Some(small) = small.filter(|s| i(s, "size") < 50000) {
            let (a, b) = (f(&r["oha"], "p99"), f(&small["oha"], "p99"));
            checks.push(format!(
                "/validate p99 at 50,000 within 10 % of at {}: {a:.3} vs {b:.3} ms ({:+.1} %) — {}",
                thousands(i(small, "size")),
                (a / b - 1.0) * 100.0,
                met(a <= 1.1 * b)
            ));
        }
        let v = f(r, "audit_rss_kib") / MIB;
        checks.push(format!(
            "audit over {} StatefulSets and 50,000 Services, peak RSS ≤ 64 MiB: {v:.1} MiB — {}",
            thousands(i(r, "statefulsets")),
            met(v <= 64.0)
        ));
    }
    if of("new").next().is_some() {
        let total: i64 = of("new")
            .map(|r| i(r, "api_lookups") + i(r, "budget_api_lookups"))
            .sum();
        checks.push(format!(
            "API requests per admission (headless Service in the cache), new build: {total} over all sizes — {}",
            met(total == 0)
        ));
    }
    out.extend(checks.into_iter().map(|c| format!("- target: {c}")));
    out.join("\n")
}
