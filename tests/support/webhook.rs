//! sts-guard behind a [`ControlPlane`]: `sts-guard serve` with certificates
//! from `sts-guard certs`, registered through the webhook configurations of
//! `deploy/` (only clientConfig changed), and [`Cluster`], the control plane
//! + webhook + policy the end-to-end tests and the `--keep` demo share.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::control_plane::{
    ControlPlane, Options, block_on, free_ports, http_get, nodes_from_env, random_suffix,
    repo_root, run, sts_guard_bin, wait_for,
};

/// A running `sts-guard serve`, stopped with the control plane (or
/// [`ControlPlane::stop_process`] of its `pid`).
pub struct Webhook {
    pub name: String,
    pub pid: u32,
    /// `https://127.0.0.1:<port>`
    pub url: String,
    pub addr: SocketAddr,
    /// Plain-HTTP Prometheus endpoint.
    pub metrics_addr: SocketAddr,
    /// CA of its serving certificate (`sts-guard certs`).
    pub ca: PathBuf,
}

impl Webhook {
    /// `sts-guard certs` into `<work>/<name>-certs`, then `sts-guard serve`
    /// on loopback with `policy` (reloaded every 200 ms), logging to
    /// logs/<name>.log; returns once /readyz says ready (its Service cache
    /// synced).
    pub fn start(cp: &ControlPlane, name: &str, policy: Option<&Path>) -> anyhow::Result<Webhook> {
        Webhook::start_with(cp, name, policy, None)
    }

    /// [`Webhook::start`], talking to the API server through `kubeconfig`
    /// instead of the control plane's own (e.g. one pointing at a proxy).
    pub fn start_with(
        cp: &ControlPlane,
        name: &str,
        policy: Option<&Path>,
        kubeconfig: Option<&Path>,
    ) -> anyhow::Result<Webhook> {
        Webhook::start_with_args(cp, name, policy, kubeconfig, &[])
    }

    /// [`Webhook::start_with`], with more `serve` flags.
    pub fn start_with_args(
        cp: &ControlPlane,
        name: &str,
        policy: Option<&Path>,
        kubeconfig: Option<&Path>,
        extra: &[&str],
    ) -> anyhow::Result<Webhook> {
        let bin = sts_guard_bin();
        let certs = cp.work().join(format!("{name}-certs"));
        let out = run(
            sts_guard_command(cp, &bin)
                .args(["certs", "--dns", "localhost", "--ip", "127.0.0.1", "--out"])
                .arg(&certs),
            None,
        );
        if out.code != 0 {
            bail!("sts-guard certs failed\n{out}");
        }
        let ca = certs.join("ca.crt");
        for attempt in 1..=3 {
            let ports = free_ports(2);
            let addr: SocketAddr = ([127, 0, 0, 1], ports[0]).into();
            let metrics_addr: SocketAddr = ([127, 0, 0, 1], ports[1]).into();
            let mut cmd = sts_guard_command(cp, &bin);
            cmd.arg("serve")
                .arg("--listen")
                .arg(addr.to_string())
                .arg("--metrics-listen")
                .arg(metrics_addr.to_string())
                .arg("--cert")
                .arg(certs.join("tls.crt"))
                .arg("--key")
                .arg(certs.join("tls.key"))
                .args(["--shutdown-delay", "0s", "--reload-interval", "200ms"])
                // What deploy/'s CPU limit of 500m gives a pod: one thread
                // (the HTTP tests run the multi-thread default).
                .args(["--worker-threads", "1"]);
            if let Some(policy) = policy {
                cmd.arg("--config").arg(policy);
            }
            if let Some(kubeconfig) = kubeconfig {
                cmd.env("KUBECONFIG", kubeconfig);
            }
            cmd.args(extra);
            let pid = cp.spawn(name, &mut cmd)?;
            let mut exited = false;
            let ready = wait_for(
                &format!("{name} /readyz"),
                Duration::from_secs(30),
                Duration::from_millis(100),
                || {
                    if readyz(addr, &ca) {
                        return Ok(true);
                    }
                    if !cp.is_running(pid) {
                        exited = true;
                        bail!("{name} exited");
                    }
                    Ok(false)
                },
            );
            match ready {
                Ok(()) => {
                    return Ok(Webhook {
                        name: name.to_string(),
                        pid,
                        url: format!("https://{addr}"),
                        addr,
                        metrics_addr,
                        ca,
                    });
                }
                Err(_) if exited && attempt < 3 && log_says_port_taken(cp, name) => {
                    eprintln!("e2e: {name}: a port was taken meanwhile; retrying");
                }
                Err(e) => {
                    cp.stop_process(pid);
                    bail!("{e:#}\n{}", cp.logs(40));
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// The text of its /metrics.
    pub fn metrics(&self) -> String {
        let (status, body) = http_get(self.metrics_addr, "/metrics").expect("GET /metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }

    /// The sum of every sample of `family` whose labels include all of
    /// `labels` (`key="value"` strings); 0 when there is none.
    pub fn metric(&self, family: &str, labels: &[&str]) -> f64 {
        metric_sum(&self.metrics(), family, labels)
    }

    /// AdmissionReview requests it answered on `endpoint` (validate, mutate).
    pub fn requests(&self, endpoint: &str) -> f64 {
        let label = format!("endpoint=\"{endpoint}\"");
        self.metric("sts_guard_admission_requests_total", &[&label])
    }

    /// Registers this webhook with the API server through the
    /// configurations of deploy/ (see [`Registration`]) and returns once the
    /// API server calls both: a dry-run create of a StatefulSet the
    /// registration matches is counted in this webhook's metrics on both
    /// endpoints.
    pub fn register(&self, cp: &ControlPlane, registration: &Registration) -> anyhow::Result<()> {
        let ca_pem = std::fs::read(&self.ca)?;
        let list = registration.configurations(cp, &self.url, &ca_pem)?;
        let out = cp.kubectl_with_input(&["apply", "-f", "-"], &list.to_string());
        if out.code != 0 {
            bail!("registering the webhook configurations failed\n{out}");
        }
        // The API server picks new configurations up asynchronously.
        let probe_ns = format!("probe-{}", random_suffix(6));
        let out = cp.kubectl(&["create", "namespace", &probe_ns]);
        if out.code != 0 {
            bail!("creating {probe_ns}\n{out}");
        }
        let probe = probe_statefulset(registration.object_label.as_ref());
        let (validated, mutated) = (self.requests("validate"), self.requests("mutate"));
        wait_for(
            &format!("the API server to call {} on both endpoints", self.name),
            Duration::from_secs(30),
            Duration::from_millis(200),
            || {
                cp.kubectl_with_input(
                    &["create", "--dry-run=server", "-n", &probe_ns, "-f", "-"],
                    &probe,
                );
                Ok(self.requests("validate") > validated && self.requests("mutate") > mutated)
            },
        )
        .with_context(|| cp.logs(30))
    }
}

/// Which of the configurations of deploy/ to register, and how: exactly as
/// shipped (`shipped()`), or a copy under another name that only matches
/// StatefulSets carrying one label, for tests that need a webhook of their
/// own (`only_labelled`) while the shared one keeps serving.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Suffix of the configurations' metadata.name (`sts-guard-<suffix>`).
    pub name_suffix: Option<String>,
    /// `objectSelector.matchLabels` added to every webhook.
    pub object_label: Option<(String, String)>,
    /// The configurations to register, as YAML (e.g. rendered by the Helm
    /// chart); `None`: deploy/base/webhooks.yaml.
    pub manifest: Option<String>,
}

/// The label key [`Registration::only_labelled`] selects on.
pub const WEBHOOK_LABEL: &str = "e2e.sts-guard.io/webhook";

impl Registration {
    pub fn shipped() -> Registration {
        Registration {
            name_suffix: None,
            object_label: None,
            manifest: None,
        }
    }

    /// Configurations `sts-guard-<tag>` matching only StatefulSets labelled
    /// `e2e.sts-guard.io/webhook: <tag>` (and still everything deploy/ says:
    /// rules, namespaceSelector, failurePolicy, timeouts).
    pub fn only_labelled(tag: &str) -> Registration {
        Registration {
            name_suffix: Some(tag.to_string()),
            object_label: Some((WEBHOOK_LABEL.to_string(), tag.to_string())),
            manifest: None,
        }
    }

    /// The same, from the configurations in `yaml` instead of deploy/'s.
    pub fn with_manifest(mut self, yaml: &str) -> Registration {
        self.manifest = Some(yaml.to_string());
        self
    }

    /// The `List` to `kubectl apply`.
    pub fn configurations(
        &self,
        cp: &ControlPlane,
        url: &str,
        ca_pem: &[u8],
    ) -> anyhow::Result<Value> {
        let mut list = match &self.manifest {
            Some(yaml) => webhooks_from_yaml(cp, yaml, "the given manifest", url, ca_pem)?,
            None => webhooks_from_deploy(cp, url, ca_pem)?,
        };
        for cfg in list["items"].as_array_mut().unwrap() {
            if let Some(suffix) = &self.name_suffix {
                let name = format!("{}-{suffix}", cfg["metadata"]["name"].as_str().unwrap());
                cfg["metadata"]["name"] = json!(name);
            }
            if let Some((key, value)) = &self.object_label {
                for hook in cfg["webhooks"].as_array_mut().unwrap() {
                    hook["objectSelector"] = json!({"matchLabels": {key: value}});
                }
            }
        }
        Ok(list)
    }

    /// The names of the configurations this registration creates.
    pub fn names(&self) -> [String; 2] {
        let name = match &self.name_suffix {
            Some(suffix) => format!("sts-guard-{suffix}"),
            None => "sts-guard".to_string(),
        };
        [
            format!("validatingwebhookconfiguration/{name}"),
            format!("mutatingwebhookconfiguration/{name}"),
        ]
    }
}

/// deploy/base/webhooks.yaml as a v1 `List`, each webhook's clientConfig
/// replaced by `url` + its service path and the CA's caBundle: the same
/// rules, selectors, timeouts and failure policies users install, so the
/// tests cannot drift from them. kubectl reads the YAML, as it does for
/// users.
pub fn webhooks_from_deploy(cp: &ControlPlane, url: &str, ca_pem: &[u8]) -> anyhow::Result<Value> {
    let file = repo_root().join("deploy/base/webhooks.yaml");
    let yaml = std::fs::read_to_string(&file)?;
    webhooks_from_yaml(cp, &yaml, &file.display().to_string(), url, ca_pem)
}

/// [`webhooks_from_deploy`] for the configurations in `yaml` (`what` names
/// it in errors).
pub fn webhooks_from_yaml(
    cp: &ControlPlane,
    yaml: &str,
    what: &str,
    url: &str,
    ca_pem: &[u8],
) -> anyhow::Result<Value> {
    let out = cp.kubectl_with_input(
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        yaml,
    );
    if out.code != 0 {
        bail!("kubectl could not read {what}\n{out}");
    }
    let ca = STANDARD.encode(ca_pem);
    // kubectl prints one JSON object per document, back to back.
    let mut docs = Vec::new();
    for doc in serde_json::Deserializer::from_str(&out.stdout).into_iter::<Value>() {
        let mut cfg = doc?;
        for hook in cfg["webhooks"].as_array_mut().context("no webhooks")? {
            let path = hook["clientConfig"]["service"]["path"]
                .as_str()
                .context("webhook without a service path")?
                .to_string();
            hook["clientConfig"] = json!({"url": format!("{url}{path}"), "caBundle": ca});
        }
        docs.push(cfg);
    }
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": docs}))
}

/// The policy of the shared end-to-end webhook. `{run}` is replaced by the
/// run's random id: each namespace named here belongs to one test, which
/// creates it (see [`Cluster::policy_namespace`]). `demo-warn` is the
/// `--keep` demo's.
pub const POLICY: &str = "\
mode: enforce
namespaces:
  warn-{run}: {mode: warn}
  audit-{run}: {mode: audit}
  audit-cli-warn-{run}: {mode: warn}
  audit-cli-audit-{run}: {mode: audit}
  outcomes-warn-{run}: {mode: warn}
  demo-warn: {mode: warn}
  # Names the probe-quality rules, so they deny here (elsewhere they warn).
  strict-{run}:
    rules: {identical-probes: enforce, probe-port: enforce, startup-budget: enforce, disruption-budget: enforce}
  strict-dry-{run}:
    rules: {identical-probes: enforce, probe-port: enforce, startup-budget: enforce, disruption-budget: enforce}
  budgets-enforced-{run}:
    rules: {disruption-budget: enforce}
exemptions:
  - namespace: exempt-{run}
    name: no-service
    rules: [headless-service]
    reason: runs without a Service on purpose (e2e)
  - namespace: audit-cli-exempt-{run}
    name: no-service
    rules: [headless-service]
    reason: runs without a Service on purpose (e2e)
";

/// A control plane with controllers, a scheduler and [`nodes_from_env`]
/// fake nodes (kwok), with sts-guard registered as deploy/ registers it,
/// under [`POLICY`].
pub struct Cluster {
    pub webhook: Webhook,
    /// The policy file the webhook reads (edit it: it is reloaded).
    pub policy: PathBuf,
    /// Random id of this run, in the policy's namespace names.
    pub run: String,
    // Last: dropped (stopped) after everything that refers to it.
    pub cp: ControlPlane,
}

impl Cluster {
    pub fn start() -> anyhow::Result<Cluster> {
        let started = Instant::now();
        let cp = ControlPlane::start_with(&Options {
            nodes: Some(nodes_from_env()?),
            ..Options::default()
        })?;
        eprintln!(
            "e2e: control plane ready in {:.1}s at {}",
            started.elapsed().as_secs_f64(),
            cp.url
        );
        let run = random_suffix(5);
        let policy = cp.work().join("policy.yaml");
        std::fs::write(&policy, POLICY.replace("{run}", &run))?;
        let webhook = Webhook::start(&cp, "sts-guard", Some(&policy))?;
        webhook.register(&cp, &Registration::shipped())?;
        eprintln!(
            "e2e: sts-guard registered in {:.1}s in all",
            started.elapsed().as_secs_f64()
        );
        Ok(Cluster {
            webhook,
            policy,
            run,
            cp,
        })
    }

    /// The namespace [`POLICY`] names `<role>-{run}` (warn, audit, exempt,
    /// audit-cli-warn, ...).
    pub fn policy_namespace(&self, role: &str) -> String {
        let name = format!("{role}-{}", self.run);
        assert!(
            std::fs::read_to_string(&self.policy)
                .unwrap()
                .contains(&name),
            "{name} is not in the policy"
        );
        name
    }
}

/// A StatefulSet for registration probes, labelled for `label` if given.
fn probe_statefulset(label: Option<&(String, String)>) -> String {
    let labels = label.map_or(Value::Null, |(k, v)| json!({k: v}));
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "registration-probe", "labels": labels},
        "spec": {
            "serviceName": "registration-probe",
            "selector": {"matchLabels": {"app": "registration-probe"}},
            "template": {
                "metadata": {"labels": {"app": "registration-probe"}},
                "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}
            }
        }
    })
    .to_string()
}

/// `bin` run against `cp`, with none of the caller's `STS_GUARD_*` settings.
pub fn sts_guard_command(cp: &ControlPlane, bin: &Path) -> std::process::Command {
    let mut cmd = cp.command(bin);
    // Nothing of the caller's sts-guard configuration (clap reads
    // STS_GUARD_* for every flag) may leak into the process under test.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("STS_GUARD_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn log_says_port_taken(cp: &ControlPlane, name: &str) -> bool {
    std::fs::read_to_string(cp.log_path(name)).is_ok_and(|log| log.contains("in use"))
}

/// GET /readyz over TLS, trusting `ca`: true on 200.
fn readyz(addr: SocketAddr, ca: &Path) -> bool {
    block_on(super::is_ready(addr, &super::tls_connector(ca)))
}

/// The sum of the samples of `family` whose label set contains every one
/// of `labels`.
pub fn metric_sum(text: &str, family: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, rest) = series.split_once('{').unwrap_or((series, ""));
            (name == family && labels.iter().all(|want| rest.contains(want)))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .sum()
}
