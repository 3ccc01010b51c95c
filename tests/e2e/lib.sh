# shellcheck shell=bash
# A real, minimal Kubernetes control plane for end-to-end tests: etcd plus
# kube-apiserver on loopback, built from source by build-control-plane.sh.
# There is no controller-manager, scheduler or kubelet: objects are stored
# and admitted (defaulting, validation, admission webhooks and policies all
# run for real), but namespaces never finish deleting, no default
# ServiceAccount is created and StatefulSets never get Pods.
#
# The Rust tests (tests/e2e/main.rs, tests/cli_audit.rs) start the same
# control plane from tests/support/control_plane.rs and register sts-guard
# through tests/support/webhook.rs; this file is for bash scripts
# (bench/e2e-cost.sh, smoke.sh). Keep the kube-apiserver flags and
# webhooks_from_deploy of the two alike.
#
# Source it from a bash script (it sets no shell options of its own):
#
#   . tests/e2e/lib.sh
#   work=$(mktemp -d)
#   trap 'cp_stop' EXIT            # add your own cleanup to the same trap
#   trap 'exit 130' INT; trap 'exit 143' TERM   # so EXIT runs on signals
#   cp_start "$work"               # blocks until the API is usable
#   kubectl get ns default         # KUBECONFIG is exported
#
# Functions:
#   cp_start <workdir> [extra kube-apiserver flags...]
#   cp_stop                        idempotent; safe in an EXIT trap
#   cp_dump_logs [lines]           tail of every <workdir>/logs/*.log, to stderr
#   cp_spawn <name> <cmd...>       run a helper (e.g. the webhook) in the
#                                  background, log in logs/<name>.log, stopped
#                                  by cp_stop; its PID in CP_LAST_PID
#   cp_issue_serving_cert <outdir> <san>...
#                                  ca.crt/tls.crt/tls.key signed by the
#                                  control plane's CA (san: 127.0.0.1, localhost, ...)
#   webhooks_from_deploy <url> <ca.crt>
#                                  deploy/base/webhooks.yaml as a List on stdout,
#                                  each webhook's clientConfig set to <url><path>
#                                  and the CA's caBundle (needs kubectl, python3)
#   free_port                      a free loopback TCP port
#   wait_for <timeout-s> <cmd...>  poll cmd until it succeeds
#
# Exported by cp_start:
#   CP_WORKDIR         absolute workdir (pki/, logs/, etcd-data/, kubeconfig)
#   CP_BIN_DIR         dir holding kube-apiserver and etcd
#   KUBECONFIG         $CP_WORKDIR/kubeconfig (admin, system:masters, certs embedded)
#   KUBECACHEDIR       $CP_WORKDIR/kube-cache (keeps kubectl's cache out of $HOME)
#   CP_APISERVER_URL   https://127.0.0.1:<port>
#   CP_APISERVER_PORT  <port>
#   CP_ETCD_URL        http://127.0.0.1:<port>
#   CP_CA_CERT         $CP_WORKDIR/pki/ca.crt (CA of the apiserver's serving cert
#                      and of client certs); CP_CA_KEY is its key
#   CP_ADMIN_CERT, CP_ADMIN_KEY   admin client certificate (O=system:masters)
#
# Inputs (optional environment):
#   CP_BIN_DIR         use these binaries instead of running build-control-plane.sh
#   CP_START_TIMEOUT   seconds to wait for the apiserver to be ready (default 120)
#   WAIT_FOR_INTERVAL  poll interval of wait_for in seconds (default 0.2)
#
# Needs: openssl, curl, kubectl; python3 if present (port picking).

_CP_LIB_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# ---------------------------------------------------------------------------
# Generic helpers

# Microseconds since the epoch, into the variable named $1 (no subshell).
_cp_now_us() {
  local t="${EPOCHREALTIME//[!0-9]/}" # locale may use ',' as the separator
  printf -v "$1" '%s' "$t"
}

# "1.5" -> 1500000
_cp_secs_to_us() {
  local s="$1" int frac=""
  int="${s%%.*}"
  [[ "$s" == *.* ]] && frac="${s#*.}"
  frac="${frac}000000"
  echo $((10#${int:-0} * 1000000 + 10#${frac:0:6}))
}

# wait_for <timeout-seconds> <command...>
# Runs the command every WAIT_FOR_INTERVAL (0.2 s) until it exits 0 (returns
# 0) or the deadline passes (returns 1, printing the last attempt's output
# to stderr). The command runs in a subshell with its output captured, so it
# cannot set variables in the caller; functions work.
wait_for() {
  if (($# < 2)); then
    echo "usage: wait_for <timeout-seconds> <command...>" >&2
    return 2
  fi
  local timeout="$1" now deadline out=""
  shift
  _cp_now_us now
  deadline=$((now + $(_cp_secs_to_us "$timeout")))
  while :; do
    if out="$("$@" 2>&1)"; then
      return 0
    fi
    _cp_now_us now
    if ((now >= deadline)); then
      echo "wait_for: timed out after ${timeout}s: $*" >&2
      [[ -n "$out" ]] && printf '%s\n' "$out" | tail -n 20 >&2
      return 1
    fi
    sleep "${WAIT_FOR_INTERVAL:-0.2}"
  done
}

# _cp_free_ports <n>: n distinct loopback ports, one per line, that could be
# bound just now. They are picked below the kernel's ephemeral range, so an
# outgoing connection (apiserver -> etcd, kubectl -> apiserver, ...) cannot
# grab one between the pick and the bind; another test picking the same port
# at the same moment is handled by cp_start's retry.
_cp_free_ports() {
  local n="$1" lo=32768
  if [[ -r /proc/sys/net/ipv4/ip_local_port_range ]]; then
    read -r lo _ </proc/sys/net/ipv4/ip_local_port_range
  fi
  ((lo > 12000)) || lo=61000 # odd setups: fall back to above the range
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$n" "$lo" <<'PY'
import random, socket, sys
n, lo = int(sys.argv[1]), int(sys.argv[2])
rng = (10000, lo - 1) if lo <= 61000 else (61000, 65535)
held = []
while len(held) < n:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randint(*rng)))
    except OSError:
        s.close()
        continue
    held.append(s)  # keep it bound so the next pick differs
for s in held:
    print(s.getsockname()[1])
PY
  else
    # Without python: a port nobody listens on (connect refused) is free
    # enough for a test.
    local picked=() p
    while ((${#picked[@]} < n)); do
      p=$((10000 + RANDOM % (lo - 10000)))
      [[ " ${picked[*]} " == *" $p "* ]] && continue
      if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        picked+=("$p")
      fi
    done
    printf '%s\n' "${picked[@]}"
  fi
}

# free_port: prints one free loopback TCP port.
free_port() {
  _cp_free_ports 1
}

# True while the process runs (a zombie awaiting reaping counts as dead).
_cp_alive() {
  local state=""
  kill -0 "$1" 2>/dev/null || return 1
  read -r _ _ state _ <"/proc/$1/stat" 2>/dev/null || return 1
  [[ "$state" != Z ]]
}

# For wait_for: succeeds when the command does OR when the process <pid> has
# died, so a crashed component is noticed at once instead of at the deadline.
_cp_ready_or_dead() {
  local pid="$1"
  shift
  "$@" || ! _cp_alive "$pid"
}

# ---------------------------------------------------------------------------
# PKI (openssl). EC P-256 keys for the TLS certificates (instant to make);
# RSA for the service-account signing key.

_cp_openssl_cnf() {
  cat <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = $ENV::CP_PKI_SAN
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
EOF
}

# _cp_issue <pki-dir> <name> <server|client> <subject> [san-list]
# Writes <name>.key/<name>.crt signed by <pki-dir>/ca.{crt,key}.
_cp_issue() {
  local d="$1" name="$2" kind="$3" subj="$4" san="${5:-DNS:unused}"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/$name.key" 2>/dev/null &&
    CP_PKI_SAN="$san" openssl req -new -config "$d/openssl.cnf" -key "$d/$name.key" \
      -subj "$subj" -out "$d/$name.csr" &&
    CP_PKI_SAN="$san" openssl x509 -req -in "$d/$name.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
      -set_serial "0x$(openssl rand -hex 12)" -days 30 -sha256 \
      -extfile "$d/openssl.cnf" -extensions "${kind}_ext" -out "$d/$name.crt" 2>/dev/null &&
    rm -f "$d/$name.csr"
}

_cp_make_pki() {
  local d="$1"
  mkdir -p "$d"
  _cp_openssl_cnf >"$d/openssl.cnf"
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$d/ca.key" 2>/dev/null &&
    CP_PKI_SAN="DNS:unused" openssl req -x509 -new -config "$d/openssl.cnf" -extensions ca_ext \
      -key "$d/ca.key" -subj "/CN=sts-guard-e2e-ca" -days 30 -sha256 -out "$d/ca.crt" &&
    _cp_issue "$d" apiserver server "/CN=kube-apiserver" \
      "IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" &&
    _cp_issue "$d" admin client "/O=system:masters/CN=kubernetes-admin" &&
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$d/sa.key" 2>/dev/null &&
    openssl pkey -in "$d/sa.key" -pubout -out "$d/sa.pub"
}

# cp_issue_serving_cert <outdir> <san>...
# A serving certificate signed by the control plane's CA, for a test webhook:
# <outdir>/ca.crt, tls.crt, tls.key (the names `sts-guard certs` uses).
# Each san is an IP address or a DNS name. Needs a started control plane.
cp_issue_serving_cert() {
  if (($# < 2)) || [[ -z "${CP_WORKDIR:-}" ]]; then
    echo "usage: cp_issue_serving_cert <outdir> <san>... (after cp_start)" >&2
    return 2
  fi
  local out="$1" s sans="" pki="$CP_WORKDIR/pki" name
  shift
  for s in "$@"; do
    if [[ "$s" =~ ^[0-9.]+$ || "$s" == *:* ]]; then sans+=",IP:$s"; else sans+=",DNS:$s"; fi
  done
  name="serving-$RANDOM$RANDOM"
  mkdir -p "$out" &&
    _cp_issue "$pki" "$name" server "/CN=$1" "${sans#,}" &&
    mv -f "$pki/$name.crt" "$out/tls.crt" &&
    mv -f "$pki/$name.key" "$out/tls.key" &&
    cp -f "$pki/ca.crt" "$out/ca.crt"
}

# ---------------------------------------------------------------------------
# Control plane

_cp_write_kubeconfig() {
  local ca crt key
  ca="$(base64 -w0 <"$CP_CA_CERT")"
  crt="$(base64 -w0 <"$CP_ADMIN_CERT")"
  key="$(base64 -w0 <"$CP_ADMIN_KEY")"
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: sts-guard-e2e
  cluster:
    server: $CP_APISERVER_URL
    certificate-authority-data: $ca
users:
- name: admin
  user:
    client-certificate-data: $crt
    client-key-data: $key
contexts:
- name: sts-guard-e2e
  context:
    cluster: sts-guard-e2e
    user: admin
current-context: sts-guard-e2e
EOF
  chmod 600 "$1"
}

# Starts <cmd...> in the background with its output in <log>, and records it
# in $CP_WORKDIR/pids. Its PID goes into the variable named $1.
_cp_spawn() {
  local __var="$1" log="$2"
  shift 2
  "$@" </dev/null >"$log" 2>&1 &
  printf -v "$__var" '%s' "$!"
  echo "$! $(basename "$1")" >>"$CP_WORKDIR/pids"
}

# Kills the control plane if the shell that started it goes away without
# running cp_stop (SIGKILL, a crash of the test runner...), so no apiserver
# is left holding ports.
_cp_start_watchdog() {
  local owner="$1" pidfile="$CP_WORKDIR/pids"
  (
    while kill -0 "$owner" 2>/dev/null; do sleep 1; done
    if [[ -f "$pidfile" ]]; then
      # shellcheck disable=SC2046 # word splitting of the PID list is wanted
      kill -TERM $(awk '{print $1}' "$pidfile") 2>/dev/null || true
      sleep 5
      # shellcheck disable=SC2046
      kill -KILL $(awk '{print $1}' "$pidfile") 2>/dev/null || true
    fi
  ) </dev/null >/dev/null 2>&1 &
  echo "$!" >"$CP_WORKDIR/watchdog.pid"
}

# One attempt. Returns 0 when ready, 2 when a port was taken meanwhile
# (worth a retry with fresh ports), 1 on any other failure.
_cp_start_once() {
  local w="$CP_WORKDIR" pki="$CP_WORKDIR/pki" ports etcd_pid api_pid
  mapfile -t ports < <(_cp_free_ports 3)
  ((${#ports[@]} == 3)) || { echo "cp_start: could not pick free ports" >&2; return 1; }
  local etcd_client="${ports[0]}" etcd_peer="${ports[1]}" api_port="${ports[2]}"

  export CP_ETCD_URL="http://127.0.0.1:$etcd_client"
  export CP_APISERVER_PORT="$api_port"
  export CP_APISERVER_URL="https://127.0.0.1:$api_port"

  rm -rf "$w/etcd-data"
  # --unsafe-no-fsync: throwaway data; fsync on a loaded CI disk is the
  # main cause of slow etcd writes.
  _cp_spawn etcd_pid "$w/logs/etcd.log" "$CP_BIN_DIR/etcd" \
    --name=e2e \
    --data-dir="$w/etcd-data" \
    --listen-client-urls="$CP_ETCD_URL" \
    --advertise-client-urls="$CP_ETCD_URL" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer" \
    --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer" \
    --initial-cluster="e2e=http://127.0.0.1:$etcd_peer" \
    --initial-cluster-state=new \
    --unsafe-no-fsync
  if ! wait_for 30 _cp_ready_or_dead "$etcd_pid" curl -sf --max-time 2 "$CP_ETCD_URL/health" ||
    ! _cp_alive "$etcd_pid"; then
    grep -q 'address already in use' "$w/logs/etcd.log" && return 2
    echo "cp_start: etcd did not become healthy" >&2
    return 1
  fi

  # Flags: a single-node API server that needs no other component.
  #  --allow-privileged: like real clusters (kubeadm), so templates with
  #    privileged containers pass validation.
  #  --enable-admission-plugins: on top of the defaults; named explicitly
  #    because the tests rely on them.
  #  --cert-dir: never write generated certs outside the workdir.
  #  --endpoint-reconciler-type=none: the "kubernetes" Service endpoints
  #    would point at 127.0.0.1, which Endpoints validation rejects (an
  #    error logged every few seconds); nothing here needs them.
  _cp_spawn api_pid "$w/logs/kube-apiserver.log" "$CP_BIN_DIR/kube-apiserver" \
    --bind-address=127.0.0.1 \
    --advertise-address=127.0.0.1 \
    --secure-port="$api_port" \
    --cert-dir="$pki" \
    --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --etcd-servers="$CP_ETCD_URL" \
    --service-account-issuer=https://kubernetes.default.svc \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --authorization-mode=RBAC \
    --service-cluster-ip-range=10.0.0.0/24 \
    --enable-admission-plugins=NamespaceLifecycle,ServiceAccount,MutatingAdmissionWebhook,ValidatingAdmissionPolicy,ValidatingAdmissionWebhook \
    --allow-privileged=true \
    --endpoint-reconciler-type=none \
    --profiling=false \
    "$@"

  if ! wait_for "${CP_START_TIMEOUT:-120}" _cp_ready_or_dead "$api_pid" \
    curl -sf --max-time 2 --cacert "$CP_CA_CERT" --cert "$CP_ADMIN_CERT" --key "$CP_ADMIN_KEY" \
    "$CP_APISERVER_URL/readyz" ||
    ! _cp_alive "$api_pid"; then
    grep -q 'address already in use' "$w/logs/kube-apiserver.log" && return 2
    echo "cp_start: kube-apiserver did not become ready" >&2
    return 1
  fi

  _cp_write_kubeconfig "$KUBECONFIG"
  # The bootstrap controller creates "default" (and kube-system, ...) just
  # after start; tests that create objects right away need it.
  if ! wait_for 60 kubectl get namespace default -o name; then
    echo "cp_start: namespace default never appeared" >&2
    return 1
  fi
  return 0
}

# cp_start <workdir> [extra kube-apiserver flags...]
# Creates <workdir> if needed, builds the binaries unless CP_BIN_DIR is set
# (a no-op when cached), starts etcd and kube-apiserver, and returns once
# `kubectl get ns default` works. Must run in the test's own shell (not in
# $(...)): it exports the variables listed at the top of this file. Extra
# flags are appended last, so they override the defaults, e.g.
# `cp_start "$w" --feature-gates=MutatingAdmissionPolicy=true`.
cp_start() {
  if (($# < 1)); then
    echo "usage: cp_start <workdir> [extra kube-apiserver flags...]" >&2
    return 2
  fi
  if [[ -n "${CP_WORKDIR:-}" && -s "$CP_WORKDIR/pids" ]]; then
    echo "cp_start: a control plane is already running in $CP_WORKDIR (cp_stop first)" >&2
    return 1
  fi
  local tool
  for tool in openssl curl kubectl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "cp_start: $tool is required" >&2; return 1; }
  done

  mkdir -p "$1" || return 1
  CP_WORKDIR="$(cd "$1" && pwd)" || return 1
  export CP_WORKDIR
  shift

  if [[ -z "${CP_BIN_DIR:-}" ]]; then
    CP_BIN_DIR="$("$_CP_LIB_DIR/build-control-plane.sh" | tail -n 1)" || return 1
  fi
  export CP_BIN_DIR
  if [[ ! -x "$CP_BIN_DIR/etcd" || ! -x "$CP_BIN_DIR/kube-apiserver" ]]; then
    echo "cp_start: no etcd/kube-apiserver in CP_BIN_DIR=$CP_BIN_DIR" >&2
    return 1
  fi

  mkdir -p "$CP_WORKDIR/logs" "$CP_WORKDIR/kube-cache"
  export KUBECONFIG="$CP_WORKDIR/kubeconfig"
  export KUBECACHEDIR="$CP_WORKDIR/kube-cache"
  export CP_CA_CERT="$CP_WORKDIR/pki/ca.crt"
  export CP_CA_KEY="$CP_WORKDIR/pki/ca.key"
  export CP_ADMIN_CERT="$CP_WORKDIR/pki/admin.crt"
  export CP_ADMIN_KEY="$CP_WORKDIR/pki/admin.key"
  _cp_make_pki "$CP_WORKDIR/pki" || { echo "cp_start: openssl failed" >&2; return 1; }

  local attempt rc
  for attempt in 1 2 3; do
    : >"$CP_WORKDIR/pids"
    _cp_start_watchdog "$BASHPID"
    rc=0
    _cp_start_once "$@" || rc=$?
    ((rc == 0)) && return 0
    if ((rc == 2 && attempt < 3)); then
      echo "cp_start: a port was taken meanwhile; retrying with new ports" >&2
      cp_stop
      continue
    fi
    break
  done
  echo "cp_start: the control plane did not start; logs follow" >&2
  cp_dump_logs 60
  cp_stop
  return 1
}

# cp_stop: stops everything cp_start and cp_spawn started, newest first
# (helpers, then the apiserver, then etcd).
# Idempotent; always returns 0, so it is safe in an EXIT trap.
cp_stop() {
  [[ -n "${CP_WORKDIR:-}" ]] || return 0
  local pidfile="$CP_WORKDIR/pids" pid name i pids=()
  if [[ -f "$CP_WORKDIR/watchdog.pid" ]]; then
    kill -TERM "$(cat "$CP_WORKDIR/watchdog.pid")" 2>/dev/null || true
    rm -f "$CP_WORKDIR/watchdog.pid"
  fi
  [[ -f "$pidfile" ]] || return 0
  # Reverse start order: the apiserver shuts down cleanly while etcd is up.
  # Name is the basename of the program; unused here.
  while read -r pid name; do
    [[ -n "$pid" ]] && pids=("$pid" "${pids[@]}")
  done <"$pidfile"
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    i=0
    while _cp_alive "$pid" && ((i < 100)); do # up to 10 s
      sleep 0.1
      i=$((i + 1))
    done
    _cp_alive "$pid" && { kill -KILL "$pid" 2>/dev/null || true; }
    wait "$pid" 2>/dev/null || true # reap if it is our child
  done
  rm -f "$pidfile"
  return 0
}

# cp_spawn <name> <cmd...>
# Starts a helper process of the test (the webhook under test, a stub...)
# in the background, output in $CP_WORKDIR/logs/<name>.log, and registers it
# so that cp_stop (and the watchdog) stop it too, before the control plane.
# Sets CP_LAST_PID. Needs a started control plane.
cp_spawn() {
  if (($# < 2)) || [[ -z "${CP_WORKDIR:-}" || ! -f "$CP_WORKDIR/pids" ]]; then
    echo "usage: cp_spawn <name> <cmd...> (after cp_start)" >&2
    return 2
  fi
  local name="$1"
  shift
  _cp_spawn CP_LAST_PID "$CP_WORKDIR/logs/$name.log" "$@"
}

# cp_dump_logs [lines]: the last <lines> (default 60) lines of every log in
# $CP_WORKDIR/logs, to stderr. Tests can put their own logs there too (e.g.
# the webhook's, as logs/sts-guard.log) to have them dumped on failure.
cp_dump_logs() {
  local n="${1:-60}" f
  [[ -n "${CP_WORKDIR:-}" && -d "$CP_WORKDIR/logs" ]] || return 0
  for f in "$CP_WORKDIR"/logs/*.log; do
    [[ -f "$f" ]] || continue
    printf '===== %s (last %s lines) =====\n' "$f" "$n" >&2
    tail -n "$n" "$f" >&2
  done
  return 0
}

# The webhook configurations of deploy/ pointed at a loopback URL: the same
# rules, selectors, timeouts and failure policies, so tests and benchmarks
# cannot drift from what users install.
webhooks_from_deploy() { # <url> <ca.crt>
  local url=$1 ca_b64 repo
  ca_b64="$(base64 -w0 <"$2")" || return 1
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  kubectl create --dry-run=client -o json -f "$repo/deploy/base/webhooks.yaml" |
    python3 -c '
import json, sys
url, ca = sys.argv[1], sys.argv[2]
# kubectl prints one JSON object per document, back to back.
text, decoder, docs, at = sys.stdin.read(), json.JSONDecoder(), [], 0
while text[at:].strip():
    doc, end = decoder.raw_decode(text, at)
    docs.append(doc)
    at = end
    while at < len(text) and text[at].isspace():
        at += 1
for cfg in docs:
    for hook in cfg["webhooks"]:
        path = hook["clientConfig"]["service"]["path"]
        hook["clientConfig"] = {"url": url + path, "caBundle": ca}
print(json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
' "$url" "$ca_b64"
}
