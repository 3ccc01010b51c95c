//! `tests/e2e/run.sh --keep`: the end-to-end cluster (a real kube-apiserver
//! and etcd on loopback, the controllers, a scheduler and kwok's fake
//! nodes, sts-guard registered as deploy/ registers it) kept running for
//! you to try: examples/ applied, their pods shown Running and Ready with
//! the per-pod names of their headless Services, the KUBECONFIG printed,
//! Ctrl-C tears everything down.
//!
//! Built as the example `e2e-demo` (Cargo.toml), so it shares the tests'
//! fixture; sts-guard is `STS_GUARD_BIN`, else target/<profile>/sts-guard.

#[path = "../support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::time::Duration;

use support::control_plane::{repo_root, run, sts_guard_bin, wait_for};
use support::webhook::Cluster;

fn main() -> ExitCode {
    let cluster = match Cluster::start() {
        Ok(cluster) => cluster,
        Err(e) => {
            eprintln!("e2e-demo: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let cp = &cluster.cp;
    for ns in ["demo", "demo-warn"] {
        cp.kubectl(&["create", "namespace", ns]).assert_exit(0);
        // Pods are refused until the controllers made the namespace's
        // default ServiceAccount (a second or so).
        let made = wait_for(
            &format!("the default ServiceAccount of {ns}"),
            Duration::from_secs(30),
            Duration::from_millis(100),
            || Ok(cp.kubectl(&["get", "sa", "-n", ns, "default"]).code == 0),
        );
        if let Err(e) = made {
            eprintln!("e2e-demo: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    // No storage provisioner here: volumes reserved for the examples' claims.
    for example in ["examples/compliant.yaml", "examples/mutated.yaml"] {
        if let Err(e) = cp.provide_volumes("demo", &repo_root().join(example)) {
            eprintln!("e2e-demo: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    // What a user types, from the repository root, and what kubectl says.
    let show = |args: &[&str]| {
        println!("\n$ kubectl {}", args.join(" "));
        let out = run(
            cp.command("kubectl").current_dir(repo_root()).args(args),
            None,
        );
        print!("{}", out.stdout);
        eprint!("{}", out.stderr);
    };
    show(&["apply", "-n", "demo", "-f", "examples/compliant.yaml"]);
    show(&["apply", "-n", "demo", "-f", "examples/missing-probes.yaml"]);
    show(&[
        "apply",
        "-n",
        "demo",
        "-f",
        "examples/no-headless-service.yaml",
    ]);
    show(&[
        "apply",
        "-n",
        "demo-warn",
        "-f",
        "examples/missing-probes.yaml",
    ]);
    show(&["apply", "-n", "demo", "-f", "examples/mutated.yaml"]);
    show(&["apply", "-n", "demo", "-f", "examples/probe-quality.yaml"]);
    show(&[
        "get",
        "sts",
        "-n",
        "demo",
        "queue",
        "-o",
        r#"jsonpath={.spec.podManagementPolicy}{"\n"}"#,
    ]);
    show(&[
        "get",
        "sts",
        "-n",
        "demo",
        "queue",
        "-o",
        r#"jsonpath={.spec.template.spec.containers[0].startupProbe}{"\n"}"#,
    ]);
    // What the cluster made of them: pods scheduled on kwok's fake nodes,
    // Running and Ready (no container runs: kwok plays the kubelet), and
    // the headless Services' per-pod names.
    for sts in ["web", "queue", "search"] {
        show(&[
            "rollout",
            "status",
            "-n",
            "demo",
            &format!("statefulset/{sts}"),
            "--timeout=120s",
        ]);
    }
    show(&["get", "pods", "-n", "demo", "-o", "wide"]);
    show(&[
        "get",
        "endpointslices",
        "-n",
        "demo",
        "-o",
        r"custom-columns=SERVICE:.metadata.labels.kubernetes\.io/service-name,HOSTNAMES:.endpoints[*].hostname,ADDRESSES:.endpoints[*].addresses[0]",
    ]);
    println!(
        "
sts-guard is running with a real kube-apiserver. In another shell:

  export KUBECONFIG={kubeconfig}
  kubectl apply --dry-run=server -n demo -f examples/no-headless-service.yaml
  {bin} check -f examples/

Policy: {policy} (edit it: the webhook reloads it; namespace demo-warn is in warn mode).
Logs: {logs}/
Ctrl-C tears everything down.",
        kubeconfig = cp.kubeconfig.display(),
        bin = sts_guard_bin().display(),
        policy = cluster.policy.display(),
        logs = cp.work().join("logs").display(),
    );

    // Until Ctrl-C or SIGTERM, or until the webhook dies (checked every
    // second): then stop everything, newest first.
    let webhook_died = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let ctrl_c = tokio::signal::ctrl_c();
            tokio::pin!(ctrl_c);
            loop {
                tokio::select! {
                    _ = &mut ctrl_c => return false,
                    _ = term.recv() => return false,
                    _ = tick.tick() => {
                        if !cp.is_running(cluster.webhook.pid) {
                            return true;
                        }
                    }
                }
            }
        });
    if webhook_died {
        eprintln!("e2e-demo: sts-guard exited\n{}", cp.logs(30));
    }
    eprintln!("\nstopping");
    drop(cluster);
    if webhook_died {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
