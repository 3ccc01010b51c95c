//! The pure path of one admission, per endpoint, for a typical (3
//! containers, ~8 KB) and a large (~320 KB) AdmissionReview: decode (body to
//! typed request), review (rules or mutations), respond (decision to
//! AdmissionResponse, patch serialized), encode (response to body bytes),
//! and all of it together as the handler runs it (without the Service
//! lookup, which is a map read ahead of the review).
//!
//! cargo bench --bench review
//!
//! Bodies come from benches/support/bodies.rs (STS_GUARD_BENCH_BODIES=DIR
//! to read them from a folder instead, e.g. to run two trees on the same
//! bytes).
//!
//! Times are the CPU time of the benchmarking thread, not wall time, so a
//! machine busy with other work (builds) skews them far less; set
//! STS_GUARD_BENCH_CLOCK=wall for criterion's usual wall clock.

#[macro_use]
#[path = "support/thread_cpu.rs"]
mod thread_cpu;
#[path = "support/bodies.rs"]
mod bodies;

use std::hint::black_box;
use std::path::PathBuf;

use criterion::measurement::Measurement;
use criterion::{BenchmarkId, Criterion, Throughput};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::core::admission::AdmissionReview;

use sts_guard::lookup::Objects;
use sts_guard::policy::Policy;
use sts_guard::webhook::decision::Endpoint;
use sts_guard::webhook::routes::decide;
use sts_guard::webhook::wire::{Admission, Rejection, decode};

/// The Services `bench/run.sh` serves with (`--services-from`).
fn services() -> Objects {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/admission/services.yaml");
    sts_guard::manifest::read_lookups(&[path]).expect("services.yaml")
}

fn unwrap_decoded(body: &[u8]) -> Admission {
    match decode(body) {
        Ok(request) => request,
        Err(Rejection::BadRequest(reason)) => panic!("bench body rejected: {reason}"),
        Err(Rejection::Answer(response, _)) => {
            panic!("bench body answered without review: {response:?}")
        }
    }
}

fn pure_path<M: Measurement>(c: &mut Criterion<M>) {
    let policy = Policy::default();
    let services = services();
    for size in ["typical", "large"] {
        for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
            let name = endpoint.as_str();
            let body = bodies::body(&format!("{size}-{name}"));
            let request = unwrap_decoded(&body);
            let decision = decide(&request, endpoint, &policy, &services, now());
            assert!(decision.allowed(), "{size} {name}: {:?}", decision.denial);
            // Every rule passes: the path measured is the full one, with no
            // finding to render.
            assert!(
                decision.outcomes.is_empty(),
                "{size} {name}: {:?}",
                decision.warnings
            );
            if endpoint == Endpoint::Mutate {
                assert!(decision.patch.is_some(), "{size} mutate: no patch");
            }
            let response = decision.clone().into_response(&request.uid).into_review();

            let mut group = c.benchmark_group(format!("{name}/{size}"));
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_function(BenchmarkId::from_parameter("decode"), |b| {
                b.iter(|| unwrap_decoded(black_box(&body)))
            });
            // For comparison: kube's own AdmissionReview type (flattened TypeMeta).
            group.bench_function(BenchmarkId::from_parameter("decode-kube"), |b| {
                b.iter(|| {
                    serde_json::from_slice::<AdmissionReview<StatefulSet>>(black_box(&body))
                        .expect("decode")
                })
            });
            group.bench_function(BenchmarkId::from_parameter("review"), |b| {
                b.iter(|| decide(black_box(&request), endpoint, &policy, &services, now()))
            });
            group.bench_function(BenchmarkId::from_parameter("respond"), |b| {
                b.iter(|| black_box(decision.clone()).into_response(&request.uid))
            });
            group.bench_function(BenchmarkId::from_parameter("encode"), |b| {
                b.iter(|| serde_json::to_vec(black_box(&response)).expect("encode"))
            });
            group.bench_function(BenchmarkId::from_parameter("all"), |b| {
                b.iter(|| {
                    let request = unwrap_decoded(black_box(&body));
                    let decision = decide(&request, endpoint, &policy, &services, now());
                    let response = decision.into_response(&request.uid).into_review();
                    serde_json::to_vec(&response).expect("encode")
                })
            });
            group.finish();
        }
    }
}

thread_cpu_main!(pure_path);

/// The time reviews are made at: fixed, so every run decides the same (no
/// exemption object here expires).
fn now() -> jiff::Timestamp {
    jiff::Timestamp::UNIX_EPOCH
}
