//! What the cluster does with what sts-guard admitted: the controllers,
//! the scheduler and kwok's fake nodes (tests/support/kwok-stages.yaml)
//! act on the stored objects, and each test asserts the outcome the rule
//! or mutation exists for, waiting on conditions.
//!
//! kwok runs no container and no probe: readiness here is what the test
//! says (the annotations `NOT_READY` and `READY_AFTER` on a pod), so probe
//! outcomes (a liveness probe restarting a slow starter...) are not proven
//! here; tests/e2e/README.md lists what is simulated.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Api;
use kube::api::{DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::support::control_plane::{NOT_READY, READY_AFTER, repo_root};
use crate::support::demo::{ADMITTED, walkthrough};
use crate::{Ns, Sts, Svc, accepts, assert_has, assert_lacks, budget, cluster, file, warns};

const PARALLEL: &str = "sts-guard.io/parallel";

/// How long the cluster gets to reach a state (pods scheduled, started,
/// ready; EndpointSlices and budgets updated): seconds when idle, more
/// with the whole suite running on 2 cores.
const SETTLE: Duration = Duration::from_secs(90);

/// A namespace of one test whose pods the API server accepts at once.
async fn ns_for_pods(prefix: &str) -> Ns {
    let ns = Ns::fresh(prefix).await;
    ns.wait_for_service_account().await;
    ns
}

/// Polls `check` every 100 ms until it returns `Some`, which it returns;
/// panics naming `what` after [`SETTLE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {SETTLE:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pods of the StatefulSet `name` (label `app: <name>`), by name.
async fn pods(ns: &Ns, name: &str) -> Vec<Pod> {
    let mut pods = Api::<Pod>::namespaced(ns.client.clone(), &ns.name)
        .list(&ListParams::default().labels(&format!("app={name}")))
        .await
        .expect("list pods")
        .items;
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    pods
}

fn names(pods: &[Pod]) -> Vec<&str> {
    pods.iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect()
}

/// Scheduled on a node and started there: phase Running, with an address.
fn running(pod: &Pod) -> bool {
    let scheduled = pod.spec.as_ref().is_some_and(|s| s.node_name.is_some());
    scheduled
        && pod
            .status
            .as_ref()
            .is_some_and(|s| s.phase.as_deref() == Some("Running") && s.pod_ip.is_some())
}

/// Its Ready condition is True.
fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// `status.readyReplicas` of the StatefulSet `name`.
async fn ready_replicas(ns: &Ns, name: &str) -> i32 {
    ns.statefulset(name)
        .await
        .and_then(|s| s.status)
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

/// Waits until `replicas` pods of `name` are ready, as the StatefulSet's
/// status counts them.
async fn wait_ready(ns: &Ns, name: &str, replicas: i32) {
    eventually(&format!("{replicas} ready pods of {name}"), || async {
        (ready_replicas(ns, name).await == replicas).then_some(())
    })
    .await;
}

fn policy(sts: &StatefulSet) -> &str {
    sts.spec
        .as_ref()
        .and_then(|s| s.pod_management_policy.as_deref())
        .unwrap_or_default()
}

/// `sts` (named `name`) after the headless Service and the budget
/// sts-guard asks for, in the order kubectl must apply them.
fn compliant(name: &str, sts: Sts) -> Vec<String> {
    vec![Svc::new(name).yaml(), budget(name), sts.yaml()]
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn parallel_starts_every_pod_at_once_where_ordered_ready_stops_at_pod_0() {
    let ns = ns_for_pods("parallel").await;
    // 5 replicas whose pods never become ready (a readiness probe that
    // keeps failing), once as written and once asking for Parallel.
    let held = |name: &str| Sts::new(name).replicas(5).pod_annotate(NOT_READY, "true");
    accepts(&ns, &file(&compliant("ordered", held("ordered"))));
    let first = eventually("ordered-0 running", || async {
        let pods = pods(&ns, "ordered").await;
        pods.iter().any(running).then_some(pods)
    })
    .await;
    assert_eq!(names(&first), ["ordered-0"]);

    accepts(
        &ns,
        &file(&compliant(
            "mutated",
            held("mutated").annotate(PARALLEL, "true"),
        )),
    );
    let mutated = eventually("the 5 pods of mutated running", || async {
        let pods = pods(&ns, "mutated").await;
        (pods.iter().filter(|p| running(p)).count() == 5).then_some(pods)
    })
    .await;
    // All five made, scheduled and started while none was ready.
    assert!(!mutated.iter().any(ready), "a held pod became ready");
    assert_eq!(
        policy(&ns.statefulset("mutated").await.unwrap()),
        "Parallel"
    );

    // Meanwhile (the five pods of mutated made, scheduled and started), the
    // OrderedReady one made nothing after pod 0: it waits for it to be
    // ready, and it never is.
    let ordered = ns.statefulset("ordered").await.unwrap();
    assert_eq!(policy(&ordered), "OrderedReady");
    assert_eq!(names(&pods(&ns, "ordered").await), ["ordered-0"]);
    assert_eq!(ordered.status.map(|s| s.replicas), Some(1));
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn parallel_is_all_ready_sooner_than_ordered_ready() {
    let ns = ns_for_pods("ready-time").await;
    // Each pod ready 2 s after it starts: a slow start, the same for both.
    let slow = |name: &str| Sts::new(name).replicas(5).pod_annotate(READY_AFTER, "2s");
    let start = Instant::now();
    accepts(
        &ns,
        &file(
            &[
                compliant("ordered", slow("ordered")),
                compliant("mutated", slow("mutated").annotate(PARALLEL, "true")),
            ]
            .concat(),
        ),
    );
    // When each had all 5 ready, polled every 100 ms.
    let mut done: BTreeMap<&str, Duration> = BTreeMap::new();
    while done.len() < 2 {
        for name in ["ordered", "mutated"] {
            if !done.contains_key(name) && ready_replicas(&ns, name).await == 5 {
                done.insert(name, start.elapsed());
            }
        }
        assert!(
            start.elapsed() < SETTLE,
            "not all ready after {SETTLE:?}: {done:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (parallel, ordered) = (done["mutated"], done["ordered"]);
    println!(
        "time to all 5 pods ready, each ready 2 s after it starts: Parallel {:.1} s, OrderedReady {:.1} s",
        parallel.as_secs_f64(),
        ordered.as_secs_f64()
    );
    // OrderedReady starts each pod once the one before is ready: five
    // slow starts one after the other.
    assert!(ordered >= Duration::from_secs(10), "{ordered:?}");
    assert!(parallel < ordered, "{parallel:?} vs {ordered:?}");
}

/// The endpoints of Service `service`'s EndpointSlices, by pod name;
/// `None` when it has no slice.
async fn endpoints(ns: &Ns, service: &str) -> Option<Vec<String>> {
    let slices = Api::<EndpointSlice>::namespaced(ns.client.clone(), &ns.name)
        .list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .expect("list endpointslices")
        .items;
    if slices.is_empty() {
        return None;
    }
    let mut pods: Vec<String> = slices
        .iter()
        .flat_map(|s| s.endpoints.iter())
        .filter_map(|e| e.target_ref.as_ref()?.name.clone())
        .collect();
    pods.sort();
    Some(pods)
}

/// Each pod of StatefulSet `sts`: (name, `spec.hostname`,
/// `spec.subdomain`), by name.
async fn pod_names(ns: &Ns, sts: &str) -> Vec<(String, Option<String>, Option<String>)> {
    let pods = Api::<Pod>::namespaced(ns.client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .expect("list pods")
        .items;
    let mut names: Vec<_> = pods
        .into_iter()
        .filter(|p| {
            p.metadata
                .name
                .as_deref()
                .and_then(|n| n.strip_prefix(sts)?.strip_prefix('-'))
                .is_some_and(|ordinal| ordinal.parse::<u32>().is_ok())
        })
        .map(|p| {
            let spec = p.spec.unwrap_or_default();
            (
                p.metadata.name.unwrap_or_default(),
                spec.hostname,
                spec.subdomain,
            )
        })
        .collect();
    names.sort();
    names
}

/// The records behind `web-0.web.<ns>.svc.cluster.local` are the pod's
/// hostname and subdomain (the StatefulSet controller sets them from
/// `serviceName`) published, with the pod's address, by the EndpointSlice
/// controller for the Service the subdomain names. This fixture gives pods
/// loopback addresses, which the API server refuses in EndpointSlices, so
/// the last step is not shown here: the test shows the pods ready under
/// their names and the headless Service selecting them.
#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn a_headless_service_names_each_ready_pod() {
    let ns = ns_for_pods("headless").await;
    let out = accepts(&ns, &file(&compliant("web", Sts::new("web").replicas(3))));
    assert_lacks(&out.stderr, "Warning:");
    wait_ready(&ns, "web", 3).await;

    let pods = pod_names(&ns, "web").await;
    for (pod, hostname, subdomain) in &pods {
        assert_eq!(hostname.as_deref(), Some(pod.as_str()), "{pods:?}");
        assert_eq!(subdomain.as_deref(), Some("web"), "{pods:?}");
        println!("{pod}.web.{}.svc.cluster.local", ns.name);
    }
    let names: Vec<&str> = pods.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(names, ["web-0", "web-1", "web-2"]);
    let service = ns.service("web").await.unwrap().spec.unwrap();
    assert_eq!(service.cluster_ip.as_deref(), Some("None"));
    let selector = service.selector.unwrap_or_default();
    assert!(!selector.is_empty());
    let labels = ns
        .statefulset("web")
        .await
        .and_then(|s| s.spec?.template.metadata?.labels)
        .unwrap_or_default();
    for (key, value) in &selector {
        assert_eq!(labels.get(key), Some(value), "{selector:?} vs {labels:?}");
    }
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn without_a_headless_service_selecting_the_pods_no_pod_gets_a_name() {
    // Warn mode: each is admitted with the warning, so its pods run.
    let ns = Ns::from_policy("outcomes-warn").await;
    ns.wait_for_service_account().await;
    let err = warns(
        &ns,
        &file(&[
            // A headless Service that selects other pods.
            Svc::new("stray").selector("app", "someone-else").yaml(),
            budget("stray"),
            Sts::new("stray").replicas(2).yaml(),
            // No Service at all.
            budget("lost"),
            Sts::new("lost").replicas(2).yaml(),
        ]),
    );
    assert_has(
        &err,
        r#"[headless-service] spec.serviceName Service "stray" selects"#,
    );
    assert_has(
        &err,
        r#"[headless-service] spec.serviceName "lost" names no Service"#,
    );
    for name in ["stray", "lost"] {
        wait_ready(&ns, name, 2).await;
    }

    // stray: its Service's slice (made when the Service was, empty) never
    // lists these pods: no stray-0.stray.<ns>.svc.cluster.local.
    let stray = eventually("the EndpointSlice of stray", || endpoints(&ns, "stray")).await;
    assert!(stray.is_empty(), "{stray:?}");
    // lost: no Service, no slice, no name.
    assert!(endpoints(&ns, "lost").await.is_none());
    // The pods ask for the names all the same: nothing will answer them.
    for (sts, pods) in [
        ("stray", pod_names(&ns, "stray").await),
        ("lost", pod_names(&ns, "lost").await),
    ] {
        assert_eq!(pods.len(), 2, "{pods:?}");
        assert!(pods.iter().all(|p| p.2.as_deref() == Some(sts)), "{pods:?}");
    }
}

/// Asks for the eviction of `pod`, as `kubectl drain` does, without
/// carrying it out (dry run) when `dry_run`.
async fn evict(ns: &Ns, pod: &str, dry_run: bool) -> Result<(), kube::Error> {
    let params = EvictParams {
        delete_options: Some(DeleteParams {
            dry_run,
            ..DeleteParams::default()
        }),
        post_options: PostParams {
            dry_run,
            ..PostParams::default()
        },
    };
    // kube would retry a refusal (429) for minutes: see it at once.
    let client = cluster().cp.client_without_retries().await;
    Api::<Pod>::namespaced(client, &ns.name)
        .evict(pod, &params)
        .await
        .map(drop)
}

/// `status.disruptionsAllowed` of the budget `name` once it has counted
/// `healthy` healthy pods.
async fn disruptions_allowed(ns: &Ns, name: &str, healthy: i32) -> i32 {
    let budgets = Api::<PodDisruptionBudget>::namespaced(ns.client.clone(), &ns.name);
    eventually(
        &format!("budget {name} counting {healthy} healthy"),
        || async {
            let status = budgets.get(name).await.ok()?.status?;
            (status.current_healthy == healthy).then_some(status.disruptions_allowed)
        },
    )
    .await
}

/// Takes `pod` out of service: its readiness probe starts failing.
async fn fail_readiness(ns: &Ns, pod: &str) {
    Api::<Pod>::namespaced(ns.client.clone(), &ns.name)
        .patch(
            pod,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {NOT_READY: "true"}}})),
        )
        .await
        .expect("annotating the pod");
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn a_disruption_budget_refuses_a_second_eviction_while_one_pod_is_down() {
    let ns = ns_for_pods("budget").await;
    // The budget the disruption-budget warning asks for.
    let out = accepts(&ns, &file(&compliant("db", Sts::new("db").replicas(3))));
    assert_lacks(&out.stderr, "Warning:");
    wait_ready(&ns, "db", 3).await;
    assert_eq!(disruptions_allowed(&ns, "db", 3).await, 1);
    // A drain may take one pod.
    evict(&ns, "db-1", true)
        .await
        .expect("one eviction allowed");

    // db-0 goes down: the budget allows no other disruption, and the
    // eviction of a second pod is refused.
    fail_readiness(&ns, "db-0").await;
    assert_eq!(disruptions_allowed(&ns, "db", 2).await, 0);
    match evict(&ns, "db-1", false).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 429, "{status:?}");
            assert_has(&status.message, "disruption budget");
        }
        other => panic!("eviction of db-1 not refused: {other:?}"),
    }
    assert!(
        pods(&ns, "db").await.iter().filter(|p| ready(p)).count() == 2,
        "db-1 was evicted"
    );

    // Without the budget (the warning ignored), the same drain takes a
    // second pod while one is down.
    let err = warns(
        &ns,
        &file(&[Svc::new("bare").yaml(), Sts::new("bare").replicas(3).yaml()]),
    );
    assert_has(&err, "[disruption-budget]");
    wait_ready(&ns, "bare", 3).await;
    fail_readiness(&ns, "bare-0").await;
    wait_ready(&ns, "bare", 2).await;
    evict(&ns, "bare-1", true)
        .await
        .expect("nothing refuses the eviction without a budget");
}

/// The examples README calls compliant: each draws no warning at all.
const COMPLIANT_EXAMPLES: [(&str, &str); 2] = [
    ("examples/compliant.yaml", "web"),
    ("examples/mutated.yaml", "queue"),
];

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn the_compliant_examples_roll_out() {
    let ns = ns_for_pods("rollout").await;
    let c = cluster();
    for (example, _) in COMPLIANT_EXAMPLES {
        c.cp.provide_volumes(&ns.name, &repo_root().join(example))
            .unwrap();
        let out = run_kubectl(&["apply", "-n", &ns.name, "-f", example]);
        out.assert_exit(0);
        assert_lacks(&out.stderr, "Warning:");
    }
    for (_, sts) in COMPLIANT_EXAMPLES {
        let out = run_kubectl(&[
            "rollout",
            "status",
            "-n",
            &ns.name,
            &format!("statefulset/{sts}"),
            "--timeout=90s",
        ]);
        out.assert_exit(0);
        assert_has(&out.stdout, "roll out complete");
        println!("{}", out.stdout.trim());
    }
}

/// kubectl run from the repository root (the examples' paths are relative).
fn run_kubectl(args: &[&str]) -> crate::support::control_plane::Output {
    crate::support::control_plane::run(
        cluster()
            .cp
            .command("kubectl")
            .current_dir(repo_root())
            .args(args),
        None,
    )
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn the_demo_shows_the_examples_pods_running_and_ready() {
    // What `tests/e2e/run.sh --keep` prints, on the shared cluster.
    let mut transcript = Vec::new();
    walkthrough(&cluster().cp, &mut transcript).unwrap();
    let text = String::from_utf8(transcript).unwrap();
    assert_has(&text, crate::DENIED);

    // `kubectl get pods -o wide`: every pod of each admitted example is
    // Running with all its containers ready (READY n/n), on a kwok node.
    let pods = text
        .split("$ kubectl get pods -n demo -o wide\n")
        .nth(1)
        .and_then(|rest| rest.split("\n$ kubectl").next())
        .expect("the pods are shown");
    for (_, sts) in ADMITTED {
        let lines: Vec<&str> = pods
            .lines()
            .filter(|l| l.starts_with(&format!("{sts}-")))
            .collect();
        assert!(!lines.is_empty(), "no pod of {sts} shown:\n{pods}");
        for line in lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (ready, of) = fields[1].split_once('/').unwrap();
            assert_eq!(ready, of, "{line}");
            assert_eq!(fields[2], "Running", "{line}");
            assert!(line.contains("kwok-node-"), "{line}");
        }
    }
    // Each pod's name under its StatefulSet's Service.
    let names = text
        .split("custom-columns=POD:")
        .nth(1)
        .expect("the pods' names are shown");
    for pod in ["web-0", "web-1"] {
        let line = names
            .lines()
            .find(|l| l.starts_with(&format!("{pod} ")))
            .unwrap_or_else(|| panic!("no {pod}:\n{names}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(fields[1..3], [pod, "web"], "{line}");
        assert!(fields[3].starts_with("127.1."), "{line}");
    }
    println!("{text}");
}
