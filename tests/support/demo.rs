//! The walkthrough `tests/e2e/run.sh --keep` shows a newcomer: examples/
//! applied as a user would, then what the cluster made of them (pods
//! Running and Ready on kwok's nodes, the headless Services' per-pod
//! names). Shared by the demo (the example `e2e-demo`) and the e2e test
//! that holds it to its output (`demo::the_demo_shows_the_examples_pods_ready`).

use std::io::Write;
use std::time::Duration;

use anyhow::Context;

use super::control_plane::{ControlPlane, repo_root, run, wait_for};

/// The namespaces it applies to: `demo` (the policy's default, enforce)
/// and `demo-warn` (warn mode in the e2e policy).
pub const NAMESPACES: [&str; 2] = ["demo", "demo-warn"];

/// The examples applied in `demo` that are admitted, and their
/// StatefulSets: the walkthrough waits for each to roll out.
pub const ADMITTED: [(&str, &str); 3] = [
    ("examples/compliant.yaml", "web"),
    ("examples/mutated.yaml", "queue"),
    ("examples/probe-quality.yaml", "search"),
];

/// Runs the walkthrough on `cp`, writing each command (`$ kubectl ...`)
/// and what kubectl printed (stdout and stderr, in that order) to `out`.
pub fn walkthrough(cp: &ControlPlane, out: &mut dyn Write) -> anyhow::Result<()> {
    for ns in NAMESPACES {
        let created = cp.kubectl(&["create", "namespace", ns]);
        anyhow::ensure!(created.code == 0, "creating namespace {ns}\n{created}");
        // Pods are refused until the controllers made the namespace's
        // default ServiceAccount (a second or so).
        wait_for(
            &format!("the default ServiceAccount of {ns}"),
            Duration::from_secs(30),
            Duration::from_millis(100),
            || Ok(cp.kubectl(&["get", "sa", "-n", ns, "default"]).code == 0),
        )?;
    }
    // No storage provisioner here: volumes reserved for the examples' claims.
    for (example, _) in ADMITTED {
        cp.provide_volumes("demo", &repo_root().join(example))?;
    }
    // What a user types, from the repository root, and what kubectl says.
    let mut show = |args: &[&str]| -> anyhow::Result<()> {
        writeln!(out, "\n$ kubectl {}", args.join(" "))?;
        let shown = run(
            cp.command("kubectl").current_dir(repo_root()).args(args),
            None,
        );
        write!(out, "{}{}", shown.stdout, shown.stderr)?;
        out.flush().context("writing the walkthrough")
    };
    show(&["apply", "-n", "demo", "-f", "examples/compliant.yaml"])?;
    show(&["apply", "-n", "demo", "-f", "examples/missing-probes.yaml"])?;
    show(&[
        "apply",
        "-n",
        "demo",
        "-f",
        "examples/no-headless-service.yaml",
    ])?;
    show(&[
        "apply",
        "-n",
        "demo-warn",
        "-f",
        "examples/missing-probes.yaml",
    ])?;
    show(&["apply", "-n", "demo", "-f", "examples/mutated.yaml"])?;
    show(&[
        "get",
        "sts",
        "-n",
        "demo",
        "queue",
        "-o",
        r#"jsonpath={.spec.podManagementPolicy}{"\n"}"#,
    ])?;
    show(&[
        "get",
        "sts",
        "-n",
        "demo",
        "queue",
        "-o",
        r#"jsonpath={.spec.template.spec.containers[0].startupProbe}{"\n"}"#,
    ])?;
    show(&["apply", "-n", "demo", "-f", "examples/probe-quality.yaml"])?;
    // What the cluster made of them: pods scheduled on kwok's fake nodes,
    // Running and Ready (no container runs: kwok plays the kubelet), and
    // the headless Services' per-pod names.
    for (_, sts) in ADMITTED {
        show(&[
            "rollout",
            "status",
            "-n",
            "demo",
            &format!("statefulset/{sts}"),
            "--timeout=120s",
        ])?;
    }
    show(&["get", "pods", "-n", "demo", "-o", "wide"])?;
    // Each pod's DNS name: `<hostname>.<subdomain>.demo.svc.cluster.local`,
    // set from the StatefulSet's serviceName. (The EndpointSlices that
    // would publish them cannot: the pods' addresses are loopback here.)
    show(&[
        "get",
        "pods",
        "-n",
        "demo",
        "-o",
        "custom-columns=POD:.metadata.name,HOSTNAME:.spec.hostname,SUBDOMAIN:.spec.subdomain,IP:.status.podIP",
    ])?;
    Ok(())
}
