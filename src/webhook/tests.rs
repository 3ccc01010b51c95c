//! Decision tables for the review as the webhook answers it, on requests
//! shaped like the ones a real API server sends
//! (tests/fixtures/admission/create-web.json), decoded by the webhook's
//! own decoder and rendered as the API server receives them.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use rstest::rstest;
use serde_json::{Value, json};

use super::decision::Decision;
use super::decision::Endpoint;
use super::routes::decide;
use super::wire::{Admission, decode};
use crate::lookup::{Answer, Lookups, Need, Object, Objects, ServiceState, Services, look_up};
use crate::policy::Policy;
use crate::rules::RuleId;

pub const CREATE_WEB: &str = include_str!("../../tests/fixtures/admission/create-web.json");

/// The fixture as JSON, to edit.
pub fn fixture() -> Value {
    serde_json::from_str(CREATE_WEB).unwrap()
}

pub fn request(review: &Value) -> Admission {
    decode(&serde_json::to_vec(review).unwrap()).unwrap()
}

fn service(name: &str, cluster_ip: &str, selector: Value) -> Service {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {"clusterIP": cluster_ip, "selector": selector,
                 "ports": [{"name": "http", "port": 80, "targetPort": 8000, "protocol": "TCP"}]}
    }))
    .unwrap()
}

/// The PodDisruptionBudget of the fixture's pods.
fn web_budget() -> crate::view::DisruptionBudget {
    serde_json::from_value(json!({
        "namespace": "shop", "name": "web",
        "selector": {"matchLabels": {"app.kubernetes.io/name": "web"}}
    }))
    .unwrap()
}

/// The fixture's PodDisruptionBudget and no Service at all.
fn no_service() -> Objects {
    let mut services = Objects::default();
    services.insert(
        Object::DisruptionBudgets(Arc::new(web_budget())),
        String::new(),
    );
    services
}

/// Adds what the rules read of `service`, in `namespace`.
fn add_service(objects: &mut Objects, service: &Service, namespace: &str) {
    let projection = crate::view::Service::of(service, namespace);
    objects.insert(Object::Services(Arc::new(projection)), String::new());
}

pub fn headless_web() -> Objects {
    let mut services = no_service();
    add_service(
        &mut services,
        &service("web", "None", json!({"app.kubernetes.io/name": "web"})),
        "shop",
    );
    services
}

fn run(review: &Value, endpoint: Endpoint, policy: &Policy, services: &dyn Lookups) -> Decision {
    decide(
        &request(review),
        endpoint,
        policy,
        services,
        jiff::Timestamp::now(),
    )
}

fn validate_with(review: &Value, services: &dyn Lookups) -> Decision {
    run(review, Endpoint::Validate, &Policy::default(), services)
}

/// Whether one of the decision's warnings says `text`.
fn warns(d: &Decision, text: &str) -> bool {
    d.warnings.iter().any(|w| w.contains(text))
}

/// Takes `field` (a probe, say) out of the container at `index`.
fn remove_field(review: &mut Value, index: usize, field: &str) {
    containers(review)[index]
        .as_object_mut()
        .unwrap()
        .remove(field);
}

fn containers(review: &mut Value) -> &mut Vec<Value> {
    review["request"]["object"]["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
}

fn rules_of(decision: &Decision) -> Vec<(RuleId, String)> {
    decision
        .outcomes
        .iter()
        .map(|o| (o.finding.rule, o.action.label().to_string()))
        .collect()
}

#[test]
fn compliant_statefulset_is_allowed_silently() {
    let d = validate_with(&fixture(), &headless_web());
    assert!(d.allowed(), "{d:?}");
    assert!(d.warnings.is_empty() && d.outcomes.is_empty() && d.patch.is_none());
}

#[test]
fn the_response_echoes_the_uid() {
    let review = fixture();
    let req = request(&review);
    let d = validate_with(&review, &no_service());
    let response = d.into_response(&req.uid);
    assert_eq!(response.uid, "7f0b2a8e-3c1d-4f5e-9a6b-2c3d4e5f6a7b");
    assert!(!response.allowed);
    assert_eq!(response.result.code, 403);
}

#[test]
fn one_denial_lists_every_problem_with_its_fix() {
    let mut review = fixture();
    for c in containers(&mut review) {
        c.as_object_mut().unwrap().remove("livenessProbe");
        c.as_object_mut().unwrap().remove("readinessProbe");
    }
    let d = validate_with(&review, &no_service());
    let message = d.denial.expect("denied");
    assert!(
        message.starts_with("statefulset shop/web has 5 problems:"),
        "{message}"
    );
    for expected in [
        r#"[liveness-probe] spec.template.spec.containers[0] "app" has no livenessProbe: add a livenessProbe"#,
        r#"[liveness-probe] spec.template.spec.containers[1] "metrics" has no livenessProbe"#,
        r#"[readiness-probe] spec.template.spec.containers[0] "app" has no readinessProbe: add a readinessProbe"#,
        r#"[readiness-probe] spec.template.spec.containers[1] "metrics" has no readinessProbe"#,
        r#"[headless-service] spec.serviceName "web" names no Service in namespace "shop": create a headless Service"#,
    ] {
        assert!(
            message.contains(expected),
            "missing {expected:?} in\n{message}"
        );
    }
}

#[rstest]
#[case::liveness_only_on_first("livenessProbe", 1, RuleId("liveness-probe"), "metrics")]
#[case::readiness_only_on_second("readinessProbe", 0, RuleId("readiness-probe"), "app")]
fn each_container_needs_its_own_probe(
    #[case] field: &str,
    #[case] index: usize,
    #[case] rule: RuleId,
    #[case] name: &str,
) {
    // A probe on another container does not count.
    let mut review = fixture();
    remove_field(&mut review, index, field);
    let d = validate_with(&review, &headless_web());
    assert_eq!(rules_of(&d), vec![(rule, "deny".into())]);
    assert!(d.denial.unwrap().contains(&format!("[{index}] {name:?}")));
}

#[test]
fn plain_init_containers_are_never_asked_for_probes() {
    // The fixture's init container "migrate" has none and must not matter.
    let d = validate_with(&fixture(), &headless_web());
    assert!(d.allowed());
}

#[rstest]
#[case::required_by_default("", true)]
#[case::policy_turns_it_off("sidecars: { requireProbes: false }", false)]
fn restartable_sidecars_need_probes_unless_the_policy_says_otherwise(
    #[case] policy: &str,
    #[case] denied: bool,
) {
    let mut review = fixture();
    review["request"]["object"]["spec"]["template"]["spec"]["initContainers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "proxy", "image": "envoyproxy/envoy:v1.31", "restartPolicy": "Always",
                     "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                     "imagePullPolicy": "IfNotPresent", "resources": {}}));
    let policy = Policy::from_yaml(policy, "t").unwrap();
    let d = run(&review, Endpoint::Validate, &policy, &headless_web());
    assert_eq!(!d.allowed(), denied, "{d:?}");
    if denied {
        let m = d.denial.unwrap();
        assert!(
            m.contains(r#"spec.template.spec.initContainers[1] "proxy" has no livenessProbe"#),
            "{m}"
        );
        assert!(
            m.contains(r#"initContainers[1] "proxy" has no readinessProbe"#),
            "{m}"
        );
    }
}

#[test]
fn findings_name_their_container_and_object_level_ones_none() {
    let mut review = fixture();
    review["request"]["object"]["spec"]["template"]["spec"]["initContainers"]
        .as_array_mut()
        .unwrap()
        .push(
            json!({"name": "proxy", "image": "envoyproxy/envoy:v1.31", "restartPolicy": "Always"}),
        );
    let d = validate_with(&review, &no_service());
    let containers: Vec<(RuleId, Option<&str>)> = d
        .outcomes
        .iter()
        .map(|o| (o.finding.rule, o.finding.container.as_deref()))
        .collect();
    assert_eq!(
        containers,
        vec![
            (RuleId("liveness-probe"), Some("proxy")),
            (RuleId("readiness-probe"), Some("proxy")),
            (RuleId("headless-service"), None),
        ]
    );
}

#[rstest]
#[case::cluster_ip("10.0.0.12", json!({"app.kubernetes.io/name": "web"}), "is not headless (clusterIP: 10.0.0.12)")]
#[case::selector_misses("None", json!({"app": "other"}), "selects app=other which the pod template does not carry")]
#[case::no_selector("None", json!({}), "has no selector")]
fn a_service_that_is_not_a_matching_headless_one_denies(
    #[case] cluster_ip: &str,
    #[case] selector: Value,
    #[case] problem: &str,
) {
    let mut services = no_service();
    add_service(&mut services, &service("web", cluster_ip, selector), "shop");
    let d = validate_with(&fixture(), &services);
    let m = d.denial.expect("denied");
    assert!(m.contains("[headless-service] spec.serviceName"), "{m}");
    assert!(m.contains(problem), "{m}");
}

#[test]
fn a_service_in_another_namespace_does_not_count() {
    let mut services = no_service();
    let mut svc = service("web", "None", json!({"app.kubernetes.io/name": "web"}));
    svc.metadata.namespace = Some("other".into());
    add_service(&mut services, &svc, "other");
    assert!(!validate_with(&fixture(), &services).allowed());
}

#[test]
fn dry_run_with_a_missing_service_warns_instead_of_denying() {
    let mut review = fixture();
    review["request"]["dryRun"] = json!(true);
    let d = validate_with(&review, &no_service());
    assert!(d.allowed(), "{d:?}");
    assert_eq!(d.warnings.len(), 1);
    assert!(
        d.warnings[0].starts_with("[headless-service] spec.serviceName \"web\" names no Service")
    );
    assert!(d.warnings[0].contains("allowed on dry-run"));
}

#[test]
fn dry_run_still_denies_missing_probes() {
    let mut review = fixture();
    review["request"]["dryRun"] = json!(true);
    remove_field(&mut review, 0, "readinessProbe");
    let d = validate_with(&review, &no_service());
    assert_eq!(
        rules_of(&d),
        vec![
            (RuleId("readiness-probe"), "deny".into()),
            (RuleId("headless-service"), "warn".into())
        ]
    );
}

fn as_update(review: &mut Value) {
    review["request"]["operation"] = json!("UPDATE");
    review["request"]["oldObject"] = review["request"]["object"].clone();
    review["request"]["options"] = json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"});
}

#[test]
fn update_of_an_object_that_already_broke_a_rule_warns() {
    let mut review = fixture();
    remove_field(&mut review, 1, "livenessProbe");
    as_update(&mut review);
    review["request"]["object"]["spec"]["replicas"] = json!(5);
    let d = validate_with(&review, &headless_web());
    assert!(d.allowed(), "{d:?}");
    assert!(
        d.warnings[0]
            .contains("\"metrics\" has no livenessProbe (allowed: already so before this update)")
    );
}

#[test]
fn update_that_removes_a_probe_is_denied() {
    let mut review = fixture();
    as_update(&mut review);
    remove_field(&mut review, 0, "livenessProbe");
    let d = validate_with(&review, &headless_web());
    assert_eq!(
        rules_of(&d),
        vec![(RuleId("liveness-probe"), "deny".into())]
    );
}

#[test]
fn ratcheting_follows_container_names_not_indexes() {
    // Old object: "metrics" lacks a liveness probe. New: containers swapped.
    let mut review = fixture();
    remove_field(&mut review, 1, "livenessProbe");
    as_update(&mut review);
    containers(&mut review).reverse();
    let d = validate_with(&review, &headless_web());
    assert!(d.allowed(), "{d:?}");
}

#[test]
fn a_vanished_service_never_blocks_an_update() {
    let mut review = fixture();
    as_update(&mut review);
    let d = validate_with(&review, &no_service());
    assert!(d.allowed());
    assert!(d.warnings[0].contains("allowed on update: serviceName is immutable"));
}

#[test]
fn a_failed_lookup_warns_and_the_other_rules_still_enforce() {
    struct Down;
    impl Lookups for Down {
        fn answer(&self, need: &Need) -> Answer {
            need.unknown("API server did not answer within 2s".into())
        }
    }
    let d = validate_with(&fixture(), &Down);
    assert!(d.allowed());
    assert!(d.warnings[0].contains("could not be checked (API server did not answer within 2s)"));
    let mut review = fixture();
    remove_field(&mut review, 0, "livenessProbe");
    assert!(!validate_with(&review, &Down).allowed());
}

#[rstest]
#[case::warn_namespace("namespaces: { shop: { mode: warn } }", true, 1, "warn")]
#[case::audit_namespace("namespaces: { shop: { mode: audit } }", true, 0, "audit")]
#[case::audit_other_namespace("namespaces: { other: { mode: audit } }", false, 0, "deny")]
#[case::rule_in_warn("rules: { headless-service: warn }", true, 1, "warn")]
#[case::namespace_rule_beats_global(
    "mode: audit\nnamespaces: { shop: { rules: { headless-service: enforce } } }",
    false,
    0,
    "deny"
)]
#[case::exempted(
    "exemptions: [{ namespace: shop, name: web, rules: [headless-service], reason: OPS-1 }]",
    true,
    0,
    "exempt"
)]
#[case::exempted_other_rule(
    "exemptions: [{ namespace: shop, rules: [liveness-probe], reason: OPS-1 }]",
    false,
    0,
    "deny"
)]
fn modes_and_exemptions(
    #[case] policy: &str,
    #[case] allowed: bool,
    #[case] warnings: usize,
    #[case] action: &str,
) {
    let policy = Policy::from_yaml(policy, "t").unwrap();
    let d = run(&fixture(), Endpoint::Validate, &policy, &no_service());
    assert_eq!(d.allowed(), allowed, "{d:?}");
    assert_eq!(d.warnings.len(), warnings, "{:?}", d.warnings);
    assert_eq!(
        rules_of(&d),
        vec![(RuleId("headless-service"), action.to_string())]
    );
}

#[rstest]
#[case::not_allowed("", false)]
#[case::allowed_globally("allowOwnerExemptions: true", true)]
#[case::allowed_in_namespace("namespaces: { shop: { allowOwnerExemptions: true } }", true)]
fn owners_exempt_themselves_only_when_the_policy_allows(
    #[case] policy: &str,
    #[case] allowed: bool,
) {
    let mut review = fixture();
    review["request"]["object"]["metadata"]["annotations"]["sts-guard.io/exempt"] =
        json!("headless-service");
    let policy = Policy::from_yaml(policy, "t").unwrap();
    let d = run(&review, Endpoint::Validate, &policy, &no_service());
    assert_eq!(d.allowed(), allowed, "{d:?}");
    if !allowed {
        assert!(warns(&d, "sts-guard.io/exempt is ignored"), "{d:?}");
    }
}

#[test]
fn a_misused_exempt_annotation_warns_even_on_a_compliant_object() {
    let mut review = fixture();
    review["request"]["object"]["metadata"]["annotations"]["sts-guard.io/exempt"] =
        json!("liveness-probe");
    let d = validate_with(&review, &headless_web());
    assert!(d.allowed(), "{d:?}");
    assert!(d.outcomes.is_empty(), "{d:?}");
    assert_eq!(d.warnings.len(), 1, "{d:?}");
    assert!(
        d.warnings[0].contains("sts-guard.io/exempt is ignored"),
        "{d:?}"
    );
}

// ---- mutations ----

fn annotate(review: &mut Value, key: &str, value: &str) {
    review["request"]["object"]["metadata"]["annotations"][key] = json!(value);
}

fn patched(review: &Value, patch: &json_patch::Patch) -> Value {
    let mut object = review["request"]["object"].clone();
    json_patch::patch(&mut object, patch).unwrap();
    let mut next = review.clone();
    next["request"]["object"] = object;
    next
}

fn mutate(review: &Value, policy: &Policy) -> Decision {
    run(review, Endpoint::Mutate, policy, &no_service())
}

#[test]
fn no_annotation_no_patch() {
    let d = mutate(&fixture(), &Policy::default());
    assert!(d.patch.is_none() && d.warnings.is_empty() && d.allowed());
}

#[test]
fn parallel_on_create_replaces_the_defaulted_ordered_ready() {
    let mut review = fixture();
    annotate(&mut review, "sts-guard.io/parallel", "true");
    let d = mutate(&review, &Policy::default());
    let patch = d.patch.expect("patch");
    assert_eq!(
        serde_json::to_value(&patch).unwrap(),
        json!([{"op": "add", "path": "/spec/podManagementPolicy", "value": "Parallel"}])
    );
    assert_eq!(d.mutations, vec!["parallel"]);
    let next = patched(&review, &patch);
    let sts: crate::view::StatefulSet =
        serde_json::from_value(next["request"]["object"].clone()).unwrap();
    assert_eq!(
        sts.spec.unwrap().pod_management_policy.as_deref(),
        Some("Parallel")
    );
    assert!(
        mutate(&next, &Policy::default()).patch.is_none(),
        "idempotent"
    );
}

#[test]
fn parallel_is_never_patched_on_update() {
    let mut review = fixture();
    annotate(&mut review, "sts-guard.io/parallel", "true");
    as_update(&mut review);
    let d = mutate(&review, &Policy::default());
    assert!(d.patch.is_none());
    assert!(d.warnings[0].contains("cannot change after creation"));
}

#[test]
fn startup_probes_copy_each_containers_own_check() {
    let mut review = fixture();
    annotate(&mut review, "sts-guard.io/startup-probe", "true");
    annotate(&mut review, "sts-guard.io/startup-timeout", "2m");
    let d = mutate(&review, &Policy::default());
    let patch = d.patch.clone().expect("patch");
    assert_eq!(d.mutations, vec!["startup-probe"]);
    let next = patched(&review, &patch);
    let sts: crate::view::StatefulSet =
        serde_json::from_value(next["request"]["object"].clone()).unwrap();
    let pod = sts.spec.unwrap().template.spec.unwrap();
    let app = pod.containers[0].startup_probe.as_ref().unwrap();
    assert_eq!(
        app.http_get.as_ref().unwrap().path.as_deref(),
        Some("/healthz")
    );
    assert_eq!(app.failure_threshold, Some(12)); // 12 x 10 s = 2 min
    let metrics = pod.containers[1].startup_probe.as_ref().unwrap();
    assert!(metrics.tcp_socket.is_some());
    assert!(
        pod.init_containers.unwrap()[0].startup_probe.is_none(),
        "plain init container untouched"
    );
    // Reinvocation and re-apply see the probes and change nothing.
    assert!(mutate(&next, &Policy::default()).patch.is_none());
    // Dry-run gets the very same patch.
    review["request"]["dryRun"] = json!(true);
    assert_eq!(mutate(&review, &Policy::default()).patch, Some(patch));
}

#[test]
fn namespace_defaults_turn_mutations_on_and_annotations_override_them() {
    let policy = Policy::from_yaml(
        "namespaces: { shop: { mutations: { parallel: true } } }",
        "t",
    )
    .unwrap();
    assert_eq!(mutate(&fixture(), &policy).mutations, vec!["parallel"]);
    let mut review = fixture();
    annotate(&mut review, "sts-guard.io/parallel", "false");
    assert!(mutate(&review, &policy).patch.is_none());
}

#[test]
fn bad_annotation_values_warn_and_fall_back() {
    let mut review = fixture();
    annotate(&mut review, "sts-guard.io/startup-probe", "yes please");
    annotate(&mut review, "sts-guard.io/startup-timeout", "soon");
    let d = mutate(&review, &Policy::default());
    assert!(d.patch.is_none());
    assert!(
        warns(&d, "\"yes please\" is not \"true\" or \"false\""),
        "{d:?}"
    );
    assert!(warns(&d, "\"soon\" is not a duration"), "{d:?}");
}

#[test]
fn mutate_never_denies_and_validate_never_patches() {
    let mut review = fixture();
    annotate(&mut review, "sts-guard.io/parallel", "true");
    remove_field(&mut review, 0, "livenessProbe");
    assert!(mutate(&review, &Policy::default()).allowed());
    assert!(validate_with(&review, &no_service()).patch.is_none());
}

#[test]
fn arc_services_are_shared_not_copied() {
    // The lookup hands out the cached Arc, so a cache hit costs no clone of the Service.
    let services = headless_web();
    let web = || ("shop".into(), "web".into());
    let (ServiceState::Found(a), ServiceState::Found(b)) = (
        look_up::<Services>(&services, web()),
        look_up::<Services>(&services, web()),
    ) else {
        panic!("found")
    };
    assert!(Arc::ptr_eq(&a, &b));
}

/// `/validate` of `review` under the default policy; `elsewhere`: with
/// the field rules enforced by the API server.
fn validate_beside_api_server(review: &Value, lookups: &dyn Lookups, elsewhere: bool) -> Decision {
    super::routes::decide_showing(
        &request(review),
        Endpoint::Validate,
        &Policy::default(),
        lookups,
        jiff::Timestamp::now(),
        elsewhere,
    )
}

/// With the field rules enforced by the API server (`serve
/// --admission-policies`), the webhook's answer leaves their findings out
/// (a user sees each once) and keeps them for logs and metrics; a lookup
/// rule's finding is still its own to report.
#[test]
fn field_rule_findings_are_left_to_the_api_server_once_it_enforces_them() {
    let mut review = fixture();
    remove_field(&mut review, 0, "livenessProbe");
    let decide = |elsewhere| validate_beside_api_server(&review, &no_service(), elsewhere);
    let here = decide(false);
    let denial = here.denial.clone().unwrap();
    assert!(
        denial.contains("[liveness-probe]") && denial.contains("[headless-service]"),
        "{denial}"
    );

    let elsewhere = decide(true);
    let denial = elsewhere.denial.clone().unwrap();
    assert!(!denial.contains("[liveness-probe]"), "{denial}");
    assert!(denial.contains("[headless-service]"), "{denial}");
    assert_eq!(
        rules_of(&elsewhere),
        rules_of(&here),
        "outcomes kept for logs and metrics"
    );
}

/// On UPDATE, the generated policy lets a finding the old object already
/// had pass in silence: the webhook still says so, once, as it does alone.
#[test]
fn an_update_keeping_a_field_rule_finding_is_still_warned_about_beside_the_api_server() {
    let mut review = fixture();
    remove_field(&mut review, 1, "livenessProbe");
    as_update(&mut review);
    review["request"]["object"]["spec"]["replicas"] = json!(5);
    let decide = |elsewhere| validate_beside_api_server(&review, &headless_web(), elsewhere);
    let (here, elsewhere) = (decide(false), decide(true));
    assert!(here.allowed() && elsewhere.allowed());
    assert_eq!(elsewhere.warnings, here.warnings);
    assert!(
        elsewhere.warnings[0]
            .contains("\"metrics\" has no livenessProbe (allowed: already so before this update)"),
        "{:?}",
        elsewhere.warnings
    );
}
