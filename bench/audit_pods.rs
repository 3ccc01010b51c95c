//! Audit at scale, with pods (BENCHMARKS.md, "Audit over a simulated
//! cluster"): `sts-guard audit` over a cluster whose StatefulSets have
//! their pods Running and Ready on fake nodes, as a real cluster's have.
//!
//! On the e2e control plane with controllers (tests/support: etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler on loopback, and
//! kwok playing NODES fake nodes), without the tests' audit log, it
//! creates, over NAMESPACES namespaces, STATEFULSETS compliant StatefulSets
//! of REPLICAS replicas (liveness, readiness and startup probes, ports
//! declared), each with its headless Service and PodDisruptionBudget, by
//! WORKERS parallel requests; waits until every pod is Ready (the
//! StatefulSets' readyReplicas); then runs `sts-guard audit` over all
//! namespaces AUDIT_RUNS times under `/usr/bin/time -v` and prints one
//! Markdown row: the medians of wall time and "Maximum resident set size".
//!
//!   audit-pods                     (built as the example `audit-pods`)
//!
//! bench/audit-pods.sh builds sts-guard (release) and runs it. Environment:
//! STS_GUARD_BIN (required), STATEFULSETS=1000 REPLICAS=1 NODES=100
//! NAMESPACES=10 WORKERS=8 AUDIT_RUNS=3, CP_BIN_DIR, KWOK_BIN_DIR,
//! CP_START_TIMEOUT. Logs are kept in target/bench-audit-pods/<date>/.

#[path = "common.rs"]
mod common;
#[path = "../tests/support/mod.rs"]
mod support;

use std::fs;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::ListParams;
use serde_json::{Value, json};

use common::{env_or, note};
use support::control_plane::{ControlPlane, Options, repo_root, run, sts_guard_bin};

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("audit-pods: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A count from the environment ([`env_or`]); 0 is refused.
fn count_or(name: &str, default: usize) -> anyhow::Result<usize> {
    match env_or(name, default)? {
        0 => bail!("{name}=0: it must be a whole number above 0"),
        n => Ok(n),
    }
}

struct Settings {
    statefulsets: usize,
    replicas: usize,
    nodes: usize,
    namespaces: usize,
    workers: usize,
    audit_runs: usize,
}

fn bench() -> anyhow::Result<()> {
    let s = Settings {
        statefulsets: count_or("STATEFULSETS", 1000)?,
        replicas: count_or("REPLICAS", 1)?,
        nodes: count_or("NODES", 100)?,
        namespaces: count_or("NAMESPACES", 10)?,
        workers: count_or("WORKERS", 8)?,
        audit_runs: count_or("AUDIT_RUNS", 3)?,
    };
    if std::env::var_os("STS_GUARD_BIN").is_none() {
        bail!("STS_GUARD_BIN is not set (bench/audit-pods.sh sets it)");
    }
    if !Path::new("/usr/bin/time").is_file() {
        bail!("/usr/bin/time (GNU time) is required: apt-get install time");
    }
    let started = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let digits: String = started.chars().filter(char::is_ascii_digit).collect();
    let out = repo_root().join("target/bench-audit-pods").join(format!(
        "{}-{}",
        &digits[..8],
        &digits[8..14]
    ));
    fs::create_dir_all(&out)?;

    let start = Instant::now();
    let cp = ControlPlane::start_with(&Options {
        // Every create would be a line of the audit log.
        audit_log: false,
        nodes: Some(s.nodes),
        ..Options::default()
    })?;
    note(&format!(
        "control plane with {} nodes ready in {:.1} s",
        s.nodes,
        start.elapsed().as_secs_f64()
    ));
    let result = measure(&cp, &s);
    // The logs beside the results.
    let logs = out.join("logs");
    let _ = fs::create_dir_all(&logs);
    if let Ok(dir) = fs::read_dir(cp.work().join("logs")) {
        for entry in dir.flatten() {
            let _ = fs::copy(entry.path(), logs.join(entry.file_name()));
        }
    }
    let row = result?;
    fs::write(out.join("report.md"), &row)?;
    print!("{row}");
    note(&format!("kept in {}", out.display()));
    Ok(())
}

fn namespace(j: usize, s: &Settings) -> String {
    format!("audit-{:02}", j % s.namespaces)
}

/// Headless Service, PodDisruptionBudget and StatefulSet number `j`.
fn objects(j: usize, s: &Settings) -> [(String, Value); 3] {
    let ns = namespace(j, s);
    let name = format!("db-{j:05}");
    let labels = json!({"app.kubernetes.io/name": name});
    let probe =
        |path: &str| json!({"httpGet": {"path": path, "port": "http"}, "periodSeconds": 10});
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": "None", "selector": labels,
                 "ports": [{"name": "http", "port": 8080, "targetPort": "http"}]},
    });
    let budget = json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
    });
    let sts = json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "serviceName": name,
            "replicas": s.replicas,
            "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{
                    "name": "db",
                    "image": "postgres:17",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "livenessProbe": probe("/live"),
                    "readinessProbe": probe("/ready"),
                    "startupProbe": {"httpGet": {"path": "/live", "port": "http"},
                                     "periodSeconds": 5, "failureThreshold": 60},
                }]},
            },
        },
    });
    [
        (format!("/api/v1/namespaces/{ns}/services"), service),
        (
            format!("/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets"),
            budget,
        ),
        (format!("/apis/apps/v1/namespaces/{ns}/statefulsets"), sts),
    ]
}

fn measure(cp: &ControlPlane, s: &Settings) -> anyhow::Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = rt.block_on(cp.client());
    for i in 0..s.namespaces {
        let ns = namespace(i, s);
        let out = cp.kubectl(&["create", "namespace", &ns]);
        if out.code != 0 {
            bail!("creating {ns}\n{out}");
        }
    }
    // Pods are refused until the namespaces' default ServiceAccounts exist.
    support::control_plane::wait_for(
        "every namespace's default ServiceAccount",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let out = cp.kubectl(&[
                "get",
                "sa",
                "-A",
                "--field-selector=metadata.name=default",
                "-o",
                "name",
            ]);
            Ok(out.stdout.lines().count() > s.namespaces)
        },
    )?;

    let created = Instant::now();
    let requests: Vec<(String, Value)> = (0..s.statefulsets).flat_map(|j| objects(j, s)).collect();
    let total = requests.len();
    rt.block_on(
        futures::stream::iter(requests.into_iter().map(|(path, obj)| {
            let client = client.clone();
            async move {
                let request = hyper::Request::post(&path)
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(&obj)?)?;
                client
                    .request_text(request)
                    .await
                    .with_context(|| format!("POST {path}"))
                    .map(drop)
            }
        }))
        .buffer_unordered(s.workers)
        .try_collect::<Vec<()>>(),
    )?;
    let create_s = created.elapsed().as_secs_f64();
    note(&format!("{total} objects created in {create_s:.1} s"));

    let pods = s.statefulsets * s.replicas;
    let mut last_note = Instant::now();
    let ready_s = loop {
        let ready: usize = rt.block_on(async {
            Api::<StatefulSet>::all(client.clone())
                .list(&ListParams::default())
                .await
                .map(|l| {
                    l.items
                        .iter()
                        .filter_map(|s| s.status.as_ref()?.ready_replicas)
                        .map(|r| r as usize)
                        .sum()
                })
                .unwrap_or(0)
        });
        if ready >= pods {
            break created.elapsed().as_secs_f64();
        }
        if last_note.elapsed() > Duration::from_secs(30) {
            note(&format!("{ready} of {pods} pods ready"));
            last_note = Instant::now();
        }
        if created.elapsed() > Duration::from_secs(1800) {
            bail!("only {ready} of {pods} pods ready after 30 minutes");
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let nodes_used = rt.block_on(async {
        let nodes = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map(|l| l.items.len())
            .unwrap_or(0);
        anyhow::Ok(nodes)
    })?;
    note(&format!(
        "{pods} pods ready on {nodes_used} nodes {ready_s:.1} s after the first create"
    ));

    let bin = sts_guard_bin();
    let mut seconds = Vec::new();
    let mut rss = Vec::new();
    let mut exit = 0;
    for run_no in 1..=s.audit_runs {
        let out = run(
            cp.command("/usr/bin/time")
                .arg("-v")
                .arg(&bin)
                .args(["audit", "-o", "json"]),
            None,
        );
        let field = |name: &str| -> anyhow::Result<String> {
            out.stderr
                .lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{name}: ")))
                .map(str::to_string)
                .with_context(|| format!("no {name:?} in /usr/bin/time's output\n{out}"))
        };
        let report: Value = serde_json::from_str(&out.stdout)
            .with_context(|| format!("audit printed no JSON report\n{out}"))?;
        let checked = report["summary"]["checked"].as_u64().unwrap_or(0);
        if checked != s.statefulsets as u64 {
            bail!(
                "audit checked {checked} StatefulSets, not {}\n{out}",
                s.statefulsets
            );
        }
        exit = out.code;
        seconds.push(elapsed_seconds(&field(
            "Elapsed (wall clock) time (h:mm:ss or m:ss)",
        )?)?);
        rss.push(field("Maximum resident set size (kbytes)")?.parse::<u64>()?);
        note(&format!(
            "audit run {run_no}: {:.2} s, {} KiB, exit {}",
            seconds[seconds.len() - 1],
            rss[rss.len() - 1],
            out.code
        ));
    }
    seconds.sort_by(f64::total_cmp);
    rss.sort_unstable();
    let median_s = seconds[seconds.len() / 2];
    let median_rss = rss[rss.len() / 2];
    Ok(format!(
        "| StatefulSets | pods (Ready) | fake nodes | namespaces | created in | all Ready after | `audit` wall (median of {runs}) | `audit` peak RSS (median) | exit |
| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
| {sts} | {pods} | {nodes} | {nss} | {create_s:.0} s | {ready_s:.0} s | {median_s:.2} s | {mib:.1} MiB | {exit} |
",
        runs = s.audit_runs,
        sts = s.statefulsets,
        nodes = nodes_used,
        nss = s.namespaces,
        mib = median_rss as f64 / 1024.0,
    ))
}

/// GNU time's "0:01.23" or "1:02:03" as seconds.
fn elapsed_seconds(text: &str) -> anyhow::Result<f64> {
    text.split(':').try_fold(0.0, |acc, part| {
        Ok(acc * 60.0
            + part
                .parse::<f64>()
                .with_context(|| format!("elapsed time {text:?}"))?)
    })
}
