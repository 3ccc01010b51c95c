#!/usr/bin/env bash
# Audit at scale, with pods (see BENCHMARKS.md, "Audit over a simulated
# cluster"): `sts-guard audit` over 1,000 StatefulSets whose pods are Running
# and Ready on 100 fake nodes. The driver is bench/audit_pods.rs (the example
# `audit-pods`, on the e2e control plane with controllers and kwok in
# tests/support); its doc says what it creates and measures. This script
# builds sts-guard and the driver (release) and runs it:
#
#   bench/audit-pods.sh
#
# Prints one Markdown row; the logs are kept in target/bench-audit-pods/<date>/.
#
# Environment:
#   STS_GUARD_BIN        audit with this binary (else this work tree, release)
#   STATEFULSETS=1000  REPLICAS=1  NODES=100  NAMESPACES=10  WORKERS=8  AUDIT_RUNS=3
#   CP_BIN_DIR, KWOK_BIN_DIR   prebuilt control plane and kwok (else
#                        tests/e2e/build-control-plane.sh and build-kwok.sh
#                        build or reuse them)
#   CP_START_TIMEOUT     seconds for the control plane and nodes to start (120)
#
# Needs: cargo, kubectl, /usr/bin/time (GNU time).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "audit-pods: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }
[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is required: apt-get install time"

if [[ -z "${STS_GUARD_BIN:-}" ]]; then
  note "building the work tree (release)"
  (cd "$repo" && cargo build --release --locked --quiet --bin sts-guard) || die "cargo build failed"
  STS_GUARD_BIN="$repo/target/release/sts-guard"
fi
note "building the driver (the example audit-pods, release)"
(cd "$repo" && cargo build --release --locked --quiet --example audit-pods) || die "building the driver failed"
STS_GUARD_BIN="$STS_GUARD_BIN" exec "$repo/target/release/examples/audit-pods" "$@"
