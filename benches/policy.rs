//! What a large policy file costs: one with 1,000 namespaces and 1,000
//! exemptions, against the default policy (no file) and a small one.
//!
//! cargo bench --bench policy
//!
//! - `policy-parse/*`: `Policy::from_yaml` of the text (what `serve`, `check`
//!   and `audit` do at start);
//! - `policy-reload/*`: what one reload tick costs: `changed` reads the file
//!   and parses it (`Policy::load`, as the watcher does when the bytes
//!   changed), `unchanged` reads it and compares the bytes (every tick, 2 s
//!   by default);
//! - `policy-review/<body>/<policy>`: `decide` for `/validate` (the review,
//!   Service lookup from a map included) under each policy, for the typical
//!   body of benches/support/bodies.rs (compliant, in namespace `shop`, which the
//!   large policy does not name) and for the same body with every
//!   readinessProbe removed (one finding per container): in `shop`, where
//!   every finding scans all 1,000 exemptions and matches none, and in
//!   `team-0999`, which the large policy configures and whose exemption for
//!   this StatefulSet is the last in the list.
//!
//! It also prints the heap a parsed policy holds (a counting allocator), as
//! `serve` holds one (two during a reload).
//!
//! Times are the CPU time of the benchmarking thread (as benches/review.rs);
//! STS_GUARD_BENCH_CLOCK=wall for criterion's wall clock.

#[macro_use]
#[path = "support/thread_cpu.rs"]
mod thread_cpu;
#[path = "support/bodies.rs"]
mod bodies;

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::measurement::Measurement;
use criterion::{BenchmarkId, Criterion, Throughput};

use sts_guard::lookup::Objects;
use sts_guard::policy::Policy;
use sts_guard::webhook::decision::Endpoint;
use sts_guard::webhook::routes::decide;
use sts_guard::webhook::wire::{Admission, Rejection, decode};

/// Bytes currently allocated on the heap by the whole process.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only
// a counter is updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const NAMESPACES: usize = 1000;
const EXEMPTIONS: usize = 1000;

/// A policy as a platform team with 1,000 namespaces would write it:
/// every namespace with a mode, some with per-rule modes, mutation defaults
/// or owner exemptions; one exemption per namespace, by name, with a reason.
fn large_policy() -> String {
    let modes = ["enforce", "warn", "audit"];
    let rules = ["liveness-probe", "readiness-probe", "headless-service"];
    let mut y = String::from(
        "mode: audit\nrules:\n  headless-service: warn\nsidecars:\n  requireProbes: true\n\
         mutations:\n  startupTimeout: 5m\nnamespaces:\n",
    );
    for n in 0..NAMESPACES {
        let _ = writeln!(y, "  team-{n:04}:\n    mode: {}", modes[n % 3]);
        if n % 4 == 0 {
            let _ = writeln!(y, "    rules:\n      {}: enforce", rules[n % 3]);
        }
        if n % 5 == 0 {
            y.push_str("    mutations:\n      parallel: true\n      startupProbe: true\n");
        }
        if n % 10 == 0 {
            y.push_str("    allowOwnerExemptions: true\n");
        }
    }
    y.push_str("exemptions:\n");
    for e in 0..EXEMPTIONS {
        let n = e % NAMESPACES;
        // The last one exempts the benchmark's StatefulSet in team-0999.
        let name = if e == EXEMPTIONS - 1 {
            "web".to_string()
        } else {
            format!("queue-worker-{e}")
        };
        let _ = writeln!(
            y,
            "  - namespace: team-{n:04}\n    name: {name}\n    rules: [{}]\n    reason: OPS-{e} runs without it on purpose",
            rules[e % 3]
        );
    }
    y
}

/// A small policy as README's rollout section builds one.
const SMALL_POLICY: &str = "mode: audit
namespaces:
  shop:
    mode: warn
  payments:
    mode: enforce
    mutations:
      startupProbe: true
exemptions:
  - namespace: batch
    name: queue-worker
    rules: [headless-service]
    reason: OPS-123
";

fn services() -> Objects {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission/services.yaml");
    sts_guard::manifest::read_lookups(&[path]).expect("services.yaml")
}

fn decoded(body: &[u8]) -> Admission {
    match decode(body) {
        Ok(request) => request,
        Err(Rejection::BadRequest(reason)) => panic!("bench body rejected: {reason}"),
        Err(Rejection::Answer(response, _)) => {
            panic!("bench body answered without review: {response:?}")
        }
    }
}

/// The typical body, in `namespace`, without readiness probes if asked.
fn body(typical: &serde_json::Value, namespace: &str, readiness: bool) -> Vec<u8> {
    let mut r = typical.clone();
    r["request"]["namespace"] = namespace.into();
    let object = &mut r["request"]["object"];
    object["metadata"]["namespace"] = namespace.into();
    if !readiness {
        for c in object["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .expect("containers")
        {
            c.as_object_mut()
                .expect("container")
                .remove("readinessProbe");
        }
    }
    serde_json::to_vec(&r).expect("encode body")
}

fn policy_scale<M: Measurement>(c: &mut Criterion<M>) {
    let large = large_policy();
    let texts = [
        ("default", String::new()),
        ("small", SMALL_POLICY.to_string()),
        ("1000ns-1000ex", large),
    ];

    // Heap held by each parsed policy.
    for (name, text) in &texts {
        let before = LIVE.load(Ordering::SeqCst);
        let policy = Policy::from_yaml(text, name).expect("policy parses");
        let held = LIVE.load(Ordering::SeqCst) - before;
        eprintln!(
            "policy {name}: {} bytes of YAML, {:.1} KiB of heap once parsed ({} namespaces, {} exemptions)",
            text.len(),
            held as f64 / 1024.0,
            policy.spec.namespaces.len(),
            policy.exemptions().len()
        );
        drop(policy);
    }

    let mut group = c.benchmark_group("policy-parse");
    for (name, text) in &texts {
        group.throughput(Throughput::Bytes(text.len() as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| Policy::from_yaml(black_box(text), "bench").expect("policy parses"))
        });
    }
    group.finish();

    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, &texts[2].1).expect("writing the policy");
    let last = std::fs::read(&path).expect("reading the policy");
    let mut group = c.benchmark_group("policy-reload");
    group.bench_function(BenchmarkId::from_parameter("changed"), |b| {
        b.iter(|| Policy::load(black_box(&path)).expect("policy loads"))
    });
    group.bench_function(BenchmarkId::from_parameter("unchanged"), |b| {
        b.iter(|| std::fs::read(black_box(&path)).expect("read") == last)
    });
    group.finish();

    let typical: serde_json::Value =
        serde_json::from_slice(&bodies::body("typical-validate")).expect("typical body is JSON");
    let services = services();
    let policies: Vec<(&str, Policy)> = texts
        .iter()
        .map(|(name, text)| (*name, Policy::from_yaml(text, name).expect("policy parses")))
        .collect();
    let cases = [
        ("compliant-shop", body(&typical, "shop", true)),
        ("no-readiness-shop", body(&typical, "shop", false)),
        ("no-readiness-team-0999", body(&typical, "team-0999", false)),
    ];
    for (case, bytes) in &cases {
        let request = decoded(bytes);
        let mut group = c.benchmark_group(format!("policy-review/{case}"));
        for (name, policy) in &policies {
            let decision = decide(&request, Endpoint::Validate, policy, &services, now());
            if *case == "compliant-shop" && *name == "default" {
                assert!(decision.allowed(), "{case}: {:?}", decision.denial);
            }
            group.bench_function(BenchmarkId::from_parameter(name), |b| {
                b.iter(|| {
                    decide(
                        black_box(&request),
                        Endpoint::Validate,
                        policy,
                        &services,
                        now(),
                    )
                })
            });
        }
        group.finish();
    }
}

thread_cpu_main!(policy_scale);

/// The time reviews are made at: fixed, so every run decides the same (no
/// exemption object here expires).
fn now() -> jiff::Timestamp {
    jiff::Timestamp::UNIX_EPOCH
}
