//! A real, minimal Kubernetes control plane, the repository's only one: for
//! the end-to-end tests, the `--keep` demo and the bench drivers
//! (bench/e2e_cost.rs, bench/scale.rs). etcd and kube-apiserver on
//! loopback, built from source once by
//! `tests/e2e/build-control-plane.sh` (or taken from `CP_BIN_DIR`).
//!
//! With [`Options::nodes`] (the shared e2e cluster's), it also runs
//! kube-controller-manager, kube-scheduler and kwok, which registers that
//! many fake nodes and plays their kubelet (tests/support/kwok-stages.yaml):
//! StatefulSets get Pods, which are scheduled, run and become ready without
//! any container; ServiceAccounts, tokens, EndpointSlices, disruption
//! budgets, garbage collection and namespace deletion work as in a real
//! cluster. Without it, objects are stored and admitted for real
//! (defaulting, validation, admission webhooks, dry-run, warnings) and
//! nothing acts on them.
//!
//! Nothing here sends a packet off the machine: every server listens on
//! 127.0.0.1, the nodes' addresses are 127.0.0.1 and the pods' are in
//! 127.1.0.0/16, so whatever dials them can only reach this machine; there
//! is no kubelet, kube-proxy, CNI or DNS, and the API server's own way to
//! the cluster network (pod, node and Service proxying, logs, exec) goes
//! through an egress selector pointed at a socket nobody listens on. The
//! price: the API server refuses loopback addresses in EndpointSlices, so
//! the EndpointSlice controller cannot publish these pods (a Service's
//! slice lists no pod).
//!
//! Every process started here (etcd, kube-apiserver, webhooks through
//! [`ControlPlane::spawn`]) runs in its own process group, logs to
//! `<work>/logs/<name>.log`, and is stopped by [`ControlPlane::stop`] (also
//! on drop) newest first. A watchdog process stops them too, and removes the
//! work directory, when the test process goes away without stopping them
//! (Ctrl-C, a panic outside a test, SIGKILL): it waits for end-of-file on a
//! pipe only this process holds, so it needs no polling of its own.
//!
//! Environment: `CP_BIN_DIR` (prebuilt kube-apiserver, etcd,
//! kube-controller-manager and kube-scheduler), `KWOK_BIN_DIR` (a prebuilt
//! kwok), `CP_START_TIMEOUT` (seconds, default 120), `STS_GUARD_E2E_KEEP=1`
//! (keep the work directory, printed at start, for inspection).

use std::fs;
use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::Namespace;
use kube::config::{KubeConfigOptions, Kubeconfig};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// What the API server's audit log records: requests for the objects
/// sts-guard looks up, once each (at ResponseComplete).
const AUDIT_POLICY: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived", "ResponseStarted"]
rules:
  - level: Metadata
    resources:
      - group: ""
        resources: ["services"]
      - group: policy
        resources: ["poddisruptionbudgets"]
  - level: None
"#;

/// The kwok pod lifecycle: see the file's comments.
const KWOK_STAGES: &str = include_str!("kwok-stages.yaml");

/// A pod annotated so (its template, or the pod itself) runs but never
/// becomes ready, as if its readiness probe kept failing; a ready pod
/// annotated so turns not ready. kwok-stages.yaml acts on it.
pub const NOT_READY: &str = "e2e.sts-guard.io/not-ready";

/// A pod annotated so (a duration such as `2s`) becomes ready that long
/// after it started: a slow start. kwok-stages.yaml acts on it.
pub const READY_AFTER: &str = "e2e.sts-guard.io/ready-after";

/// The pods' addresses (kwok's --cidr): loopback, so that nothing that
/// dials a pod can leave this machine.
pub const POD_CIDR: &str = "127.1.0.0/16";

/// The fake nodes' address (kwok's --node-ip).
pub const NODE_IP: &str = "127.0.0.1";

/// Where the API server's egress to the cluster network (pods, nodes,
/// Services) goes: a Unix socket in the work directory that nobody listens
/// on, so any such connection fails on this machine.
const EGRESS_SOCKET: &str = "no-cluster-egress.sock";

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The sts-guard binary under test: `STS_GUARD_BIN`, else the one cargo
/// built for this test target, else (an example, which cargo tells
/// nothing) the one in the same target directory.
pub fn sts_guard_bin() -> PathBuf {
    std::env::var_os("STS_GUARD_BIN")
        .filter(|b| !b.is_empty())
        .map(PathBuf::from)
        .or_else(|| option_env!("CARGO_BIN_EXE_sts-guard").map(PathBuf::from))
        .or_else(|| {
            // target/<profile>/examples/<this> -> target/<profile>/sts-guard
            let exe = std::env::current_exe().ok()?;
            let bin = exe.parent()?.parent()?.join("sts-guard");
            bin.is_file().then_some(bin)
        })
        .expect("set STS_GUARD_BIN to the sts-guard binary")
}

/// The directory holding `kube-apiserver` and `etcd`: `CP_BIN_DIR`, else
/// the last stdout line of build-control-plane.sh (instant when cached; the
/// first build takes minutes and shows its progress on stderr).
pub fn control_plane_bin_dir() -> anyhow::Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| built_dir("CP_BIN_DIR", "tests/e2e/build-control-plane.sh"))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The helm binary: in `HELM_BIN_DIR`, else in the directory
/// tests/e2e/build-helm.sh prints (built from the Go module proxy at the
/// version its go.mod pins; instant when cached, a few minutes cold).
pub fn helm_bin() -> anyhow::Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| built_dir("HELM_BIN_DIR", "tests/e2e/build-helm.sh"))
        .clone()
        .map(|dir| dir.join("helm"))
        .map_err(anyhow::Error::msg)
}

/// The kwok binary: in `KWOK_BIN_DIR`, else in the directory
/// tests/e2e/build-kwok.sh prints (built from the Go module proxy at the
/// version its go.mod pins; instant when cached).
pub fn kwok_bin() -> anyhow::Result<PathBuf> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| built_dir("KWOK_BIN_DIR", "tests/e2e/build-kwok.sh"))
        .clone()
        .map(|dir| dir.join("kwok"))
        .map_err(anyhow::Error::msg)
}

/// How many fake nodes the shared e2e cluster gets: `CP_NODES`, default 3.
pub fn nodes_from_env() -> anyhow::Result<usize> {
    match std::env::var("CP_NODES") {
        Err(_) => Ok(3),
        Ok(n) => match n.trim().parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => bail!("CP_NODES must be a number of nodes, 1 or more; got {n:?}"),
        },
    }
}

/// `$env` if set, else the last stdout line of `script` (relative to the
/// repository root), which builds or finds what it prints.
fn built_dir(env: &str, script: &str) -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os(env).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let script = repo_root().join(script);
    let out = Command::new(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed: {}", script.display(), out.status));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| PathBuf::from(l.trim()))
        .ok_or_else(|| format!("{} printed no directory", script.display()))
}

/// A few random lower-case letters and digits (namespace suffixes, run ids).
pub fn random_suffix(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = random_u64();
    (0..len)
        .map(|_| {
            if x == 0 {
                x = random_u64();
            }
            let c = ALPHABET[(x % ALPHABET.len() as u64) as usize];
            x /= ALPHABET.len() as u64;
            c as char
        })
        .collect()
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS once per process and varied per
    // instance; the counter and the clock keep successive values apart.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// `n` distinct loopback ports that could be bound just now. They are
/// picked below the kernel's ephemeral range, so an outgoing connection
/// (apiserver -> etcd, kubectl -> apiserver) cannot take one between the
/// pick and the bind; a port taken anyway by another test is handled by the
/// callers' retry.
pub fn free_ports(n: usize) -> Vec<u16> {
    let lo = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // Odd setups (the range starts very low): above the range instead.
    let (from, to) = if lo > 12000 && lo <= 61000 {
        (10000u16, lo - 1)
    } else {
        (61000, 65535)
    };
    let mut held: Vec<TcpListener> = Vec::new();
    while held.len() < n {
        let port = from + (random_u64() % u64::from(to - from + 1)) as u16;
        if let Ok(l) = TcpListener::bind(("127.0.0.1", port)) {
            held.push(l); // keep it bound so the next pick differs
        }
    }
    held.iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

/// Polls `check` every `interval` until it returns `Ok(true)` (done),
/// `Err` (give up at once: a process died...) or `timeout` passes.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if check()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(interval);
    }
}

/// Runs `future` to completion on a runtime of its own, on a thread of its
/// own, so it works from plain code and from inside a test's runtime alike.
pub fn block_on<F>(future: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(future)
        })
        .join()
        .expect("block_on thread panicked")
    })
}

/// One plain-HTTP GET (etcd's /health, sts-guard's /metrics): status, body.
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    tcp.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// What a command printed and how it exited.
#[derive(Debug, Clone)]
pub struct Output {
    /// The exit code; -1 when killed by a signal.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn from_std(out: std::process::Output) -> Output {
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics, showing the output, unless the command exited with `code`.
    #[track_caller]
    pub fn assert_exit(&self, code: i32) -> &Output {
        assert_eq!(self.code, code, "unexpected exit code\n{self}");
        self
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "exit: {}", self.code)?;
        for line in self.stdout.lines().take(40) {
            writeln!(f, "stdout: {line}")?;
        }
        for line in self.stderr.lines().take(40) {
            writeln!(f, "stderr: {line}")?;
        }
        Ok(())
    }
}

struct Proc {
    name: String,
    child: Child,
}

/// A running etcd + kube-apiserver. See the module documentation.
pub struct ControlPlane {
    work: PathBuf,
    keep: bool,
    /// `https://127.0.0.1:<port>`
    pub url: String,
    /// Admin kubeconfig (system:masters), certificates by path.
    pub kubeconfig: PathBuf,
    procs: Mutex<Vec<Proc>>,
    watchdog: Mutex<Option<(Child, ChildStdin)>>,
}

/// How [`ControlPlane::start_with`] starts the API server.
#[derive(Debug, Clone)]
pub struct Options {
    /// Appended to kube-apiserver's flags, last, so they win over the
    /// defaults (a flag given twice takes its last value), e.g.
    /// `--service-cluster-ip-range=10.0.0.0/16`.
    pub apiserver_flags: Vec<String>,
    /// Record the Service and PodDisruptionBudget requests in
    /// [`ControlPlane::audit_log`]. Every write is a line, so a benchmark
    /// that creates tens of thousands of objects leaves it off.
    pub audit_log: bool,
    /// Also run kube-controller-manager, kube-scheduler and kwok with this
    /// many fake nodes (see the module documentation); `None`: the API
    /// server alone, nothing acting on what it stores.
    pub nodes: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            apiserver_flags: Vec::new(),
            audit_log: true,
            nodes: None,
        }
    }
}

/// Why one start attempt failed.
enum StartError {
    /// A port was taken meanwhile: worth a retry with fresh ports.
    PortTaken,
    Failed(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(e: anyhow::Error) -> Self {
        StartError::Failed(e)
    }
}

impl ControlPlane {
    /// Builds or finds the binaries, makes a PKI, starts etcd and
    /// kube-apiserver and returns once the API serves `namespace/default`.
    pub fn start() -> anyhow::Result<ControlPlane> {
        ControlPlane::start_with(&Options::default())
    }

    /// [`ControlPlane::start`], the API server started as `options` say.
    pub fn start_with(options: &Options) -> anyhow::Result<ControlPlane> {
        // On a thread of its own: the readiness checks run a tokio runtime,
        // which must not be nested in the caller's (a #[tokio::test]).
        std::thread::scope(|s| s.spawn(|| Self::start_here(options)).join())
            .unwrap_or_else(|_| bail!("starting the control plane panicked"))
    }

    fn start_here(options: &Options) -> anyhow::Result<ControlPlane> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let bin = control_plane_bin_dir()?;
        let mut tools = vec!["etcd", "kube-apiserver"];
        if options.nodes.is_some() {
            tools.extend(["kube-controller-manager", "kube-scheduler"]);
            let kwok = kwok_bin()?;
            if !kwok.is_file() {
                bail!("no kwok at {}", kwok.display());
            }
        }
        for tool in tools {
            if !bin.join(tool).is_file() {
                bail!("no {tool} in {}", bin.display());
            }
        }
        if options.nodes == Some(0) {
            bail!("a control plane with controllers needs at least one node");
        }
        let keep = std::env::var("STS_GUARD_E2E_KEEP").is_ok_and(|v| !v.is_empty() && v != "0");
        let work = tempfile::Builder::new()
            .prefix("sts-guard-e2e.")
            .tempdir()
            .context("creating the work directory")?
            .keep();
        if keep {
            eprintln!("e2e: work directory {} (kept)", work.display());
        }
        let mut cp = ControlPlane {
            kubeconfig: work.join("kubeconfig"),
            work,
            keep,
            url: String::new(),
            procs: Mutex::new(Vec::new()),
            watchdog: Mutex::new(None),
        };
        // From here on, dropping `cp` stops what was started.
        cp.start_watchdog()?;
        for dir in ["logs", "kube-cache", "pki"] {
            fs::create_dir_all(cp.work.join(dir))?;
        }
        make_pki(&cp.work.join("pki"))?;
        for attempt in 1..=3 {
            match cp.start_once(&bin, &rt, options) {
                Ok(()) => return Ok(cp),
                Err(StartError::PortTaken) if attempt < 3 => {
                    eprintln!("e2e: a port was taken meanwhile; retrying with new ports");
                    cp.stop_processes();
                }
                Err(StartError::PortTaken) => bail!("ports kept being taken\n{}", cp.logs(60)),
                Err(StartError::Failed(e)) => {
                    bail!("the control plane did not start: {e:#}\n{}", cp.logs(60))
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// The API server's audit log (one JSON event per line): every request
    /// for Services and PodDisruptionBudgets, at level Metadata.
    pub fn audit_log(&self) -> PathBuf {
        self.work.join("audit.log")
    }

    /// Writes a kubeconfig like the control plane's own (admin) at `path`,
    /// for the API server at `url` (a proxy in front of it, say).
    pub fn write_kubeconfig_for(&self, url: &str, path: &Path) -> anyhow::Result<()> {
        write_kubeconfig(path, url, &self.work.join("pki"))
    }

    /// The audited requests for `resource` (plural) in `namespace` by
    /// anything but kubectl, as `verb` strings (`get`, `list`, `watch`,
    /// `create`...).
    pub fn audited(&self, resource: &str, namespace: &str) -> Vec<String> {
        let log = fs::read_to_string(self.audit_log()).unwrap_or_default();
        log.lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|event| {
                event["objectRef"]["resource"] == resource
                    && event["objectRef"]["namespace"] == namespace
                    && !event["userAgent"]
                        .as_str()
                        .is_some_and(|agent| agent.starts_with("kubectl"))
            })
            .filter_map(|event| event["verb"].as_str().map(str::to_string))
            .collect()
    }

    /// The work directory (pki/, logs/, kubeconfig, whatever tests put there).
    pub fn work(&self) -> &Path {
        &self.work
    }

    fn start_once(
        &mut self,
        bin: &Path,
        rt: &tokio::runtime::Runtime,
        options: &Options,
    ) -> Result<(), StartError> {
        let ports = free_ports(3);
        let (etcd_client, etcd_peer, api_port) = (ports[0], ports[1], ports[2]);
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        let w = self.work.clone();
        let pki = w.join("pki");
        let _ = fs::remove_dir_all(w.join("etcd-data"));
        fs::remove_file(self.log_path("etcd")).ok();
        fs::remove_file(self.log_path("kube-apiserver")).ok();

        for name in ["kube-controller-manager", "kube-scheduler", "kwok"] {
            fs::remove_file(self.log_path(name)).ok();
        }

        // --unsafe-no-fsync: throwaway data; fsync on a loaded CI disk is
        // the main cause of slow etcd writes.
        let etcd = self.spawn(
            "etcd",
            Command::new(bin.join("etcd")).args([
                "--name=e2e".to_string(),
                format!("--data-dir={}", w.join("etcd-data").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=e2e={peer_url}"),
                "--initial-cluster-state=new".to_string(),
                "--unsafe-no-fsync".to_string(),
            ]),
        )?;
        let etcd_addr: SocketAddr = ([127, 0, 0, 1], etcd_client).into();
        self.wait_ready_or_dead("etcd", etcd, Duration::from_secs(30), || {
            Ok(http_get(etcd_addr, "/health")
                .is_ok_and(|(status, body)| status == 200 && body.contains(r#""health":"true""#)))
        })?;

        // Flags: a single-node API server that needs no other component.
        //  --allow-privileged: like real clusters (kubeadm), so templates
        //    with privileged containers pass validation.
        //  --enable-admission-plugins: on top of the defaults; named
        //    explicitly because the tests rely on them.
        //  --cert-dir: never write generated certs outside the work dir.
        //  --endpoint-reconciler-type=none: the "kubernetes" Service
        //    endpoints would point at 127.0.0.1, which Endpoints validation
        //    rejects (an error logged every few seconds); nothing needs them.
        //  --egress-selector-config-file (with nodes, whose pods have
        //    addresses): connections to the cluster network (pod/node/
        //    Service proxy, logs, exec, port-forward, webhooks called
        //    through a Service) go to a socket nobody listens on, so they
        //    fail here instead of leaving the machine. Webhooks called by
        //    URL (sts-guard's, on 127.0.0.1) and etcd are "controlplane"/
        //    "etcd" traffic, direct as before. Not without nodes: there is
        //    no pod or node to reach then, and those control planes stay
        //    as they were.
        let p = |name: &str| pki.join(name).display().to_string();
        let mut egress_flag = Vec::new();
        if options.nodes.is_some() {
            let egress = w.join("egress-selector.yaml");
            fs::write(
                &egress,
                format!(
                    "apiVersion: apiserver.k8s.io/v1beta1
kind: EgressSelectorConfiguration
egressSelections:
  - name: cluster
    connection:
      proxyProtocol: HTTPConnect
      transport:
        uds:
          udsName: {}
",
                    serde_json::to_string(&w.join(EGRESS_SOCKET)).unwrap()
                ),
            )
            .map_err(anyhow::Error::from)?;
            egress_flag.push(format!(
                "--egress-selector-config-file={}",
                egress.display()
            ));
        }
        // The API server's own record of who asked for what, for the
        // objects sts-guard looks up only (cheap: nothing else is logged),
        // so a test can count the requests made in its namespace.
        let mut audit = Vec::new();
        if options.audit_log {
            let audit_policy = w.join("audit-policy.yaml");
            fs::write(&audit_policy, AUDIT_POLICY).map_err(anyhow::Error::from)?;
            audit.push(format!("--audit-policy-file={}", audit_policy.display()));
            audit.push(format!("--audit-log-path={}", self.audit_log().display()));
        }
        let api = self.spawn(
            "kube-apiserver",
            Command::new(bin.join("kube-apiserver")).args([
                "--bind-address=127.0.0.1".to_string(),
                "--advertise-address=127.0.0.1".to_string(),
                format!("--secure-port={api_port}"),
                format!("--cert-dir={}", pki.display()),
                format!("--tls-cert-file={}", p("apiserver.crt")),
                format!("--tls-private-key-file={}", p("apiserver.key")),
                format!("--client-ca-file={}", p("ca.crt")),
                format!("--etcd-servers={etcd_url}"),
                "--service-account-issuer=https://kubernetes.default.svc".to_string(),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
                "--authorization-mode=RBAC".to_string(),
                "--service-cluster-ip-range=10.0.0.0/24".to_string(),
                "--enable-admission-plugins=NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,ValidatingAdmissionWebhook".to_string(),
                "--allow-privileged=true".to_string(),
                "--endpoint-reconciler-type=none".to_string(),
                "--profiling=false".to_string(),
            ])
            .args(egress_flag)
            .args(audit)
            .args(&options.apiserver_flags),
        )?;
        self.url = format!("https://127.0.0.1:{api_port}");
        write_kubeconfig(&self.kubeconfig, &self.url, &pki)?;

        // Ready when /readyz says so and the bootstrap controller has made
        // namespace "default" (tests create objects right away).
        let timeout = std::env::var("CP_START_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(Duration::from_secs(120), Duration::from_secs);
        let client = rt.block_on(client_from(&self.kubeconfig))?;
        self.wait_ready_or_dead("kube-apiserver", api, timeout, || {
            let client = client.clone();
            Ok(rt.block_on(async move {
                let ready = client
                    .request_text(hyper::Request::get("/readyz").body(Vec::new()).unwrap())
                    .await
                    .is_ok_and(|body| body.trim() == "ok");
                ready
                    && kube::Api::<Namespace>::all(client)
                        .get_opt("default")
                        .await
                        .is_ok_and(|ns| ns.is_some())
            }))
        })?;
        if let Some(nodes) = options.nodes {
            self.start_nodes_and_controllers(bin, rt, nodes, timeout)?;
        }
        Ok(())
    }

    /// kube-controller-manager, kube-scheduler and kwok, then `nodes` fake
    /// nodes; returns once every node is Ready and schedulable and the
    /// controllers have made namespace default's ServiceAccount. None of
    /// them serves a port (--secure-port=0; kwok gets no --server-address).
    fn start_nodes_and_controllers(
        &self,
        bin: &Path,
        rt: &tokio::runtime::Runtime,
        nodes: usize,
        timeout: Duration,
    ) -> Result<(), StartError> {
        let w = &self.work;
        let pki = w.join("pki");
        let p = |name: &str| pki.join(name).display().to_string();
        for user in ["controller-manager", "scheduler"] {
            write_kubeconfig_as(&w.join(format!("{user}.kubeconfig")), &self.url, &pki, user)?;
        }
        let kubeconfig = |user: &str| format!("--kubeconfig={}/{user}.kubeconfig", w.display());
        // Every controller of a default cluster, each with credentials of
        // its own (as kubeadm runs them); the ServiceAccount token signer
        // and the CSR signer share the control plane's keys. There is no
        // cloud provider: 1.34's controller-manager holds no cloud code.
        let kcm = self.spawn(
            "kube-controller-manager",
            Command::new(bin.join("kube-controller-manager")).args([
                kubeconfig("controller-manager"),
                "--bind-address=127.0.0.1".to_string(),
                "--secure-port=0".to_string(),
                "--leader-elect=false".to_string(),
                "--controllers=*".to_string(),
                "--use-service-account-credentials=true".to_string(),
                format!("--service-account-private-key-file={}", p("sa.key")),
                format!("--root-ca-file={}", p("ca.crt")),
                format!("--cluster-signing-cert-file={}", p("ca.crt")),
                format!("--cluster-signing-key-file={}", p("ca.key")),
                "--cluster-name=sts-guard-e2e".to_string(),
                // The default 20 requests/s per controller queues a suite's
                // hundreds of pods for minutes; nothing else shares this
                // API server.
                "--kube-api-qps=500".to_string(),
                "--kube-api-burst=1000".to_string(),
                "--profiling=false".to_string(),
            ]),
        )?;
        let scheduler = self.spawn(
            "kube-scheduler",
            Command::new(bin.join("kube-scheduler")).args([
                kubeconfig("scheduler"),
                "--bind-address=127.0.0.1".to_string(),
                "--secure-port=0".to_string(),
                "--leader-elect=false".to_string(),
                "--kube-api-qps=500".to_string(),
                "--kube-api-burst=1000".to_string(),
                "--profiling=false".to_string(),
            ]),
        )?;
        // kwok as the kubelet of every node, with the admin's credentials
        // (it writes node and pod status, leases, events). HOME in the work
        // directory: kwok would read ~/.kwok/kwok.yaml otherwise.
        let stages = w.join("kwok-stages.yaml");
        fs::write(&stages, KWOK_STAGES).map_err(anyhow::Error::from)?;
        let kwok_home = w.join("kwok-home");
        fs::create_dir_all(&kwok_home).map_err(anyhow::Error::from)?;
        let kwok = self.spawn(
            "kwok",
            Command::new(kwok_bin()?)
                .args([
                    format!("--kubeconfig={}", self.kubeconfig.display()),
                    format!("--config={}", stages.display()),
                    "--manage-all-nodes=true".to_string(),
                    format!("--node-ip={NODE_IP}"),
                    format!("--cidr={POD_CIDR}"),
                    "--node-lease-duration-seconds=40".to_string(),
                ])
                .env("HOME", &kwok_home),
        )?;

        // The nodes, as kwok's documentation registers them; kwok fills in
        // their status (Ready, addresses, capacity) and heartbeats.
        let items: Vec<serde_json::Value> = (0..nodes)
            .map(|i| {
                let name = format!("kwok-node-{i}");
                serde_json::json!({
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "type": "kwok",
                        },
                        "annotations": {"kwok.x-k8s.io/node": "fake"},
                    },
                })
            })
            .collect();
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
        let out = self.kubectl_with_input(&["apply", "-f", "-"], &list.to_string());
        if out.code != 0 {
            return Err(anyhow::anyhow!("registering the nodes failed\n{out}").into());
        }

        let client = rt.block_on(client_from(&self.kubeconfig))?;
        let ready = || {
            let client = client.clone();
            rt.block_on(async move {
                let listed = kube::Api::<k8s_openapi::api::core::v1::Node>::all(client.clone())
                    .list(&Default::default())
                    .await;
                // Ready, and the node lifecycle controller has lifted its
                // not-ready taint: the scheduler places pods there at once.
                let schedulable = listed.is_ok_and(|list| {
                    list.items.len() >= nodes
                        && list.items.iter().all(|node| {
                            let ready = node
                                .status
                                .as_ref()
                                .and_then(|s| s.conditions.as_ref())
                                .is_some_and(|c| {
                                    c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                                });
                            let tainted = node
                                .spec
                                .as_ref()
                                .and_then(|s| s.taints.as_ref())
                                .is_some_and(|t| !t.is_empty());
                            ready && !tainted
                        })
                });
                let accounts = kube::Api::<k8s_openapi::api::core::v1::ServiceAccount>::namespaced(
                    client, "default",
                )
                .get_opt("default")
                .await
                .is_ok_and(|sa| sa.is_some());
                schedulable && accounts
            })
        };
        let what = format!("{nodes} Ready nodes and the default ServiceAccount");
        wait_for(&what, timeout, Duration::from_millis(200), || {
            for (name, pid) in [
                ("kube-controller-manager", kcm),
                ("kube-scheduler", scheduler),
                ("kwok", kwok),
            ] {
                if !self.is_running(pid) {
                    bail!("{name} exited");
                }
            }
            Ok(ready())
        })?;
        Ok(())
    }

    /// Waits until `ready` holds; fails at once if the process `pid` exits
    /// (PortTaken when its log says a port was in use).
    fn wait_ready_or_dead(
        &self,
        name: &str,
        pid: u32,
        timeout: Duration,
        mut ready: impl FnMut() -> anyhow::Result<bool>,
    ) -> Result<(), StartError> {
        let mut died = false;
        let waited = wait_for(
            &format!("{name} to be ready"),
            timeout,
            Duration::from_millis(200),
            || {
                if ready()? {
                    return Ok(true);
                }
                if !self.is_running(pid) {
                    died = true;
                    bail!("{name} exited");
                }
                Ok(false)
            },
        );
        match waited {
            Ok(()) => Ok(()),
            Err(e) => {
                let log = fs::read_to_string(self.log_path(name)).unwrap_or_default();
                if died && log.contains("address already in use") {
                    Err(StartError::PortTaken)
                } else {
                    Err(StartError::Failed(e))
                }
            }
        }
    }

    /// Starts `cmd` in its own process group, output in logs/<name>.log
    /// (appended), stdin closed; [`ControlPlane::stop`] and the watchdog
    /// stop it. Returns its PID.
    pub fn spawn(&self, name: &str, cmd: &mut Command) -> anyhow::Result<u32> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))
            .with_context(|| format!("opening the log of {name}"))?;
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let mut procs = self.procs();
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {:?}", cmd.get_program()))?;
        let pid = child.id();
        procs.push(Proc {
            name: name.to_string(),
            child,
        });
        self.write_pids(&procs);
        Ok(pid)
    }

    /// True while the process `pid` (started by [`ControlPlane::spawn`]) runs.
    pub fn is_running(&self, pid: u32) -> bool {
        self.procs()
            .iter_mut()
            .find(|p| p.child.id() == pid)
            .is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
    }

    /// Stops one process started by [`ControlPlane::spawn`] (SIGTERM to its
    /// group, SIGKILL after 10 s) and waits for it.
    pub fn stop_process(&self, pid: u32) {
        let proc = {
            let mut procs = self.procs();
            let Some(i) = procs.iter().position(|p| p.child.id() == pid) else {
                return;
            };
            let proc = procs.remove(i);
            self.write_pids(&procs);
            proc
        };
        terminate(proc.child);
    }

    /// Stops every process, newest first (helpers, then the apiserver while
    /// etcd is still up, then etcd), then the watchdog, which removes the
    /// work directory unless `STS_GUARD_E2E_KEEP` is set. Idempotent.
    pub fn stop(&self) {
        self.stop_processes();
        let watchdog = self
            .watchdog
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some((mut child, pipe)) = watchdog {
            drop(pipe); // end-of-file: the watchdog finds nothing left to stop
            let _ = child.wait();
        }
    }

    /// Stops every process, newest first, and keeps the work directory
    /// (kubeconfig, logs) until [`ControlPlane::stop`] or drop.
    pub fn stop_processes(&self) {
        let procs = {
            let mut procs = self.procs();
            let taken = std::mem::take(&mut *procs);
            self.write_pids(&procs);
            taken
        };
        for p in procs.into_iter().rev() {
            terminate(p.child);
        }
    }

    fn procs(&self) -> MutexGuard<'_, Vec<Proc>> {
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The watchdog's list: one "PID NAME" line per running process.
    fn write_pids(&self, procs: &[Proc]) {
        let list: String = procs
            .iter()
            .map(|p| format!("{} {}\n", p.child.id(), p.name))
            .collect();
        let _ = fs::write(self.work.join("pids"), list);
    }

    fn start_watchdog(&self) -> anyhow::Result<()> {
        // stdin is a pipe whose write end only this process holds (Rust
        // opens it close-on-exec, so no other child inherits it): `cat`
        // returns when this process exits, however it exits. Its own
        // process group and an ignored SIGINT, so Ctrl-C in a terminal
        // reaches the test process but not the watchdog.
        const SCRIPT: &str = r#"
trap '' INT HUP
cat >/dev/null
pids="$1/pids"
if [[ -s "$pids" ]]; then
  while read -r pid _; do kill -TERM -- "-$pid" 2>/dev/null; done <"$pids"
  for ((i = 0; i < 100; i++)); do
    alive=""
    while read -r pid _; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done <"$pids"
    [[ -z "$alive" ]] && break
    sleep 0.1
  done
  while read -r pid _; do kill -KILL -- "-$pid" 2>/dev/null; done <"$pids"
fi
[[ "$2" == 1 ]] || rm -rf -- "$1"
"#;
        let mut child = Command::new("bash")
            .arg("-c")
            .arg(SCRIPT)
            .arg("e2e-watchdog")
            .arg(&self.work)
            .arg(if self.keep { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the watchdog (bash)")?;
        let pipe = child.stdin.take().expect("piped stdin");
        *self.watchdog.lock().unwrap_or_else(|e| e.into_inner()) = Some((child, pipe));
        Ok(())
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.work.join("logs").join(format!("{name}.log"))
    }

    /// The last `lines` lines of every log, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        let Ok(dir) = fs::read_dir(self.work.join("logs")) else {
            return out;
        };
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        for path in paths {
            let text = fs::read_to_string(&path).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!(
                "===== {} (last {lines} lines) =====\n",
                path.display()
            ));
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// A command whose kube client configuration is this control plane
    /// (KUBECONFIG, and kubectl's cache kept out of $HOME).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.work.join("kube-cache"))
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null());
        cmd
    }

    /// `kubectl ARGS...` against this control plane.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        run(self.command("kubectl").args(args), None)
    }

    /// `kubectl ARGS...` with `input` on stdin (for `-f -`).
    pub fn kubectl_with_input(&self, args: &[&str], input: &str) -> Output {
        run(self.command("kubectl").args(args), Some(input))
    }

    /// PersistentVolumes for the claims the StatefulSets in `manifest`
    /// (a file kubectl reads) will make in namespace `ns`, each reserved
    /// for its claim (`claimRef`), so the controller-manager binds them at
    /// once: there is no storage provisioner here. They are hostPath
    /// volumes nothing ever mounts (kwok runs no containers).
    pub fn provide_volumes(&self, ns: &str, manifest: &Path) -> anyhow::Result<()> {
        let out = self.kubectl(&[
            "create",
            "--dry-run=client",
            "-o",
            "json",
            "-f",
            &manifest.display().to_string(),
        ]);
        if out.code != 0 {
            bail!("kubectl cannot read {}\n{out}", manifest.display());
        }
        let mut volumes = Vec::new();
        for doc in serde_json::Deserializer::from_str(&out.stdout).into_iter::<serde_json::Value>()
        {
            let doc = doc?;
            // One object, or a List of them when the file holds several.
            let objects = match doc["items"].as_array() {
                Some(items) => items.clone(),
                None => vec![doc],
            };
            for sts in objects.iter().filter(|o| o["kind"] == "StatefulSet") {
                let name = sts["metadata"]["name"].as_str().unwrap_or_default();
                let replicas = sts["spec"]["replicas"].as_u64().unwrap_or(1);
                let templates = sts["spec"]["volumeClaimTemplates"].as_array();
                for template in templates.into_iter().flatten() {
                    let claim = template["metadata"]["name"].as_str().unwrap_or_default();
                    let size = &template["spec"]["resources"]["requests"]["storage"];
                    for i in 0..replicas {
                        let claim = format!("{claim}-{name}-{i}");
                        volumes.push(serde_json::json!({
                            "apiVersion": "v1",
                            "kind": "PersistentVolume",
                            "metadata": {"name": format!("{ns}-{claim}")},
                            "spec": {
                                "capacity": {"storage": size},
                                "accessModes": template["spec"]["accessModes"],
                                "persistentVolumeReclaimPolicy": "Retain",
                                "hostPath": {"path": format!("/nonexistent/sts-guard-e2e/{ns}/{claim}")},
                                "claimRef": {"namespace": ns, "name": claim},
                            },
                        }));
                    }
                }
            }
        }
        if volumes.is_empty() {
            return Ok(());
        }
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": volumes});
        let out = self.kubectl_with_input(&["apply", "-f", "-"], &list.to_string());
        if out.code != 0 {
            bail!(
                "creating PersistentVolumes for {}\n{out}",
                manifest.display()
            );
        }
        Ok(())
    }

    /// A kube client for this control plane, bound to the calling runtime.
    pub async fn client(&self) -> kube::Client {
        client_from(&self.kubeconfig)
            .await
            .expect("kube client from the e2e kubeconfig")
    }

    /// [`ControlPlane::client`] without kube's retries: a 429 (an eviction
    /// a disruption budget refuses, with `Retry-After: 10`) comes back as
    /// an error at once instead of being retried for minutes.
    pub async fn client_without_retries(&self) -> kube::Client {
        client_with(&self.kubeconfig, false)
            .await
            .expect("kube client from the e2e kubeconfig")
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `cmd` to completion, feeding it `input`.
pub fn run(cmd: &mut Command, input: Option<&str>) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    if input.is_some() {
        cmd.stdin(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    if let Some(input) = input {
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_string();
        // A writer thread, so a child that prints a lot before reading all
        // of its input cannot deadlock against us.
        std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
    }
    Output::from_std(child.wait_with_output().expect("wait for the command"))
}

fn terminate(mut child: Child) {
    let group = child.id() as libc::pid_t;
    // SAFETY: kill(2) with a negative PID signals that process group; the
    // group is the one this child leads (process_group(0) at spawn).
    unsafe { libc::kill(-group, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() >= deadline {
            // SAFETY: as above.
            unsafe { libc::kill(-group, libc::SIGKILL) };
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.wait();
}

async fn client_from(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    client_with(kubeconfig, true).await
}

async fn client_with(kubeconfig: &Path, retry: bool) -> anyhow::Result<kube::Client> {
    // kube builds its rustls config on the process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kc = Kubeconfig::read_from(kubeconfig)?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await?;
    config.connect_timeout = Some(Duration::from_secs(2));
    config.read_timeout = Some(Duration::from_secs(10));
    config.default_retry = retry;
    Ok(kube::Client::try_from(config)?)
}

fn write_kubeconfig(path: &Path, url: &str, pki: &Path) -> anyhow::Result<()> {
    write_kubeconfig_as(path, url, pki, "admin")
}

/// A kubeconfig authenticating with `<pki>/<user>.crt` and `.key`.
fn write_kubeconfig_as(path: &Path, url: &str, pki: &Path, user: &str) -> anyhow::Result<()> {
    // JSON strings are YAML strings: paths need no further quoting.
    let q = |p: &str| serde_json::to_string(&pki.join(p)).unwrap();
    let text = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: sts-guard-e2e
  cluster:
    server: {url}
    certificate-authority: {ca}
users:
- name: {user}
  user:
    client-certificate: {crt}
    client-key: {key}
contexts:
- name: sts-guard-e2e
  context:
    cluster: sts-guard-e2e
    user: {user}
current-context: sts-guard-e2e
",
        ca = q("ca.crt"),
        crt = q(&format!("{user}.crt")),
        key = q(&format!("{user}.key")),
    );
    write_private(path, text.as_bytes())
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .with_context(|| format!("writing {}", path.display()))
}

/// The PKI of the control plane (rcgen, EC P-256 everywhere): ca.crt/key,
/// the apiserver's serving certificate, the admin client certificate
/// (O=system:masters; X.509 v3 with an Authority Key Identifier, which
/// rustls-based clients require), the controller-manager's and the
/// scheduler's client certificates (the names RBAC's bootstrap roles are
/// bound to), and the service-account signing key.
fn make_pki(dir: &Path) -> anyhow::Result<()> {
    let name = |cn: &str, org: Option<&str>| {
        let mut dn = DistinguishedName::new();
        if let Some(o) = org {
            dn.push(DnType::OrganizationName, o);
        }
        dn.push(DnType::CommonName, cn);
        dn
    };
    let ca_key = KeyPair::generate()?;
    let mut ca = CertificateParams::default();
    ca.distinguished_name = name("sts-guard-e2e-ca", None);
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key)?;
    fs::write(dir.join("ca.crt"), ca_cert.pem())?;
    write_private(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes())?;
    let issuer = Issuer::new(ca, ca_key);

    let issue = |file: &str,
                 dn: DistinguishedName,
                 usage: ExtendedKeyUsagePurpose,
                 sans: Vec<SanType>|
     -> anyhow::Result<()> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &issuer)?;
        fs::write(dir.join(format!("{file}.crt")), cert.pem())?;
        write_private(
            &dir.join(format!("{file}.key")),
            key.serialize_pem().as_bytes(),
        )
    };
    let mut sans = vec![
        SanType::IpAddress([127, 0, 0, 1].into()),
        SanType::IpAddress([10, 0, 0, 1].into()),
    ];
    for dns in [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        sans.push(SanType::DnsName(dns.try_into()?));
    }
    issue(
        "apiserver",
        name("kube-apiserver", None),
        ExtendedKeyUsagePurpose::ServerAuth,
        sans,
    )?;
    issue(
        "admin",
        name("kubernetes-admin", Some("system:masters")),
        ExtendedKeyUsagePurpose::ClientAuth,
        Vec::new(),
    )?;
    for (file, user) in [
        ("controller-manager", "system:kube-controller-manager"),
        ("scheduler", "system:kube-scheduler"),
    ] {
        issue(
            file,
            name(user, None),
            ExtendedKeyUsagePurpose::ClientAuth,
            Vec::new(),
        )?;
    }
    // Service-account tokens are signed ES256 with this key.
    let sa = KeyPair::generate()?;
    write_private(&dir.join("sa.key"), sa.serialize_pem().as_bytes())?;
    fs::write(dir.join("sa.pub"), sa.public_key_pem())?;
    Ok(())
}

/// Stops `cp` when the process exits normally (a `static` is never
/// dropped): the test harness returns from main and the C runtime runs
/// this. Abnormal exits are the watchdog's.
pub fn stop_at_exit(cp: &'static ControlPlane) {
    static REGISTERED: Mutex<Vec<&'static ControlPlane>> = Mutex::new(Vec::new());
    extern "C" fn stop_all() {
        if let Ok(list) = REGISTERED.try_lock() {
            for cp in list.iter() {
                cp.stop();
            }
        }
    }
    let mut list = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
    if list.is_empty() {
        // SAFETY: registers a plain function with no arguments; it only
        // touches statics that outlive main.
        unsafe { libc::atexit(stop_all) };
    }
    list.push(cp);
}
