//! No API call per admission: compliant creates are answered from
//! sts-guard's watch cache of Services.

use std::time::Duration;

use crate::support::control_plane::wait_for;
use crate::support::webhook::{Registration, WEBHOOK_LABEL, Webhook};
use crate::{Ns, Sts, Svc, accepts, apply, cluster};

const LOOKUPS: &str = "sts_guard_service_lookups_total";

#[tokio::test]
#[ignore = "needs the e2e control plane: tests/e2e/run.sh"]
async fn compliant_creates_are_answered_from_the_watch_cache() {
    // A webhook of its own, so no other test's lookups move its counters;
    // registered like the shared one, for the StatefulSets labelled here.
    let cp = &cluster().cp;
    let tag = format!("cache-{}", crate::support::control_plane::random_suffix(5));
    let webhook = Webhook::start(cp, &tag, None).unwrap();
    let registration = Registration::only_labelled(&tag);
    webhook.register(cp, &registration).unwrap();

    let ns = Ns::fresh("cache").await;
    accepts(&ns, &Svc::new("web").yaml());
    let sts = |name: &str| {
        Sts::new(name)
            .service("web")
            .app("web")
            .label(WEBHOOK_LABEL, &tag)
    };
    // The Service reaches the cache through the watch, asynchronously:
    // wait until a lookup of it is a cache hit.
    let hits = webhook.metric(LOOKUPS, &[r#"path="cache""#]);
    wait_for(
        "the Service in the webhook's cache",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            apply(&ns, &sts("web-probe").yaml(), &["--dry-run=server"]).assert_exit(0);
            Ok(webhook.metric(LOOKUPS, &[r#"path="cache""#]) > hits)
        },
    )
    .unwrap();

    let api_before = webhook.metric(LOOKUPS, &[r#"path="api""#]);
    let cache_before = webhook.metric(LOOKUPS, &[r#"path="cache""#]);
    for i in 1..=5 {
        accepts(&ns, &sts(&format!("web-{i}")).yaml());
    }
    let api_after = webhook.metric(LOOKUPS, &[r#"path="api""#]);
    let cache_after = webhook.metric(LOOKUPS, &[r#"path="cache""#]);
    assert_eq!(api_before, api_after, "API lookups for compliant creates");
    assert!(
        cache_after - cache_before >= 5.0,
        "cache hits {cache_before} -> {cache_after}"
    );

    let names = registration.names();
    cp.kubectl(&["delete", &names[0], &names[1]]).assert_exit(0);
    cp.stop_process(webhook.pid);
}
