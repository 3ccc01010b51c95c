#!/usr/bin/env bash
# Scale benchmark: what sts-guard's memory and latency follow as a cluster
# grows (see BENCHMARKS.md, "Scale"): `serve` (time to ready, RSS, /validate
# latency from the cache, API requests per admission) and `audit` (wall time,
# peak RSS) for each cluster size, for two builds (old = BASELINE, new = this
# checkout). The driver is bench/scale.rs (the example `scale`, on the e2e
# tests' control plane in tests/support); its doc says what it creates and
# measures. This script builds what it compares and runs it:
#
#   bench/scale.sh [SIZE...]       Services per step; default 100 1000 10000 20000 50000
#
# Prints a Markdown table; everything (results.jsonl, report.md, oha's JSON,
# logs) is kept in target/bench-scale/<date>/. `scale report RESULTS.jsonl`
# (target/release/examples/scale) renders earlier results again.
#
# Environment:
#   BASELINE=90b7db8     the old build's commit
#   NEW=HEAD             the new build's commit ("." : the work tree, as it is)
#                        Commits are built in release once, outside this clone
#                        (git archive into ~/.cache/sts-guard-bench/build-<sha>,
#                        or BASELINE_DIR for the old one), so uncommitted edits
#                        never leak into a measured build
#   OLD_BIN, NEW_BIN     use these binaries instead of building (still labelled
#                        BASELINE and NEW in the report: say which they are)
#   STATEFULSETS=5000  NAMESPACES=50  WORKERS=8
#   RATE=500  CONNS=4  DURATION=30s      the oha run (fixed rate, latency-corrected)
#   OHA_RUNS=1           oha runs per server; the report takes the median p50/p99
#   REVIEWS=2000         reviews in the varied pass (one connection)
#   AUDIT_RUNS=3  QUIET_TIMEOUT=1800     (seconds to wait for builds/fuzzers to end)
#   CP_BIN_DIR           prebuilt kube-apiserver + etcd (else
#                        tests/e2e/build-control-plane.sh builds or reuses them)
#   OHA                  use this oha (else bench/tools.sh installs 1.16.0 once)
#
# Needs: cargo, kubectl, /usr/bin/time (GNU time).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools.sh disable=SC1091
. "$repo/bench/tools.sh"

baseline="${BASELINE:-90b7db8}"
new="${NEW:-HEAD}"
cache="${STS_GUARD_BENCH_CACHE:-$HOME/.cache/sts-guard-bench}"
die() { echo "scale: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }
[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is required: apt-get install time"

# build_rev <rev>: a release build of that commit, made once outside this
# clone (git archive into $cache/build-<sha>, its own target dir), so edits
# in the work tree cannot leak into it; its path into $built.
build_rev() {
  local sha dir
  sha="$(git -C "$repo" rev-parse --verify "$1^{commit}")" || die "no commit $1"
  dir="$cache/build-$sha"
  [[ "$1" == "$baseline" && -n "${BASELINE_DIR:-}" ]] && dir="$BASELINE_DIR"
  if [[ ! -f "$dir/Cargo.toml" ]]; then
    note "extracting $1 into $dir"
    mkdir -p "$dir" && git -C "$repo" archive "$sha" | tar -x -C "$dir" || die "git archive $1 failed"
  fi
  note "building $1 (release) in $dir"
  (cd "$dir" && CARGO_TARGET_DIR="$dir/target" cargo build --release --locked --quiet --bin sts-guard) ||
    die "building $1 failed"
  built="$dir/target/release/sts-guard"
}
if [[ -z "${NEW_BIN:-}" ]]; then
  if [[ "$new" == "." ]]; then
    note "building the work tree (release)"
    (cd "$repo" && cargo build --release --quiet --bin sts-guard) || die "cargo build failed"
    NEW_BIN="$repo/target/release/sts-guard"
  else
    build_rev "$new"
    NEW_BIN="$built"
  fi
fi
if [[ -z "${OLD_BIN:-}" ]]; then
  build_rev "$baseline"
  OLD_BIN="$built"
fi
if [[ "$new" == "." ]]; then
  NEW_REV="$(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo '+work-tree')"
else
  NEW_REV="$(git -C "$repo" rev-parse --short "$new")"
fi
bench_tools # oha
note "building the driver (the example scale, release)"
(cd "$repo" && cargo build --release --locked --quiet --example scale) || die "building the driver failed"
# Run it directly, not through cargo: the driver counts running cargo and
# rustc processes as a busy machine.
OLD_REV="$baseline" NEW_REV="$NEW_REV" OLD_BIN="$OLD_BIN" NEW_BIN="$NEW_BIN" OHA="$OHA" \
  exec "$repo/target/release/examples/scale" "$@"
