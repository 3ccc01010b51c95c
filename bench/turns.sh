#!/usr/bin/env bash
# CPU per request of two sts-guard builds and the static responder, taking
# turns, so that the machine's drift falls on all three alike (BENCHMARKS.md,
# "Load"):
#
#   bench/turns.sh OLD_BINARY [ROUNDS]
#
# Each round starts each server in turn (the release build of this tree,
# OLD_BINARY, the static responder), sends /validate requests of the typical
# body over TLS keep-alive and prints the server's user and kernel CPU time
# per request (utime and stime from /proc/PID/stat). RATE=2000 (requests per
# second, 8 connections, for SECONDS_PER_RUN=30) by default; RATE=0 sends as
# fast as 16 connections can (REQUESTS=100000).
#
# Needs: cargo, python3, curl. Keeps the bodies and certificates in
# target/bench-run/turns-<date>/.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
old="${1:?usage: bench/turns.sh OLD_BINARY [ROUNDS]}"
rounds="${2:-4}"
rate="${RATE:-2000}"
# shellcheck source=tools.sh disable=SC1091
. "$repo/bench/tools.sh"
bench_tools

(cd "$repo" && cargo build --release --quiet --bin sts-guard --example static_responder --example bench-bodies)
new="$repo/target/release/sts-guard"
static="$repo/target/release/examples/static_responder"
out="$repo/target/bench-run/turns-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out"
"$repo/target/release/examples/bench-bodies" "$out/bodies" >/dev/null 2>&1
"$new" certs --out "$out/certs" --dns localhost --ip 127.0.0.1 >/dev/null 2>&1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
send() {
  "$OHA" --no-tui -m POST -T application/json -D "$out/bodies/typical-validate.json" \
    --cacert "$out/certs/ca.crt" "$@" "https://localhost:$port/validate"
}

# One server: started, warmed up, measured, stopped.
measure() {
  local name="$1"
  shift
  "$@" >"$out/$name.log" 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    curl -sk --max-time 1 -o /dev/null "https://127.0.0.1:$port/healthz" && break
    sleep 0.1
  done
  send --output-format quiet -n 2000 -c 8
  local before after
  before=$(cut -d' ' -f14,15 "/proc/$pid/stat")
  if ((rate > 0)); then
    send --output-format json -z "${SECONDS_PER_RUN:-30}s" -q "$rate" -c 8 >"$out/oha.json"
  else
    send --output-format json -n "${REQUESTS:-100000}" -c 16 >"$out/oha.json"
  fi
  after=$(cut -d' ' -f14,15 "/proc/$pid/stat")
  kill -TERM "$pid"
  wait "$pid" || true
  python3 - "$name" "$before" "$after" "$out/oha.json" <<'EOF'
import json, os, sys
name, before, after, report = sys.argv[1:]
(u0, s0), (u1, s1) = ([int(x) for x in t.split()] for t in (before, after))
n = sum(json.load(open(report))["statusCodeDistribution"].values())
tick = 1e6 / os.sysconf("SC_CLK_TCK")
user, kernel = (u1 - u0) * tick / n, (s1 - s0) * tick / n
print(f"{name:18} {n:7} requests  user {user:5.1f}  kernel {kernel:5.1f}  total {user + kernel:5.1f} µs/req")
EOF
}

load=$([[ $rate -gt 0 ]] && echo "$rate/s, 8 connections" || echo "saturation, 16 connections")
echo "# /validate typical, $load; $(uptime | sed 's/.*load/load/')"
for round in $(seq "$rounds"); do
  echo "# round $round"
  for server in this-tree old static; do
    case $server in
      this-tree | old)
        bin=$new
        [[ $server == old ]] && bin=$old
        measure "$server" "$bin" serve --cert "$out/certs/tls.crt" --key "$out/certs/tls.key" \
          --listen "127.0.0.1:$port" --metrics-listen off --shutdown-delay 0s \
          --services-from "$repo/tests/fixtures/admission/services.yaml"
        ;;
      static)
        measure static "$static" --cert "$out/certs/tls.crt" --key "$out/certs/tls.key" \
          --listen "127.0.0.1:$port"
        ;;
    esac
  done
done
