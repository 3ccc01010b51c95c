#!/usr/bin/env bash
# Scale benchmark: what sts-guard's memory and latency follow as a cluster
# grows (see BENCHMARKS.md, "Scale"). On the control plane of the e2e tests
# (tests/e2e/lib.sh: etcd + kube-apiserver on loopback), for each cluster
# size, with the objects created BEFORE the webhook starts, and for two
# builds (old = BASELINE, new = this checkout):
#
#   - `serve`: seconds from spawn to the first 200 on /readyz (the watch
#     cache synced), VmRSS 2 s after that, p50/p99 of /validate answered from
#     the cache (oha at a fixed rate, one body; and a pass of 2,000 different
#     reviews naming 2,000 different headless Services, each checked to be
#     allowed), VmRSS after that load and VmHWM, and the API requests made
#     per admission (the deltas of sts_guard_service_lookups_total{path="api"}
#     and sts_guard_disruption_budget_lookups_total{path="api"} over the
#     load, and the API server's own count of Service GETs and
#     PodDisruptionBudget LISTs);
#   - `audit`: wall time and peak RSS (/usr/bin/time -v, "Maximum resident
#     set size"), median of AUDIT_RUNS runs, over every StatefulSet and
#     Service.
#
#   bench/scale.sh [SIZE...]       Services per step; default 100 1000 10000 20000 50000
#
# Steps grow one cluster: each adds the Services (and StatefulSets) that the
# previous step lacks (bench/scale_cluster.py: a third headless, Helm-style
# labels, a last-applied-configuration annotation on every other one, over
# NAMESPACES namespaces; created by WORKERS parallel keep-alive
# connections). Each step has min(STATEFULSETS, headless Services)
# StatefulSets, each naming its own headless Service and with its own
# PodDisruptionBudget.
# Prints a Markdown table; everything (results.jsonl, report.md, logs) is
# kept in target/bench-scale/<date>/.
#
# Before every measured run the script waits, up to QUIET_TIMEOUT seconds,
# until no build or fuzzer runs (pgrep -f 'rustc|cargo |libfuzzer|fuzz/run');
# each row says whether the machine was quiet then, and in how many of the
# once-a-second samples taken during the run a build or fuzzer ran.
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
#   REVIEWS=2000         reviews in the varied pass (python, one connection)
#   AUDIT_RUNS=3  QUIET_TIMEOUT=1800
#   CP_BIN_DIR           prebuilt kube-apiserver + etcd (else
#                        tests/e2e/build-control-plane.sh builds or reuses them)
#   OHA                  use this oha (else bench/tools.sh installs 1.16.0 once)
#
# The API server gets --service-cluster-ip-range=10.0.0.0/16 (lib.sh's /24
# holds 254 ClusterIPs; extra cp_start flags come last and win).
# Needs: cargo, python3, kubectl, openssl, curl, /usr/bin/time (GNU time).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=../tests/e2e/lib.sh disable=SC1091
. "$repo/tests/e2e/lib.sh"
# shellcheck source=tools.sh disable=SC1091
. "$here/tools.sh"

sizes=("$@")
((${#sizes[@]})) || sizes=(100 1000 10000 20000 50000)
baseline="${BASELINE:-90b7db8}"
statefulsets="${STATEFULSETS:-5000}"
namespaces="${NAMESPACES:-50}"
workers="${WORKERS:-8}"
rate="${RATE:-500}"
conns="${CONNS:-4}"
duration="${DURATION:-30s}"
reviews="${REVIEWS:-2000}"
oha_runs="${OHA_RUNS:-1}"
audit_runs="${AUDIT_RUNS:-3}"
quiet_timeout="${QUIET_TIMEOUT:-1800}"
cache="${STS_GUARD_BENCH_CACHE:-$HOME/.cache/sts-guard-bench}"

die() { echo "scale: $*" >&2; exit 1; }
note() { echo "# $*" >&2; }
[[ -x /usr/bin/time ]] || die "/usr/bin/time (GNU time) is required: apt-get install time"

# ---- binaries ------------------------------------------------------------------
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
new="${NEW:-HEAD}"
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
bench_tools # oha
if [[ -z "${CP_BIN_DIR:-}" ]]; then
  CP_BIN_DIR="$("$repo/tests/e2e/build-control-plane.sh" | tail -n 1)" || die "no control plane"
fi
export CP_BIN_DIR
old_rev="$baseline"
if [[ "$new" == "." ]]; then
  new_rev="$(git -C "$repo" rev-parse --short HEAD)$(git -C "$repo" diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo '+work-tree')"
else
  new_rev="$(git -C "$repo" rev-parse --short "$new")"
fi

out="$repo/target/bench-scale/$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out"
work="$(mktemp -d "${TMPDIR:-/tmp}/sts-guard-scale.XXXXXX")"
serve_pid=""

stop_serve() {
  [[ -n "$serve_pid" ]] || return 0
  kill -TERM "$serve_pid" 2>/dev/null
  local i=0
  while _cp_alive "$serve_pid" && ((i < 100)); do sleep 0.1; i=$((i + 1)); done
  _cp_alive "$serve_pid" && kill -KILL "$serve_pid" 2>/dev/null
  wait "$serve_pid" 2>/dev/null
  # cp_stop must not signal this PID again (it may be reused by then).
  [[ -f "$CP_WORKDIR/pids" ]] && sed -i "/^$serve_pid /d" "$CP_WORKDIR/pids"
  serve_pid=""
}
cleanup() {
  [[ -n "$busy_pid" ]] && { kill "$busy_pid" 2>/dev/null; wait "$busy_pid" 2>/dev/null; }
  stop_serve
  [[ -n "${CP_WORKDIR:-}" && -d "$CP_WORKDIR/logs" ]] && cp -r "$CP_WORKDIR/logs" "$out/" 2>/dev/null
  cp_stop
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- a quiet machine -----------------------------------------------------------
busy_pid=""
# busy_start / busy_stop: one sample a second of whether a build or fuzzer
# runs, over a measured run; busy_stop sets busy_share to "busy/samples".
busy_start() {
  : >"$work/busy"
  (while :; do
    if pgrep -f 'rustc|cargo |libfuzzer|fuzz/run' >/dev/null; then echo 1; else echo 0; fi
    sleep 1
  done) >>"$work/busy" 2>/dev/null &
  busy_pid=$!
}
busy_stop() {
  [[ -n "$busy_pid" ]] && { kill "$busy_pid" 2>/dev/null; wait "$busy_pid" 2>/dev/null; }
  busy_pid=""
  busy_share="$(awk '{n++; s += $1} END {printf "%d/%d", s, n}' "$work/busy")"
}

quiet="yes"
wait_quiet() {
  local deadline=$((SECONDS + quiet_timeout)) said=""
  while pgrep -f 'rustc|cargo |libfuzzer|fuzz/run' >/dev/null; do
    if ((SECONDS >= deadline)); then
      quiet="no"
      note "still busy after ${quiet_timeout}s; measuring anyway: $(pgrep -fa 'rustc|cargo |libfuzzer|fuzz/run' | head -n 3 | cut -c1-120 | tr '\n' ';')"
      return
    fi
    [[ -z "$said" ]] && note "waiting for builds/fuzzers to finish (up to ${quiet_timeout}s)" && said=1
    sleep 5
  done
  quiet="yes"
}

kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
py() { python3 "$here/scale_cluster.py" "$@"; }
# The typical AdmissionReview (benches/support/bodies.rs), for `py bodies`.
export STS_GUARD_BENCH_BODIES="$work/bench-bodies"
(cd "$repo" && cargo run --release --locked --quiet --example bench-bodies -- "$STS_GUARD_BENCH_BODIES" 2>/dev/null) ||
  die "writing the bench bodies failed"

# ---- control plane ---------------------------------------------------------------
cp_start "$work/cp" --service-cluster-ip-range=10.0.0.0/16 || die "control plane did not start"
creds=("$CP_APISERVER_URL" "$CP_CA_CERT" "$CP_ADMIN_CERT" "$CP_ADMIN_KEY")
api_metric() { python3 "$here/e2e_creates.py" --metric "${creds[@]}" "$@"; }
"$NEW_BIN" certs --out "$out/certs" --dns localhost --ip 127.0.0.1 >/dev/null 2>&1 || die "certs failed"
ca="$out/certs/ca.crt"

machine="$(nproc) × $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r)"
apiserver_version="$("$CP_BIN_DIR/kube-apiserver" --version 2>/dev/null | awk '{print $2}')"
note "$machine; kube-apiserver $apiserver_version; old $old_rev ($OLD_BIN), new $new_rev ($NEW_BIN)"

measure_serve() { # <build label> <bin> <size> <bodies dir>; sets the s_* variables
  local label="$1" bin="$2" size="$3" bodies="$4" port mport start
  port="$(free_port)"
  mport="$(free_port)"
  while [[ "$mport" == "$port" ]]; do mport="$(free_port)"; done
  start="${EPOCHREALTIME/,/.}"
  cp_spawn "serve-$label-$size" env RUST_LOG=warn "$bin" serve \
    --cert "$out/certs/tls.crt" --key "$out/certs/tls.key" \
    --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$mport" --shutdown-delay 0s
  serve_pid="$CP_LAST_PID"
  s_ready="$(py wait-ready "$port" "$ca" "$start" --pid "$serve_pid" --timeout 600)" ||
    { cp_dump_logs 20; die "$label serve never became ready at $size"; }
  sleep 2
  s_rss_sync="$(kib "$serve_pid" VmRSS)"
  local m="http://127.0.0.1:$mport/metrics" api0 cache0 get0 api1 cache1 get1 bapi0 bapi1 list0 list1
  api0="$(py metric "$m" sts_guard_service_lookups_total path=api)"
  cache0="$(py metric "$m" sts_guard_service_lookups_total path=cache)"
  get0="$(api_metric apiserver_request_total resource=services verb=GET)"
  bapi0="$(py metric "$m" sts_guard_disruption_budget_lookups_total path=api)"
  list0="$(api_metric apiserver_request_total resource=poddisruptionbudgets verb=LIST)"
  # Every admission looks its Service up once: the cache and api counters
  # together count the admissions. One review first: the oha body is
  # allowed (oha checks only the status).
  py load "$port" "$ca" "$bodies/one.json" >/dev/null || die "$label: the oha body is not allowed"
  s_varied="$(py load "$port" "$ca" "$bodies/many.jsonl")" || die "$label: varied load failed at $size"
  "$OHA" --no-tui --output-format quiet -z 2s -c "$conns" -m POST -T application/json \
    -D "$bodies/one.json" --cacert "$ca" "https://localhost:$port/validate" >/dev/null 2>&1
  local run
  for ((run = 1; run <= oha_runs; run++)); do
    "$OHA" --no-tui --output-format json -z "$duration" -q "$rate" --latency-correction -c "$conns" \
      -m POST -T application/json -D "$bodies/one.json" --cacert "$ca" \
      "https://localhost:$port/validate" >"$out/oha-$label-$size-$run.json" 2>>"$out/oha.log" ||
      die "$label: oha failed at $size"
  done
  api1="$(py metric "$m" sts_guard_service_lookups_total path=api)"
  cache1="$(py metric "$m" sts_guard_service_lookups_total path=cache)"
  get1="$(api_metric apiserver_request_total resource=services verb=GET)"
  bapi1="$(py metric "$m" sts_guard_disruption_budget_lookups_total path=api)"
  list1="$(api_metric apiserver_request_total resource=poddisruptionbudgets verb=LIST)"
  sleep 1
  s_rss_load="$(kib "$serve_pid" VmRSS)"
  s_hwm="$(kib "$serve_pid" VmHWM)"
  s_api_lookups=$((api1 - api0))
  s_cache_lookups=$((cache1 - cache0))
  s_apiserver_gets=$((get1 - get0))
  s_budget_api=$((bapi1 - bapi0))
  s_apiserver_pdb_lists=$((list1 - list0))
  stop_serve
}

measure_audit() { # <bin>; sets a_seconds, a_rss_kib (medians), a_exit
  local bin="$1" r secs=() rss=() t
  for ((r = 0; r < audit_runs; r++)); do
    /usr/bin/time -v -o "$work/time.txt" "$bin" audit >/dev/null 2>"$work/audit.err"
    a_exit=$(awk -F': ' '/Exit status/ {print $2}' "$work/time.txt")
    ((a_exit <= 1)) || { cat "$work/audit.err" >&2; die "audit exited $a_exit"; }
    t="$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt")"
    secs+=("$(python3 -c 'import sys; p = sys.argv[1].split(":"); print(sum(float(x) * 60 ** i for i, x in enumerate(reversed(p))))' "$t")")
    rss+=("$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")")
  done
  a_seconds="$(printf '%s\n' "${secs[@]}" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')"
  a_rss_kib="$(printf '%s\n' "${rss[@]}" | sort -g | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')"
  a_all="${secs[*]} / ${rss[*]}"
}

for size in "${sizes[@]}"; do
  headless=$(((size + 2) / 3))
  sts=$((headless < statefulsets ? headless : statefulsets))
  note "step: $size Services ($headless headless), $sts StatefulSets"
  pop="$(py populate "${creds[@]}" --services "$size" --statefulsets "$sts" \
    --namespaces "$namespaces" --workers "$workers")" || die "populate failed at $size"
  note "populated: $pop"
  py bodies "$out/bodies-$size" --statefulsets "$sts" --count "$reviews" --namespaces "$namespaces" ||
    die "bodies failed"
  sleep 5 # let the API server and etcd settle after the writes
  for build in old new; do
    if [[ "$build" == old ]]; then bin="$OLD_BIN"; rev="$old_rev"; else bin="$NEW_BIN"; rev="$new_rev"; fi
    wait_quiet
    load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
    note "$build: serve at $size"
    busy_start
    measure_serve "$build" "$bin" "$size" "$out/bodies-$size"
    busy_stop
    serve_busy="$busy_share"
    wait_quiet
    note "$build: audit at $size"
    busy_start
    measure_audit "$bin"
    busy_stop
    python3 - "$out"/oha-"$build-$size"-*.json >>"$out/results.jsonl" <<PY
import json, statistics, sys
runs = []
for path in sys.argv[1:]:
    o = json.load(open(path))
    codes = o.get("statusCodeDistribution", {})
    errors = {k: v for k, v in (o.get("errorDistribution") or {}).items() if "aborted due to deadline" not in k}
    assert set(codes) == {"200"} and not errors, (path, codes, errors)
    lat = o["latencyPercentiles"]
    runs.append({"p50": lat["p50"] * 1e3, "p99": lat["p99"] * 1e3, "p999": lat["p99.9"] * 1e3,
                 "requests": sum(codes.values())})
med = {k: statistics.median(r[k] for r in runs) for k in ("p50", "p99", "p999")}
print(json.dumps({
    "size": $size, "headless": $headless, "statefulsets": $sts, "build": "$build", "rev": "$rev",
    "ready_s": float("$s_ready"), "rss_sync_kib": $s_rss_sync, "rss_load_kib": $s_rss_load,
    "hwm_kib": $s_hwm, "oha": {**med, "requests": sum(r["requests"] for r in runs), "runs": runs},
    "varied": json.loads('$s_varied'),
    "api_lookups": $s_api_lookups, "cache_lookups": $s_cache_lookups,
    "apiserver_service_gets": $s_apiserver_gets,
    "budget_api_lookups": $s_budget_api, "apiserver_pdb_lists": $s_apiserver_pdb_lists,
    "audit_s": $a_seconds, "audit_rss_kib": $a_rss_kib, "audit_exit": $a_exit, "audit_all": "$a_all",
    "quiet": "$quiet", "load": "$load_before",
    "busy_serve": "$serve_busy", "busy_audit": "$busy_share",
}))
PY
    tail -n 1 "$out/results.jsonl" >&2
  done
done

{
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'); $machine; kube-apiserver $apiserver_version; old = $old_rev, new = $new_rev; oha $rate req/s, $conns connections, $duration, latency-corrected; $reviews varied reviews over one connection; audit median of $audit_runs"
  echo
  python3 "$here/scale_report.py" "$out/results.jsonl"
} | tee "$out/report.md"
note "kept in $out"
