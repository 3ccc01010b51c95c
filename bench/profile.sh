#!/usr/bin/env bash
# Where a /validate request's CPU goes, part by part (BENCHMARKS.md,
# "Profile"):
#
#   bench/profile.sh [REQUESTS [BODY]]
#
# Runs the release `sts-guard serve --services-from` (the server of
# bench/run.sh) under valgrind's callgrind while oha sends REQUESTS
# (default 4000) requests of BODY (default typical-validate; also
# typical-mutate, large-validate, large-mutate: bench/bench_bodies.rs) to
# its endpoint over TLS keep-alive, then the static responder the same
# way, and prints the
# instructions each spends per request, by part: TLS, HTTP, body
# collection, decode, lookups, review, response, metrics, logging,
# allocator, the rest. Instruction counts do not depend on what else the
# machine runs; the kernel's share does not show in them (bench/run.sh's
# CPU per request includes it; `perf record -F 999 -p PID` on a quiet
# machine gives it, see BENCHMARKS.md).
#
# STS_GUARD_BIN profiles another build of sts-guard. CALLGRIND_OPTS
# replaces `--dump-instr=no --collect-jumps=no`: `--dump-instr=yes` with a
# build that has line tables (CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
# CARGO_TARGET_DIR=<elsewhere> cargo build --release) gives instructions
# per source line (`callgrind_annotate --auto=yes`).
#
# Needs: valgrind, cargo, python3. Keeps everything in
# target/bench-run/profile-<date>/.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requests="${1:-4000}"
body="${2:-typical-validate}"
endpoint="${body#*-}"
# shellcheck source=tools.sh disable=SC1091
. "$repo/bench/tools.sh"
bench_tools
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind; }

echo "# building (release)" >&2
(cd "$repo" && cargo build --release --quiet --bin sts-guard --example static_responder --example bench-bodies)
bin="${STS_GUARD_BIN:-$repo/target/release/sts-guard}"
static="$repo/target/release/examples/static_responder"
out="$repo/target/bench-run/profile-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out"
"$repo/target/release/examples/bench-bodies" "$out/bodies"
"$bin" certs --out "$out/certs" --dns localhost --ip 127.0.0.1 >/dev/null 2>&1

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Runs "$@" (a server on $listen) under callgrind, sends the requests,
# stops it; the profile is $out/$name.callgrind.
profile() {
  local name="$1" listen="$2"
  shift 2
  valgrind --tool=callgrind --callgrind-out-file="$out/$name.callgrind" \
    ${CALLGRIND_OPTS:---dump-instr=no --collect-jumps=no} "$@" >"$out/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 600); do
    curl -sk --max-time 1 -o /dev/null "https://$listen/healthz" -X GET && break
    sleep 0.1
  done
  # Warm-up outside the count is not possible under callgrind (one dump per
  # process); 16 connections' handshakes amortised over the requests.
  "$OHA" --no-tui --output-format quiet -n "$requests" -c 16 -m POST -T application/json \
    -D "$out/bodies/$body.json" --cacert "$out/certs/ca.crt" \
    "https://localhost:${listen#*:}/$endpoint"
  kill -TERM "$pid"
  wait "$pid" || true
}

p=$(port)
profile sts-guard "127.0.0.1:$p" "$bin" serve --cert "$out/certs/tls.crt" --key "$out/certs/tls.key" \
  --listen "127.0.0.1:$p" --metrics-listen off --services-from "$repo/tests/fixtures/admission/services.yaml" \
  --shutdown-delay 0s
p=$(port)
profile static "127.0.0.1:$p" "$static" --cert "$out/certs/tls.crt" --key "$out/certs/tls.key" \
  --listen "127.0.0.1:$p"

python3 "$repo/bench/profile_parts.py" --requests "$requests" --body "$body" \
  "$out/sts-guard.callgrind" "$out/static.callgrind" | tee "$out/report.md"
echo "# kept in $out" >&2
