#!/usr/bin/env bash
# The load benchmark of sts-guard, in one command (see BENCHMARKS.md):
#
#   bench/run.sh [LABEL]
#
# Builds sts-guard and the static TLS responder (examples/static_responder.rs)
# in release mode, installs the load generator (oha, from crates.io, into
# ~/.cache/sts-guard-bench unless there already), writes the request bodies
# (benches/support/bodies.rs, the example bench-bodies), makes a CA and a serving certificate for localhost, then
# measures on loopback over TLS with HTTP/1.1 keep-alive, as the API server
# calls webhooks:
#   - sts-guard serve --services-from tests/fixtures/admission/services.yaml
#     (no cluster needed): /validate and /mutate, typical (~8 KB) and large
#     (~320 KB) AdmissionReviews, at saturation and at a fixed rate;
#   - the static responder (same TLS stack, same certificate, same load
#     generator, a fixed AdmissionReview answer): the ceiling.
# Prints a Markdown report; everything (report.md, results.json, logs) is kept
# in target/bench-run/<date>-<LABEL>/.
#
# Environment:
#   DURATION=10s   length of each measured run
#   RATE=2000      requests per second of the fixed-rate runs, typical body
#   LARGE_RATE=200 requests per second of the fixed-rate runs, large body
#   CONNS=16       connections at saturation
#   RATE_CONNS=8   connections at the fixed rate
#   OHA=PATH       use this oha instead of installing one
#   STS_GUARD_BIN=PATH  benchmark this sts-guard binary (e.g. an older build)
#   STS_GUARD_BENCH_CACHE=DIR   where oha is installed (~/.cache/sts-guard-bench)
#
# Needs: cargo, python3. Other work on the machine skews the figures: the
# report records the load average before and after.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
label="${1:-run}"
# shellcheck source=tools.sh disable=SC1091
. "$repo/bench/tools.sh"
bench_tools

echo "# building (release)" >&2
(cd "$repo" && cargo build --release --quiet --bin sts-guard --example static_responder)
bin="${STS_GUARD_BIN:-$repo/target/release/sts-guard}"
static="$repo/target/release/examples/static_responder"

out="$repo/target/bench-run/$(date -u +%Y%m%d-%H%M%S)-$label"
mkdir -p "$out"
(cd "$repo" && cargo run --release --locked --quiet --example bench-bodies -- "$out/bodies")
"$bin" certs --out "$out/certs" --dns localhost --ip 127.0.0.1 >/dev/null 2>&1

python3 "$repo/bench/driver.py" \
  --label "$label" \
  --sts-guard "$bin" --static-responder "$static" --oha "$OHA" \
  --certs "$out/certs" --bodies "$out/bodies" \
  --services "$repo/tests/fixtures/admission/services.yaml" \
  --out "$out" \
  --duration "${DURATION:-10s}" --rate "${RATE:-2000}" --large-rate "${LARGE_RATE:-200}" \
  --conns "${CONNS:-16}" --rate-conns "${RATE_CONNS:-8}"
echo "# kept in $out" >&2
