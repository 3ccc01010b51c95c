#!/usr/bin/env bash
# Every test: formatting and lints, unit and HTTP tests, then the end-to-end
# suite against a real kube-apiserver (built once from the Go module proxy
# and cached in ~/.cache/sts-guard-e2e; the first build takes several minutes),
# then the live-cluster audit test against the same binaries.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked
# The alert rules (deploy/prometheus/alerts.yaml) under promtool: every alert
# firing and not firing on series fixtures (promtool built once from the Go
# module proxy and cached in ~/.cache/sts-guard-e2e, like the e2e binaries).
tests/prometheus/test-rules.sh
# The Rust e2e suite (tests/e2e/main.rs): ignored by the plain run above.
tests/e2e/run.sh
# The live-cluster audit test needs the control plane binaries the e2e run
# just built (or found in its cache).
cargo test --locked --test cli_audit -- --ignored
