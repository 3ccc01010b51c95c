#!/usr/bin/env bash
# Soak test of sts-guard serve (see docs/reliability.md):
#
#   bench/soak.sh [MINUTES]
#
# Runs `sts-guard serve --services-from tests/fixtures/admission/services.yaml`
# (release build, no cluster needed) and sends it a steady load over TLS with
# HTTP/1.1 keep-alive, as the API server does, for MINUTES (default 10):
# RATE requests per second in all (default 500), four fifths to /validate and
# one fifth to /mutate (a review that gets a patch), with the load generator
# oha (installed from crates.io into ~/.cache/sts-guard-bench if missing, the
# same version bench/run.sh uses). Every 10 s it samples the server's RSS and
# open file descriptors from /proc.
#
# Fails (exit 1) on any error or non-200 answer (requests oha cancels
# because the run ended are not answers and not counted), on an error or panic in the
# server's log, if the server dies, or if RSS grows by more than 25 % + 8 MiB
# from the first sample under load to the last. Writes report.md, rss.csv and
# the raw oha results to target/soak/<date>/.
#
# Environment: RATE=500  CONNS=8 (connections per endpoint)  OHA=PATH
#   STS_GUARD_BIN=PATH (soak this binary instead of building one)
#
# Inline Python (two bodies from the fixture, a free port, the report from
# oha's JSON and rss.csv): short stdlib glue around oha and /proc, with no
# Kubernetes and no TLS of its own, where Python is as good a tool as Rust.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
minutes="${1:-10}"
rate="${RATE:-500}"
conns="${CONNS:-8}"
# shellcheck source=tools.sh disable=SC1091
. "$repo/bench/tools.sh"
bench_tools

if [[ -z "${STS_GUARD_BIN:-}" ]]; then
  echo "# building sts-guard (release)" >&2
  (cd "$repo" && cargo build --release --quiet --bin sts-guard)
  STS_GUARD_BIN="$repo/target/release/sts-guard"
fi

out="$repo/target/soak/$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out"
"$STS_GUARD_BIN" certs --out "$out/certs" --dns localhost --ip 127.0.0.1 >/dev/null 2>&1

# Bodies: the fixture as it is (allowed, Service looked up), and with the
# mutation annotations (patched).
python3 - "$repo/tests/fixtures/admission/create-web.json" "$out" <<'EOF'
import json, sys
review = json.load(open(sys.argv[1]))
json.dump(review, open(f"{sys.argv[2]}/validate.json", "w"))
review["request"]["object"]["metadata"]["annotations"].update(
    {"sts-guard.io/parallel": "true", "sts-guard.io/startup-probe": "true"})
json.dump(review, open(f"{sys.argv[2]}/mutate.json", "w"))
EOF

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$STS_GUARD_BIN" serve --listen "127.0.0.1:$port" --metrics-listen off \
  --cert "$out/certs/tls.crt" --key "$out/certs/tls.key" \
  --services-from "$repo/tests/fixtures/admission/services.yaml" \
  2>"$out/serve.log" &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  [[ -n "${sampler:-}" ]] && kill "$sampler" 2>/dev/null || true
}
trap cleanup EXIT

for _ in $(seq 100); do
  curl -sfk "https://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -sf --cacert "$out/certs/ca.crt" "https://localhost:$port/readyz" --resolve "localhost:$port:127.0.0.1" >/dev/null \
  || { echo "server not ready" >&2; cat "$out/serve.log" >&2; exit 1; }

sample() { # elapsed_s rss_kib fds
  local rss fds
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$server/status" 2>/dev/null || echo 0)
  fds=$(ls "/proc/$server/fd" 2>/dev/null | wc -l)
  echo "$1,$rss,$fds"
}
echo "elapsed_s,rss_kib,fds" >"$out/rss.csv"
sample idle >>"$out/rss.csv"

duration="${minutes}m"
validate_rate=$((rate * 4 / 5))
mutate_rate=$((rate - validate_rate))
echo "# soak: $minutes min at $rate req/s ($validate_rate /validate + $mutate_rate /mutate), $conns keep-alive connections each; results in $out" >&2
(
  start=$(date +%s)
  while sleep 10; do
    sample "$(($(date +%s) - start))" >>"$out/rss.csv"
  done
) &
sampler=$!

run_oha() { # path rate body result
  "$OHA" --no-tui --output-format json -z "$duration" -q "$2" -c "$conns" \
    -m POST -T application/json -D "$3" --cacert "$out/certs/ca.crt" \
    "https://localhost:$port$1" >"$4"
}
run_oha /validate "$validate_rate" "$out/validate.json" "$out/oha-validate.json" &
v=$!
run_oha /mutate "$mutate_rate" "$out/mutate.json" "$out/oha-mutate.json" &
m=$!
status=0
wait "$v" || status=1
wait "$m" || status=1
sample end >>"$out/rss.csv"
kill "$sampler" 2>/dev/null || true
alive=1
kill -0 "$server" 2>/dev/null || alive=0

python3 - "$out" "$minutes" "$rate" "$alive" "$status" <<'EOF'
import csv, json, re, sys
out, minutes, rate, alive, oha_status = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1", sys.argv[5]
failed = []
lines = [f"# sts-guard soak: {minutes} min at {rate} req/s", ""]
lines.append("| endpoint | requests | req/s | non-200 | errors | p50 ms | p99 ms | p99.9 ms | slowest ms |")
lines.append("|---|---|---|---|---|---|---|---|---|")
total = 0
lines_note = []
for ep in ("validate", "mutate"):
    try:
        r = json.load(open(f"{out}/oha-{ep}.json"))
    except Exception as e:
        failed.append(f"no oha result for /{ep}: {e}")
        continue
    codes = r.get("statusCodeDistribution", {})
    errors = dict(r.get("errorDistribution", {}))
    # oha cancels the requests still in flight when -z runs out: not answers.
    cut = errors.pop("aborted due to deadline", 0)
    n = sum(codes.values()) + sum(errors.values())
    if cut:
        lines_note.append(f"/{ep}: {cut} requests still in flight when the run ended were cancelled by oha (not counted)")
    total += n
    non200 = n - codes.get("200", 0) - sum(errors.values())
    p = r.get("latencyPercentiles", {})
    ms = lambda v: f"{1000 * v:.2f}" if isinstance(v, (int, float)) else "?"
    lines.append(f"| /{ep} | {n} | {r['summary'].get('requestsPerSec', 0):.1f} | {non200} | {sum(errors.values())} | "
                 f"{ms(p.get('p50'))} | {ms(p.get('p99'))} | {ms(p.get('p99.9'))} | {ms(r['summary'].get('slowest'))} |")
    if non200 or errors:
        failed.append(f"/{ep}: {non200} non-200 answers, errors {errors}, codes {codes}")
rows = list(csv.DictReader(open(f"{out}/rss.csv")))
mib = lambda kib: int(kib) / 1024
loaded = [r for r in rows if r["elapsed_s"] not in ("idle", "end")]
idle, end = rows[0], rows[-1]
first = loaded[0] if loaded else idle
peak = max(rows, key=lambda r: int(r["rss_kib"]))
lines += [""] + lines_note
lines += ["", f"RSS: idle {mib(idle['rss_kib']):.1f} MiB; first sample under load (10 s) {mib(first['rss_kib']):.1f} MiB; "
          f"end {mib(end['rss_kib']):.1f} MiB; peak {mib(peak['rss_kib']):.1f} MiB ({len(rows)} samples, every 10 s, in rss.csv)",
          f"Open file descriptors: idle {idle['fds']}, end {end['fds']}"]
if int(end["rss_kib"]) > int(first["rss_kib"]) * 1.25 + 8 * 1024:
    failed.append(f"RSS grew from {mib(first['rss_kib']):.1f} to {mib(end['rss_kib']):.1f} MiB")
log = open(f"{out}/serve.log").read()
bad = [l for l in log.splitlines() if re.search(r'"level":"(ERROR|WARN)"|panicked', l)]
lines.append(f"Server log: {len(log.splitlines())} lines, {len(bad)} warnings/errors")
if bad:
    failed.append("server log: " + bad[0][:300])
if not alive:
    failed.append("the server died")
if oha_status != "0":
    failed.append("oha failed")
lines += ["", f"Total: {total} requests; " + ("FAILED: " + "; ".join(failed) if failed else "zero errors")]
report = "\n".join(lines) + "\n"
open(f"{out}/report.md", "w").write(report)
print(report)
sys.exit(1 if failed else 0)
EOF
