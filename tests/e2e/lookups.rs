//! What sts-guard's lookups cost the API server, and what they do when it
//! stalls, counted by the API server itself: its audit log (the control
//! plane records every Service and PodDisruptionBudget request, with the
//! namespace, so a test counts exactly its own).

use std::time::{Duration, Instant};

use crate::support::control_plane::{random_suffix, wait_for};
use crate::support::proxy::{Network, Proxy};
use crate::support::webhook::{Registration, WEBHOOK_LABEL, Webhook};
use crate::{Ns, Sts, Svc, accepts, apply, assert_has, assert_lacks, budget, cluster, file};

const NO_BUDGET: &str =
    "Warning: [disruption-budget] spec.replicas is 3 and no PodDisruptionBudget selects the pods";

/// Lookups of `resource` in `ns` that reached the API server (GET or LIST).
fn lookups(ns: &Ns, resource: &str) -> usize {
    cluster()
        .cp
        .audited(resource, &ns.name)
        .iter()
        .filter(|verb| matches!(verb.as_str(), "get" | "list"))
        .count()
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn a_namespace_without_budgets_costs_no_budget_request() {
    let ns = Ns::fresh("nobudget").await;
    accepts(&ns, &Svc::new("web").yaml());
    for i in 0..100 {
        let sts = Sts::new(&format!("web-{i}"))
            .service("web")
            .app("web")
            .replicas(3);
        let out = accepts(&ns, &sts.yaml());
        assert_has(&out.stderr, NO_BUDGET);
    }
    assert_eq!(
        lookups(&ns, "poddisruptionbudgets"),
        0,
        "PodDisruptionBudget GET/LIST requests in {} for 100 creates",
        ns.name
    );
    let metric = cluster().webhook.metric(
        "sts_guard_disruption_budget_lookups_total",
        &[r#"path="api""#],
    );
    println!(
        "100 creates of a 3-replica StatefulSet, no budget in the namespace: 0 PodDisruptionBudget requests to the API server (webhook-wide budget lookups by API so far: {metric})"
    );
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn a_budget_created_just_before_its_statefulset_counts_even_where_it_is_enforced() {
    // The policy enforces disruption-budget here: a budget the watch has
    // not delivered yet must not turn into a denial.
    let ns = Ns::from_policy("budgets-enforced").await;
    let mut confirmed = 0;
    let mut last_list = None;
    for i in 0..10 {
        let name = format!("db-{i}");
        let sts = Sts::new(&name).replicas(3);
        let before = lookups(&ns, "poddisruptionbudgets");
        let out = apply(
            &ns,
            &file(&[Svc::new(&name).yaml(), budget(&name), sts.yaml()]),
            &[],
        );
        out.assert_exit(0);
        assert_lacks(&out.stderr, "[disruption-budget]");
        let listed = lookups(&ns, "poddisruptionbudgets") - before;
        if listed > 0 {
            last_list = Some(Instant::now());
        }
        confirmed += listed;
    }
    // Each confirmation is one LIST, and only where the watch had not
    // delivered the budget yet.
    assert!(confirmed <= 10, "{confirmed} LISTs for 10 applies");
    println!(
        "10 applies of a budget and its StatefulSet in one file, enforced: all admitted, {confirmed} confirmed by a LIST (the watch had not delivered the budget yet)"
    );
    // Without a budget it is denied; the denial costs one LIST per
    // namespace per window, however many follow. A LIST above is shared
    // for its window: the denials start after it ends, so they pay theirs.
    if let Some(listed) = last_list {
        tokio::time::sleep_until((listed + sts_guard::lookup::RECENT_WINDOW).into()).await;
    }
    let before = lookups(&ns, "poddisruptionbudgets");
    for i in 0..5 {
        let sts = Sts::new(&format!("lone-{i}"))
            .service("db-0")
            .app("db-0-other")
            .replicas(3);
        let out = apply(&ns, &sts.yaml(), &[]);
        out.assert_exit(1);
        assert_has(&out.stderr, "[disruption-budget]");
    }
    let denials_cost = lookups(&ns, "poddisruptionbudgets") - before;
    assert!(
        (1..=2).contains(&denials_cost),
        "{denials_cost} LISTs for 5 denials"
    );
}

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn an_update_during_an_api_stall_is_admitted_with_a_warning_within_timeout_seconds() {
    let cp = &cluster().cp;
    // A webhook of its own that reaches the API server through a proxy
    // the test stops.
    let api: std::net::SocketAddr = cp.url.trim_start_matches("https://").parse().unwrap();
    let proxy = Proxy::start(api);
    let kubeconfig = cp
        .work()
        .join(format!("stall-{}.kubeconfig", random_suffix(5)));
    cp.write_kubeconfig_for(&format!("https://{}", proxy.addr), &kubeconfig)
        .unwrap();
    let tag = format!("stall-{}", random_suffix(5));
    let webhook = Webhook::start_with(cp, &tag, None, Some(&kubeconfig)).unwrap();
    let registration = Registration::only_labelled(&tag);
    webhook.register(cp, &registration).unwrap();

    // Stored unreviewed: its serviceName names no Service, so it is in no
    // watch cache and every review of it needs a live GET.
    let ns = Ns::ignored("stall").await;
    let sts = |replicas| {
        Sts::new("web")
            .service("web-gone")
            .replicas(replicas)
            .label(WEBHOOK_LABEL, &tag)
    };
    accepts(&ns, &sts(2).yaml());
    ns.stop_ignoring().await;

    // Wait until this webhook reviews the namespace too (same selector),
    // with a probe naming another Service, so the update's lookup is the
    // first of its Service and needs a GET.
    let probe = Sts::new("probe")
        .service("probe-svc")
        .label(WEBHOOK_LABEL, &tag)
        .yaml();
    let reviewed = webhook.requests("validate");
    wait_for(
        "the stalling webhook to review the namespace",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            apply(&ns, &probe, &["--dry-run=server"]);
            Ok(webhook.requests("validate") > reviewed)
        },
    )
    .unwrap();

    proxy.set(Network::Hang);
    let started = Instant::now();
    let out = apply(&ns, &sts(3).yaml(), &[]);
    let took = started.elapsed();
    proxy.set(Network::Up);
    out.assert_exit(0);
    assert_has(
        &out.stderr,
        r#"[headless-service] spec.serviceName "web-gone" could not be checked (API server did not answer within 2s)"#,
    );
    // deploy/'s timeoutSeconds (5) is what the API server waits.
    assert!(took < Duration::from_secs(5), "kubectl apply took {took:?}");
    let stored = ns.statefulset("web").await.unwrap();
    assert_eq!(stored.spec.unwrap().replicas, Some(3));
    println!(
        "UPDATE with the API server stalled for sts-guard: admitted with the warning in {took:.2?}"
    );

    let names = registration.names();
    cp.kubectl(&["delete", &names[0], &names[1]]).assert_exit(0);
    cp.stop_process(webhook.pid);
}
