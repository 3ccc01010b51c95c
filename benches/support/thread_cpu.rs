//! The measurement both criterion benches use: the CPU time of the
//! benchmarking thread instead of wall time, so builds running beside a
//! benchmark skew it little. `STS_GUARD_BENCH_CLOCK=wall` switches a bench
//! back to criterion's wall clock.

use criterion::Throughput;
use criterion::measurement::{Measurement, ValueFormatter};

/// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID), in ns.
pub struct ThreadCpu;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the pointer given.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

impl Measurement for ThreadCpu {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns() - start
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, v: &u64) -> f64 {
        *v as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &Nanos
    }
}

/// Formats nanoseconds as criterion does for wall time.
struct Nanos;

impl Nanos {
    fn unit(typical: f64) -> (f64, &'static str) {
        if typical < 1e3 {
            (1.0, "ns")
        } else if typical < 1e6 {
            (1e-3, "µs")
        } else if typical < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        }
    }
}

impl ValueFormatter for Nanos {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = Nanos::unit(typical);
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(
        &self,
        _: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let per = match throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) => *n as f64 / (1024.0 * 1024.0),
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => *n as f64,
            Throughput::Bits(n) => *n as f64 / (1024.0 * 1024.0 * 8.0),
        };
        // ns per iteration to units per second.
        values.iter_mut().for_each(|v| *v = per * 1e9 / *v);
        match throughput {
            Throughput::Bytes(_) | Throughput::BytesDecimal(_) | Throughput::Bits(_) => "MiB/s",
            _ => "elem/s",
        }
    }
    fn scale_for_machines(&self, _: &mut [f64]) -> &'static str {
        "ns"
    }
}

/// `fn main` of a bench: runs `$bench` (generic over the measurement) under
/// [`ThreadCpu`], or under wall time with `STS_GUARD_BENCH_CLOCK=wall`.
macro_rules! thread_cpu_main {
    ($bench:ident) => {
        fn main() {
            if std::env::var("STS_GUARD_BENCH_CLOCK").as_deref() == Ok("wall") {
                let mut c = criterion::Criterion::<criterion::measurement::WallTime>::default()
                    .configure_from_args();
                $bench(&mut c);
                c.final_summary();
            } else {
                let mut c = criterion::Criterion::default()
                    .with_measurement(thread_cpu::ThreadCpu)
                    .configure_from_args();
                $bench(&mut c);
                c.final_summary();
            }
        }
    };
}
