#!/usr/bin/env bash
# End-to-end: sts-guard behind a real control plane on loopback (etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, kwok's fake
# nodes), driven with kubectl as users drive it. The scenarios are the Rust
# tests of tests/e2e/main.rs and the modules beside it (ignored by plain
# `cargo test`).
#
#   tests/e2e/run.sh              every scenario
#   tests/e2e/run.sh NAME...      the scenarios whose name contains NAME
#                                 (any libtest option works too: --nocapture, --exact)
#   tests/e2e/run.sh --keep       demo: start everything, apply examples/ (their pods
#                                 shown Running and Ready), keep it running until
#                                 Ctrl-C (prints the KUBECONFIG)
#
# Environment: STS_GUARD_BIN (default: the binary cargo builds), CP_BIN_DIR
# (prebuilt kube-apiserver, etcd, controller-manager, scheduler), KWOK_BIN_DIR
# (a prebuilt kwok), CP_NODES (fake nodes, default 3), HELM_BIN_DIR (a
# prebuilt helm v3, for the chart's scenarios; else build-helm.sh builds it
# on first use), STS_GUARD_E2E_CACHE (where the build-*.sh scripts keep
# them), STS_GUARD_E2E_KEEP=1 (keep the work directory: logs, kubeconfig, PKI).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

case "${1:-}" in
  --keep | demo)
    # The demo shares the tests' fixture (tests/support); built as an example.
    cargo build --locked --quiet --bin sts-guard --example e2e-demo
    exec cargo run --locked --quiet --example e2e-demo
    ;;
  -h | --help)
    sed -n '2,20p' "$0"
    exit 0
    ;;
esac
exec cargo test --locked --test e2e -- --ignored "$@"
