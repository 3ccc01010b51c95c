//! End to end: sts-guard behind a real kube-apiserver + etcd on loopback,
//! driven with kubectl as users drive it (what they see: exit codes,
//! `Warning:` lines, `--dry-run=server`), stored state read back with kube.
//!
//! One control plane and one webhook (registered through deploy/'s
//! configurations, under [`support::webhook::POLICY`]) serve every test of
//! this binary; they start on first use and stop when it exits. Each test
//! works in namespaces of its own, so tests run in any order and in
//! parallel. They are `#[ignore]`d so plain `cargo test` needs no control
//! plane:
//!
//!   tests/e2e/run.sh                                   # all of them
//!   cargo test --test e2e -- --ignored                 # the same
//!   cargo test --test e2e -- --ignored dry_run_missing_service_warns
//!
//! The control plane binaries come from tests/e2e/build-control-plane.sh
//! (built once, minutes) or `CP_BIN_DIR`; the sts-guard binary is cargo's,
//! or `STS_GUARD_BIN`.

#[path = "../support/mod.rs"]
mod support;

mod admission;
mod audit_cli;
mod deploy;
mod dry_run;
mod fail_closed;
mod harness;
mod helm;
mod lookups;
mod managed_certs;
mod mutation;
mod operable;
mod outcomes;
mod policy_modes;
mod policy_objects;
mod probe_quality;
mod reports;
mod updates;
mod vap;
mod vap_sync;
mod watch_cache;

use std::sync::{Once, OnceLock};
use std::time::Duration;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use serde_json::json;

use support::control_plane::{Output, random_suffix, stop_at_exit, wait_for};
use support::webhook::Cluster;

/// Notes sts-guard appends to a warning that would have been a denial,
/// saying why it was allowed. One place, so a rewording is a one-line change.
pub mod note {
    /// On `--dry-run=server`, a Service in the same apply is not stored.
    pub const DRY_RUN: &str = "allowed on dry-run";
    /// On UPDATE, the old object already broke the rule.
    pub const ALREADY_BROKEN: &str = "already so before this update";
    /// On UPDATE, the Service is gone but serviceName cannot change.
    pub const SERVICE_GONE_ON_UPDATE: &str = "allowed on update: serviceName is immutable";
}

/// What kubectl prints first when sts-guard's validating webhook denies.
pub const DENIED: &str = r#"admission webhook "validate.sts-guard.io" denied the request"#;

/// The shared control plane + webhook, started on first use.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Result<Cluster, String>> = OnceLock::new();
    static STOP_AT_EXIT: Once = Once::new();
    match CLUSTER.get_or_init(|| Cluster::start().map_err(|e| format!("{e:#}"))) {
        Ok(cluster) => {
            // A static is never dropped: stop it when the process exits.
            STOP_AT_EXIT.call_once(|| stop_at_exit(&cluster.cp));
            cluster
        }
        Err(e) => panic!("the e2e cluster did not start: {e}"),
    }
}

/// `kubectl ARGS...` against the shared cluster.
pub fn kubectl(args: &[&str]) -> Output {
    cluster().cp.kubectl(args)
}

/// `kubectl apply -n NS FLAGS... -f -` with `manifest` on stdin.
pub fn apply(ns: &Ns, manifest: &str, flags: &[&str]) -> Output {
    let mut args = vec!["apply", "-n", &ns.name];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["-f", "-"]);
    cluster().cp.kubectl_with_input(&args, manifest)
}

/// kubectl apply succeeds; its output.
#[track_caller]
pub fn accepts(ns: &Ns, manifest: &str) -> Output {
    let out = apply(ns, manifest, &[]);
    out.assert_exit(0);
    out
}

/// kubectl apply fails (exit 1) with sts-guard's denial; its stderr.
#[track_caller]
pub fn rejects(ns: &Ns, manifest: &str) -> String {
    denied(&apply(ns, manifest, &[]))
}

/// kubectl apply succeeds and prints at least one `Warning:`; its stderr.
#[track_caller]
pub fn warns(ns: &Ns, manifest: &str) -> String {
    let out = accepts(ns, manifest);
    assert!(out.stderr.contains("Warning: "), "no warning\n{out}");
    out.stderr
}

/// The command exited 1 with sts-guard's denial; its stderr.
#[track_caller]
pub fn denied(out: &Output) -> String {
    out.assert_exit(1);
    assert!(out.stderr.contains(DENIED), "not sts-guard's denial\n{out}");
    out.stderr.clone()
}

/// `haystack` contains `needle`, or a panic showing both.
#[track_caller]
pub fn assert_has(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}

/// `haystack` does not contain `needle`, or a panic showing both.
#[track_caller]
pub fn assert_lacks(haystack: &str, needle: &str) {
    assert!(
        !haystack.contains(needle),
        "unexpected {needle:?} in:\n{haystack}"
    );
}

/// A namespace of one test, with a kube client for reading what is stored.
pub struct Ns {
    pub name: String,
    pub client: kube::Client,
}

impl Ns {
    /// A new namespace `<prefix>-<random>`.
    pub async fn fresh(prefix: &str) -> Ns {
        Ns::create(format!("{prefix}-{}", random_suffix(6)), &[]).await
    }

    /// The namespace the policy names `<role>-<run>` (warn, audit, exempt...),
    /// created now; it belongs to the calling test alone.
    pub async fn from_policy(role: &str) -> Ns {
        Ns::create(cluster().policy_namespace(role), &[]).await
    }

    /// A new namespace labelled `sts-guard.io/ignore`, which deploy/'s
    /// namespaceSelector excludes: what is applied there is stored
    /// unreviewed, as if it predated the webhook (see [`Ns::stop_ignoring`]).
    pub async fn ignored(prefix: &str) -> Ns {
        Ns::create(
            format!("{prefix}-{}", random_suffix(6)),
            &[("sts-guard.io/ignore", "true")],
        )
        .await
    }

    /// A namespace that exists already (kube-system...).
    pub async fn existing(name: &str) -> Ns {
        Ns {
            name: name.to_string(),
            client: cluster().cp.client().await,
        }
    }

    async fn create(name: String, labels: &[(&str, &str)]) -> Ns {
        let client = cluster().cp.client().await;
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        Ns { name, client }
    }

    /// Drops the `sts-guard.io/ignore` label and waits until the API server
    /// sends this namespace's StatefulSets to sts-guard again (its
    /// namespace cache catches up asynchronously): a dry-run of one without
    /// probes is denied.
    pub async fn stop_ignoring(&self) {
        Api::<Namespace>::all(self.client.clone())
            .patch(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"sts-guard.io/ignore": null}}})),
            )
            .await
            .expect("removing the ignore label");
        let probe = Sts::new("coverage-probe").no_liveness().yaml();
        wait_for(
            &format!("the webhook to cover {}", self.name),
            Duration::from_secs(30),
            Duration::from_millis(200),
            || {
                let out = apply(self, &probe, &["--dry-run=server"]);
                Ok(out.code == 1 && out.stderr.contains(DENIED))
            },
        )
        .unwrap();
    }

    /// Waits (up to 30 s) until the controllers have made this namespace's
    /// `default` ServiceAccount: until then the API server refuses its
    /// pods, and the StatefulSet controller retries with a back-off that
    /// would blur what a test measures.
    pub async fn wait_for_service_account(&self) {
        let accounts = Api::<ServiceAccount>::namespaced(self.client.clone(), &self.name);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !accounts
            .get_opt("default")
            .await
            .is_ok_and(|sa| sa.is_some())
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no ServiceAccount default in {} after 30 s",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The StatefulSet `name` as stored, if it is.
    pub async fn statefulset(&self, name: &str) -> Option<StatefulSet> {
        Api::<StatefulSet>::namespaced(self.client.clone(), &self.name)
            .get_opt(name)
            .await
            .expect("GET statefulset")
    }

    /// The Service `name` as stored, if it is.
    pub async fn service(&self, name: &str) -> Option<Service> {
        Api::<Service>::namespaced(self.client.clone(), &self.name)
            .get_opt(name)
            .await
            .expect("GET service")
    }
}

/// A StatefulSet like the users' (an app with both probes and a sidecar
/// with both), serviceName and pod label `app` = its name, unless told
/// otherwise.
#[derive(Clone)]
pub struct Sts {
    name: String,
    app: String,
    service: String,
    liveness: bool,
    readiness: bool,
    replicas: u32,
    labels: Vec<(String, String)>,
    annotations: Vec<(String, String)>,
    pod_annotations: Vec<(String, String)>,
}

impl Sts {
    pub fn new(name: &str) -> Sts {
        Sts {
            name: name.to_string(),
            app: name.to_string(),
            service: name.to_string(),
            liveness: true,
            readiness: true,
            replicas: 1,
            labels: Vec::new(),
            annotations: Vec::new(),
            pod_annotations: Vec::new(),
        }
    }

    /// The app container has no livenessProbe.
    pub fn no_liveness(mut self) -> Sts {
        self.liveness = false;
        self
    }

    /// The app container has no readinessProbe.
    pub fn no_readiness(mut self) -> Sts {
        self.readiness = false;
        self
    }

    pub fn service(mut self, name: &str) -> Sts {
        self.service = name.to_string();
        self
    }

    /// Its pods are labelled (and selected) `app: <app>`.
    pub fn app(mut self, app: &str) -> Sts {
        self.app = app.to_string();
        self
    }

    pub fn replicas(mut self, n: u32) -> Sts {
        self.replicas = n;
        self
    }

    /// A label on the StatefulSet itself (not its pods).
    pub fn label(mut self, key: &str, value: &str) -> Sts {
        self.labels.push((key.to_string(), value.to_string()));
        self
    }

    pub fn annotate(mut self, key: &str, value: &str) -> Sts {
        self.annotations.push((key.to_string(), value.to_string()));
        self
    }

    /// An annotation on its pod template, so on every pod.
    pub fn pod_annotate(mut self, key: &str, value: &str) -> Sts {
        self.pod_annotations
            .push((key.to_string(), value.to_string()));
        self
    }

    pub fn yaml(&self) -> String {
        // Keys and values as JSON strings, which YAML reads as strings.
        let q = |s: &str| serde_json::to_string(s).unwrap();
        let map = |pairs: &[(String, String)], indent: &str| -> String {
            pairs
                .iter()
                .map(|(k, v)| format!("{indent}{}: {}\n", q(k), q(v)))
                .collect()
        };
        let name = &self.name;
        let labels = if self.labels.is_empty() {
            String::new()
        } else {
            format!("  labels:\n{}", map(&self.labels, "    "))
        };
        let annotations = map(&self.annotations, "    ");
        let pod_annotations = if self.pod_annotations.is_empty() {
            String::new()
        } else {
            format!(
                "      annotations:\n{}",
                map(&self.pod_annotations, "        ")
            )
        };
        let liveness = if self.liveness {
            "          livenessProbe:\n            httpGet: {path: /healthz, port: http}\n            periodSeconds: 10\n            initialDelaySeconds: 30\n"
        } else {
            ""
        };
        let readiness = if self.readiness {
            "          readinessProbe:\n            tcpSocket: {port: http}\n"
        } else {
            ""
        };
        format!(
            "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
{labels}  annotations:
    e2e: \"true\"
{annotations}spec:
  serviceName: {service}
  replicas: {replicas}
  selector:
    matchLabels: {{app: {app}}}
  template:
    metadata:
      labels: {{app: {app}}}
{pod_annotations}    spec:
      containers:
        - name: app
          image: python:3.12-slim
          ports: [{{name: http, containerPort: 8000}}]
{liveness}{readiness}        - name: sidecar
          image: busybox:1.36
          livenessProbe:
            exec: {{command: [cat, /tmp/ok]}}
            initialDelaySeconds: 30
          readinessProbe:
            exec: {{command: [cat, /tmp/ready]}}
",
            app = self.app,
            service = self.service,
            replicas = self.replicas,
        )
    }
}

/// A headless Service selecting `app: <name>`, unless told otherwise.
pub struct Svc {
    name: String,
    headless: bool,
    selector: (String, String),
}

impl Svc {
    pub fn new(name: &str) -> Svc {
        Svc {
            name: name.to_string(),
            headless: true,
            selector: ("app".to_string(), name.to_string()),
        }
    }

    /// An ordinary ClusterIP Service (not headless).
    pub fn cluster_ip(mut self) -> Svc {
        self.headless = false;
        self
    }

    pub fn selector(mut self, key: &str, value: &str) -> Svc {
        self.selector = (key.to_string(), value.to_string());
        self
    }

    pub fn yaml(&self) -> String {
        let cluster_ip = if self.headless {
            "  clusterIP: None\n"
        } else {
            ""
        };
        format!(
            "apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
{cluster_ip}  selector: {{{key}: {value}}}
  ports: [{{name: http, port: 8000}}]
",
            name = self.name,
            key = self.selector.0,
            value = self.selector.1,
        )
    }
}

/// A PodDisruptionBudget `name` (maxUnavailable 1) selecting `app: <name>`,
/// the pods of `Sts::new(name)`.
pub fn budget(name: &str) -> String {
    format!(
        "apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {name}
spec:
  maxUnavailable: 1
  selector:
    matchLabels: {{app: {name}}}
"
    )
}

/// Documents joined into one multi-document YAML file, in order.
pub fn file(docs: &[String]) -> String {
    docs.join("---\n")
}
