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

use support::control_plane::sts_guard_bin;
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
    if let Err(e) = support::demo::walkthrough(cp, &mut std::io::stdout()) {
        eprintln!("e2e-demo: {e:#}\n{}", cp.logs(30));
        return ExitCode::FAILURE;
    }
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
