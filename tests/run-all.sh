#!/usr/bin/env bash
# Every test: formatting and lints, unit and HTTP tests, then the end-to-end
# suite against a real kube-apiserver (built once from the Go module proxy
# and cached in ~/.cache/sts-guard-e2e; the first build takes several minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
tests/e2e/run.sh
