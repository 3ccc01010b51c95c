#!/usr/bin/env bash
# What sts-guard adds to StatefulSet writes through a real kube-apiserver,
# beside a null webhook registered the same way, shape by shape (replicas
# 0 and 3; Service headless, ClusterIP or absent; budget or none; CREATE
# and UPDATE). The driver is bench/e2e_cost.rs (the example `e2e-cost`,
# on the e2e tests' control plane fixture); its doc says how it measures.
#
#   bench/e2e-cost.sh [COUNT] [ROUNDS]     (default 200 writes, 3 rounds)
#
# Environment: CP_BIN_DIR (prebuilt kube-apiserver + etcd, else
# tests/e2e/build-control-plane.sh builds or reuses them), STS_GUARD_BIN
# (default: the release build).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --locked --release --quiet --bin sts-guard --example e2e-cost
export STS_GUARD_BIN="${STS_GUARD_BIN:-$PWD/target/release/sts-guard}"
exec target/release/examples/e2e-cost "$@"
