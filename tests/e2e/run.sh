#!/usr/bin/env bash
# End-to-end: sts-guard behind a real kube-apiserver + etcd on loopback,
# driven with kubectl exactly as users drive it.
#
#   tests/e2e/run.sh           run every scenario; prints "N passed, M failed"
#   tests/e2e/run.sh --keep    demo: start everything, apply examples/, keep it
#                              running until Ctrl-C (prints the KUBECONFIG)
#
# Environment: STS_GUARD_BIN (default: cargo build, target/debug/sts-guard),
# CP_BIN_DIR (prebuilt kube-apiserver + etcd), STS_GUARD_E2E_CACHE.
set -uo pipefail
# `manifest | apply NS` must set rc/out/err in this shell, not a subshell.
shopt -s lastpipe

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"

mode=test
case "${1:-}" in
  --keep | demo) mode=keep ;;
  "") ;;
  *) echo "usage: $0 [--keep]" >&2; exit 2 ;;
esac

work="$(mktemp -d "${TMPDIR:-/tmp}/sts-guard-e2e.XXXXXX")"
webhook_pid=""
cleanup() {
  [[ -n "$webhook_pid" ]] && kill -TERM "$webhook_pid" 2>/dev/null && wait "$webhook_pid" 2>/dev/null
  cp_stop
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- build -----------------------------------------------------------------
if [[ -z "${STS_GUARD_BIN:-}" ]]; then
  (cd "$repo" && cargo build --locked --quiet) || { echo "cargo build failed" >&2; exit 1; }
  STS_GUARD_BIN="$repo/target/debug/sts-guard"
fi
if [[ -z "${CP_BIN_DIR:-}" ]]; then
  CP_BIN_DIR="$("$here/build-control-plane.sh" | tail -n 1)" || exit 1
fi
export CP_BIN_DIR

# ---- control plane ---------------------------------------------------------
started=$SECONDS
cp_start "$work/cp" || exit 1
echo "# control plane ready in $((SECONDS - started))s at $CP_APISERVER_URL" >&2

# ---- webhook ---------------------------------------------------------------
webhook_port="$(free_port)"
metrics_port="$(free_port)"
certs="$work/webhook-certs"
"$STS_GUARD_BIN" certs --out "$certs" --dns localhost --ip 127.0.0.1 2>/dev/null || exit 1
policy="$work/policy.yaml"
cat >"$policy" <<'EOF'
mode: enforce
namespaces:
  e2e-warn: {mode: warn}
  e2e-audit: {mode: audit}
  demo-warn: {mode: warn}
exemptions:
  - namespace: e2e-exempt
    name: no-service
    rules: [headless-service]
    reason: runs without a Service on purpose (e2e)
EOF

start_webhook() {
  "$STS_GUARD_BIN" serve \
    --listen "127.0.0.1:$webhook_port" --metrics-listen "127.0.0.1:$metrics_port" \
    --cert "$certs/tls.crt" --key "$certs/tls.key" --config "$policy" \
    --shutdown-delay 0s --reload-interval 200ms \
    >>"$CP_WORKDIR/logs/sts-guard.log" 2>&1 &
  webhook_pid=$!
  wait_for 30 curl -fsS --cacert "$certs/ca.crt" "https://127.0.0.1:$webhook_port/readyz" -o /dev/null
}
stop_webhook() {
  kill -TERM "$webhook_pid" 2>/dev/null
  wait "$webhook_pid" 2>/dev/null
  webhook_pid=""
}

# The webhook configurations of deploy/, pointed at this process: the same
# rules, selectors, timeouts and failure policies, so the two cannot drift.
register_webhooks() {
  webhooks_from_deploy "https://127.0.0.1:$webhook_port" "$certs/ca.crt" >"$work/webhooks.json" || return 1
  kubectl apply -f "$work/webhooks.json" >/dev/null || return 1
  # The API server picks new configurations up asynchronously: wait until a
  # denial proves the validating webhook is live.
  kubectl create namespace e2e-probe >/dev/null 2>&1
  wait_for 30 bash -c '! kubectl apply --dry-run=server -n e2e-probe -f "$1" >/dev/null 2>&1' _ "$repo/examples/missing-probes.yaml"
}

# ---- assertions ------------------------------------------------------------
passed=0
failed=0
out=""
err=""
rc=0
# run CMD...: captures stdout, stderr and the exit code.
run() {
  out="$("$@" 2>"$work/stderr")"
  rc=$?
  err="$(cat "$work/stderr")"
}
pass() {
  passed=$((passed + 1))
  echo "ok - $1"
}
failure() {
  failed=$((failed + 1))
  echo "not ok - $1"
  echo "  reason: $2"
  echo "  exit: $rc"
  [[ -n "$out" ]] && sed 's/^/  stdout: /' <<<"$out" | head -20
  [[ -n "$err" ]] && sed 's/^/  stderr: /' <<<"$err" | head -20
}
# check NAME CONDITION-DESCRIPTION CMD...: pass when CMD (a test) succeeds.
check() {
  local name="$1" what="$2"
  shift 2
  if "$@"; then pass "$name"; else failure "$name" "$what"; fi
}
has() { grep -qF -- "$2" <<<"$1"; }
lacks() { ! grep -qF -- "$2" <<<"$1"; }
is() { [[ "$1" == "$2" ]]; }

ns() { kubectl create namespace "$1" >/dev/null; }
stored() { kubectl get "$1" -n "$2" "$3" >/dev/null 2>&1; }
absent() { ! stored "$@"; }

# A StatefulSet; options: no-liveness, no-readiness, svc=NAME, labels=K=V,
# annotate=K=V (repeatable).
sts() {
  local name="$1" liveness=1 readiness=1 svc="$1" annotations="" opt
  shift
  for opt in "$@"; do
    case "$opt" in
      no-liveness) liveness=0 ;;
      no-readiness) readiness=0 ;;
      svc=*) svc="${opt#svc=}" ;;
      annotate=*) annotations+="    ${opt#annotate=}"$'\n' ;;
    esac
  done
  annotations="${annotations//=/: }"
  cat <<EOF
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: $name
  annotations:
    e2e: "true"
$annotations
spec:
  serviceName: $svc
  replicas: 1
  selector:
    matchLabels: {app: $name}
  template:
    metadata:
      labels: {app: $name}
    spec:
      containers:
        - name: app
          image: python:3.12-slim
          ports: [{name: http, containerPort: 8000}]
EOF
  ((liveness)) && printf '          livenessProbe:\n            httpGet: {path: /healthz, port: http}\n            periodSeconds: 10\n'
  ((readiness)) && printf '          readinessProbe:\n            tcpSocket: {port: http}\n'
  cat <<EOF
        - name: sidecar
          image: busybox:1.36
          livenessProbe:
            exec: {command: [cat, /tmp/ok]}
          readinessProbe:
            exec: {command: [cat, /tmp/ok]}
EOF
}
# A Service; options: cluster-ip (not headless), selector=K=V.
svc() {
  local name="$1" cluster_ip="None" selector="app: $1" opt
  shift
  for opt in "$@"; do
    case "$opt" in
      cluster-ip) cluster_ip="" ;;
      selector=*) selector="${opt#selector=}"; selector="${selector/=/: }" ;;
    esac
  done
  cat <<EOF
apiVersion: v1
kind: Service
metadata:
  name: $name
spec:
$([[ -n "$cluster_ip" ]] && echo "  clusterIP: $cluster_ip")
  selector: {$selector}
  ports: [{name: http, port: 8000}]
EOF
}
apply() { # NS [kubectl flags...] < manifest
  local namespace="$1"
  shift
  run kubectl apply -n "$namespace" "$@" -f -
}
metric() { curl -fsS "http://127.0.0.1:$metrics_port/metrics"; }

# ---- a StatefulSet that exists before the webhook ----------------------------
ns e2e-update
svc legacy | apply e2e-update
sts legacy no-readiness | apply e2e-update
sts good | apply e2e-update
svc good | apply e2e-update

start_webhook || { cp_dump_logs 40; echo "0 passed, 1 failed (webhook did not start)"; exit 1; }
register_webhooks || { cp_dump_logs 40; echo "0 passed, 1 failed (webhooks not registered)"; exit 1; }

if [[ "$mode" == keep ]]; then
  cp "$policy" "$work/policy.yaml.in-use" 2>/dev/null
  kubectl create namespace demo >/dev/null
  kubectl create namespace demo-warn >/dev/null
  show() {
    echo
    echo "\$ $*"
    "$@"
  }
  show kubectl apply -n demo -f "$repo/examples/compliant.yaml"
  show kubectl apply -n demo -f "$repo/examples/missing-probes.yaml"
  show kubectl apply -n demo -f "$repo/examples/no-headless-service.yaml"
  show kubectl apply -n demo-warn -f "$repo/examples/missing-probes.yaml"
  show kubectl apply -n demo -f "$repo/examples/mutated.yaml"
  show kubectl get sts -n demo queue -o jsonpath='{.spec.podManagementPolicy}{"\n"}'
  show kubectl get sts -n demo queue -o jsonpath='{.spec.template.spec.containers[0].startupProbe}{"\n"}'
  cat <<EOF

sts-guard is running with a real kube-apiserver. In another shell:

  export KUBECONFIG=$KUBECONFIG
  kubectl apply --dry-run=server -n demo -f examples/no-headless-service.yaml
  $STS_GUARD_BIN check -f examples/

Policy: $policy (edit it: the webhook reloads it). Logs: $CP_WORKDIR/logs/
Ctrl-C tears everything down.
EOF
  while kill -0 "$webhook_pid" 2>/dev/null; do sleep 1; done
  exit 0
fi

# ---- scenarios ---------------------------------------------------------------
echo "# scenarios" >&2

ns e2e-ok
{ svc web; echo ---; sts web; } | apply e2e-ok
check "compliant StatefulSet with its headless Service (one file, Service first) is created" \
  "kubectl apply failed or nothing stored" eval '((rc == 0)) && stored sts e2e-ok web'

ns e2e-probes
sts web no-liveness no-readiness | apply e2e-probes
check "missing probes: kubectl exits 1" "exit code" is "$rc" 1
check "missing probes: the webhook's message names the webhook" "stderr" \
  has "$err" 'admission webhook "validate.sts-guard.io" denied the request: statefulset e2e-probes/web has 3 problems:'
check "missing probes: each rule id and container is named with its fix" "stderr" \
  eval 'has "$err" "[liveness-probe] spec.template.spec.containers[0] \"app\" has no livenessProbe: add a livenessProbe" &&
        has "$err" "[readiness-probe] spec.template.spec.containers[0] \"app\" has no readinessProbe" &&
        has "$err" "[headless-service] spec.serviceName \"web\" names no Service"'
check "missing probes: the sidecar that has its probes is not named" "stderr" lacks "$err" '"sidecar"'
check "missing probes: nothing stored" "stored" absent sts e2e-probes web

ns e2e-svc
svc clusterip cluster-ip | apply e2e-svc
sts clusterip | apply e2e-svc
check "serviceName naming a ClusterIP Service is denied" "exit/stderr" \
  eval '((rc == 1)) && has "$err" "[headless-service]" && has "$err" "is not headless (clusterIP: 10."'
svc mismatch selector=app=other | apply e2e-svc
sts mismatch | apply e2e-svc
check "serviceName naming a Service whose selector misses the pods is denied" "exit/stderr" \
  eval '((rc == 1)) && has "$err" "selects app=other which the pod template does not carry"'
sts lonely | apply e2e-svc
check "serviceName naming no Service is denied" "exit/stderr" \
  eval '((rc == 1)) && has "$err" "\"lonely\" names no Service in namespace \"e2e-svc\""'

ns e2e-dry
sts bad no-liveness | apply e2e-dry --dry-run=server
check "dry-run=server of a bad StatefulSet is denied" "exit/stderr" \
  eval '((rc == 1)) && has "$err" "[liveness-probe]"'
check "dry-run=server of a bad StatefulSet stores nothing" "stored" absent sts e2e-dry bad
{ svc both; echo ---; sts both; } | apply e2e-dry --dry-run=server
check "dry-run=server of a Service + StatefulSet file passes with a warning" "exit/stderr" \
  eval '((rc == 0)) && has "$err" "Warning: [headless-service] spec.serviceName \"both\" names no Service" && has "$err" "allowed on dry-run"'
check "dry-run=server stores neither the Service nor the StatefulSet" "stored" \
  eval 'absent sts e2e-dry both && absent svc e2e-dry both'

ns e2e-mutate
mutated() {
  svc queue
  echo ---
  sts queue annotate=sts-guard.io/parallel='"true"' annotate=sts-guard.io/startup-probe='"true"' annotate=sts-guard.io/startup-timeout=2m
}
mutated | apply e2e-mutate
check "annotated StatefulSet is created" "exit" is "$rc" 0
run kubectl get sts -n e2e-mutate queue -o jsonpath='{.spec.podManagementPolicy}'
check "parallel annotation: stored podManagementPolicy is Parallel" "stored value" is "$out" Parallel
run kubectl get sts -n e2e-mutate queue -o json
check "startup-probe annotation: each container got a startup probe copying its liveness check" "stored object" \
  eval 'python3 -c "
import json, sys
c = json.loads(sys.argv[1])[\"spec\"][\"template\"][\"spec\"][\"containers\"]
assert c[0][\"startupProbe\"][\"httpGet\"][\"path\"] == \"/healthz\", c[0]
assert c[0][\"startupProbe\"][\"failureThreshold\"] == 12, c[0]
assert c[1][\"startupProbe\"][\"exec\"][\"command\"] == [\"cat\", \"/tmp/ok\"], c[1]
" "$out"'
generation_before="$(kubectl get sts -n e2e-mutate queue -o jsonpath='{.metadata.generation}')"
mutated | apply e2e-mutate
check "applying the same file again changes nothing" "kubectl output" \
  eval '((rc == 0)) && has "$out" "statefulset.apps/queue unchanged"'
check "the generation did not move" "generation" \
  is "$(kubectl get sts -n e2e-mutate queue -o jsonpath='{.metadata.generation}')" "$generation_before"
run kubectl scale sts -n e2e-mutate queue --replicas=3
check "kubectl scale of the mutated StatefulSet works" "exit" eval '((rc == 0)) && [[ "$(kubectl get sts -n e2e-mutate queue -o jsonpath="{.spec.replicas}")" == 3 ]]'
mutated | sed 's/replicas: 1/replicas: 2/' | apply e2e-mutate
check "an UPDATE of the annotated StatefulSet is not broken by the immutable podManagementPolicy" "exit" is "$rc" 0

ns e2e-warn
sts web no-liveness | apply e2e-warn
check "warn namespace: created" "exit/stored" eval '((rc == 0)) && stored sts e2e-warn web'
check "warn namespace: kubectl prints Warning: per problem" "stderr" \
  eval 'has "$err" "Warning: [liveness-probe] spec.template.spec.containers[0] \"app\" has no livenessProbe" &&
        has "$err" "Warning: [headless-service]"'

ns e2e-audit
sts web no-readiness | apply e2e-audit
check "audit namespace: created silently" "exit/stderr" \
  eval '((rc == 0)) && stored sts e2e-audit web && lacks "$err" "Warning"'
run metric
check "audit namespace: counted in /metrics" "metrics" \
  has "$out" 'sts_guard_rule_findings_total{endpoint="validate",rule="readiness-probe",action="audit",namespace="e2e-audit"} 1'

ns e2e-exempt
sts no-service | apply e2e-exempt
check "policy exemption by name: created without its Service" "exit" eval '((rc == 0)) && stored sts e2e-exempt no-service'

# UPDATEs of objects stored before the webhook existed.
run kubectl label sts -n e2e-update legacy tier=backend
check "UPDATE of a StatefulSet that already broke a rule is allowed" "exit" is "$rc" 0
check "... with a warning saying it already broke it" "stderr" \
  eval 'has "$err" "Warning: [readiness-probe]" && has "$err" "already so before this update"'
run kubectl patch sts -n e2e-update good --type=json \
  -p '[{"op":"remove","path":"/spec/template/spec/containers/0/livenessProbe"}]'
check "UPDATE that removes a probe from a compliant StatefulSet is denied" "exit/stderr" \
  eval '((rc == 1)) && has "$err" "[liveness-probe]"'
kubectl delete svc -n e2e-update good >/dev/null
run kubectl label sts -n e2e-update good tier=frontend
check "a Service deleted after creation never blocks an update" "exit/stderr" \
  eval '((rc == 0)) && has "$err" "allowed on update: serviceName is immutable"'

# No API call per admission: compliant creates are answered from the cache.
api_gets_before="$(metric | sed -n 's/^sts_guard_service_lookups_total{path="api"} //p')"
ns e2e-cache
svc web | apply e2e-cache
wait_for 10 bash -c "curl -fsS http://127.0.0.1:$metrics_port/metrics >/dev/null"
for i in 1 2 3 4 5; do sts "web" | sed "s/name: web$/name: web-$i/" | apply e2e-cache; done
api_gets_after="$(metric | sed -n 's/^sts_guard_service_lookups_total{path="api"} //p')"
cache_hits="$(metric | sed -n 's/^sts_guard_service_lookups_total{path="cache"} //p')"
check "compliant creates are answered from the watch cache (no API call)" \
  "api lookups before=${api_gets_before:-0} after=${api_gets_after:-0}, cache=${cache_hits:-0}" \
  eval '[[ "${api_gets_before:-0}" == "${api_gets_after:-0}" ]] && (( ${cache_hits:-0} >= 5 ))'

# sts-guard audit over this cluster: exactly the non-compliant StatefulSets.
if "$STS_GUARD_BIN" audit --help >/dev/null 2>&1; then
  run "$STS_GUARD_BIN" audit -o json --config "$policy"
  check "sts-guard audit exits 1 (something would be denied)" "exit" is "$rc" 1
  audit_json="$out"
  check "sts-guard audit lists exactly the non-compliant StatefulSets" "audit json" \
    python3 - "$audit_json" <<'EOF'
import json, sys
report = json.loads(sys.argv[1])
denied = sorted(
    f'{o["namespace"]}/{o["name"]}' for o in report["objects"] if o["verdict"] == "denied"
)
# e2e-update/legacy lacks a readiness probe; e2e-update/good lost its Service;
# e2e-warn and e2e-audit are in warn/audit mode, e2e-exempt is exempt.
expected = ["e2e-update/good", "e2e-update/legacy"]
assert denied == expected, f"denied={denied} expected={expected}"
EOF
fi

# deploy/: every overlay renders, and every rendered object is accepted by
# this API server (schema, defaulting, admission incl. Pod Security).
cp -r "$repo/deploy" "$work/deploy"
"$STS_GUARD_BIN" certs --out "$work/deploy/overlays/self-managed/certs" \
  --dns sts-guard.sts-guard.svc --dns sts-guard.sts-guard.svc.cluster.local 2>/dev/null
for overlay in "" overlays/cert-manager overlays/self-managed; do
  run kubectl kustomize "$work/deploy/$overlay"
  check "deploy/$overlay renders with kubectl kustomize" "kustomize" eval '((rc == 0)) && has "$out" "kind: Deployment"'
done
# The namespace and service account for real, so namespaced objects and the
# pod below can be dry-run into them.
kubectl create namespace sts-guard --dry-run=client -o yaml | kubectl label --local -f - \
  pod-security.kubernetes.io/enforce=restricted -o yaml | kubectl apply -f - >/dev/null
kubectl create serviceaccount -n sts-guard sts-guard --save-config >/dev/null 2>&1
for overlay in "" overlays/self-managed overlays/cert-manager; do
  kubectl kustomize "$work/deploy/$overlay" >"$work/rendered.yaml"
  # cert-manager's kinds need its CRDs, which this control plane does not
  # have: everything else of the overlay is still checked.
  python3 - "$work/rendered.yaml" >"$work/rendered-core.yaml" <<'PY'
import re, sys
docs = re.split(r"^---\n", open(sys.argv[1]).read(), flags=re.M)
print("---\n".join(d for d in docs if not re.search(r"^apiVersion: cert-manager\.io/", d, re.M)))
PY
  run kubectl apply --dry-run=server -f "$work/rendered-core.yaml"
  check "deploy/$overlay: every object is accepted by kubectl apply --dry-run=server" "dry-run" \
    eval '((rc == 0)) && has "$out" "deployment.apps/sts-guard created (server dry run)" && lacks "$err" "Warning"'
done
# Deployments only warn about Pod Security; a Pod of the same template is
# what the restricted namespace really enforces.
kubectl kustomize "$work/deploy/overlays/self-managed" | kubectl create --dry-run=client -o json -f - | python3 -c '
import json, sys
out = sys.stdin.read()
decoder, at = json.JSONDecoder(), 0
while out[at:].strip():
    doc, at = decoder.raw_decode(out, at)
    while at < len(out) and out[at].isspace():
        at += 1
    if doc["kind"] == "Deployment":
        t = doc["spec"]["template"]
        print(json.dumps({"apiVersion": "v1", "kind": "Pod",
                          "metadata": {"name": "sts-guard-pss", "namespace": "sts-guard", "labels": t["metadata"]["labels"]},
                          "spec": t["spec"]}))
' >"$work/pod.json"
run kubectl apply --dry-run=server -f "$work/pod.json"
check "the Deployment's pod passes Pod Security restricted" "dry-run" eval '((rc == 0)) && lacks "$err" "violate"'

# Fail closed: the webhook down, failurePolicy Fail on validate.
stop_webhook
sts down | apply e2e-ok
check "webhook stopped: creation fails with the API server's error" "exit/stderr" \
  eval '((rc == 1)) && has "$err" "failed calling webhook \"validate.sts-guard.io\""'
sts sys no-liveness | apply kube-system
check "webhook stopped: kube-system is never affected" "exit" \
  eval '((rc == 0)) && stored sts kube-system sys'

echo
echo "$passed passed, $failed failed"
if ((failed > 0)); then
  cp_dump_logs 30
  exit 1
fi
