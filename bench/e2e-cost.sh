#!/usr/bin/env bash
# What sts-guard costs a real API server: p50/p90/p99 of StatefulSet creates
# through kube-apiserver (the control plane of the e2e tests, tests/e2e/lib.sh)
# in three phases, each COUNT creates of a compliant 3-container StatefulSet
# over one keep-alive connection (bench/e2e_creates.py):
#
#   1. no admission webhook or policy;
#   2. sts-guard registered as deployed (deploy/base/webhooks.yaml: the
#      mutating and the validating webhook, pointed at a local
#      `sts-guard serve` that watches Services through the same API server);
#   3. instead of sts-guard, an in-tree ValidatingAdmissionPolicy whose CEL
#      checks that every container has a livenessProbe and a readinessProbe
#      (the probe rules only; no Service check, no mutation).
#
# Also shows, from the API server's own metrics, how many Service GET/LIST
# requests reached it during phase 2 (sts-guard answers from its watch cache:
# the target is none per admission) and the webhook latency it measured.
#
#   bench/e2e-cost.sh [COUNT]     (default 300)
#
# Environment: CP_BIN_DIR (prebuilt kube-apiserver + etcd, else
# tests/e2e/build-control-plane.sh builds or reuses them), STS_GUARD_BIN.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
# shellcheck source=../tests/e2e/lib.sh disable=SC1091
. "$repo/tests/e2e/lib.sh"
count="${1:-300}"

work="$(mktemp -d "${TMPDIR:-/tmp}/sts-guard-e2e-cost.XXXXXX")"
webhook_pid=""
cleanup() {
  [[ -n "$webhook_pid" ]] && kill -TERM "$webhook_pid" 2>/dev/null && wait "$webhook_pid" 2>/dev/null
  cp_stop
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z "${STS_GUARD_BIN:-}" ]]; then
  (cd "$repo" && cargo build --release --quiet --bin sts-guard) || exit 1
  STS_GUARD_BIN="$repo/target/release/sts-guard"
fi
if [[ -z "${CP_BIN_DIR:-}" ]]; then
  CP_BIN_DIR="$("$repo/tests/e2e/build-control-plane.sh" | tail -n 1)" || exit 1
fi
export CP_BIN_DIR

cp_start "$work/cp" || exit 1
api() { python3 "$here/e2e_creates.py" "$@"; }
creds=("$CP_APISERVER_URL" "$CP_CA_CERT" "$CP_ADMIN_CERT" "$CP_ADMIN_KEY")
metric() { api --metric "${creds[@]}" "$@"; }
ns=bench

kubectl create namespace "$ns" >/dev/null
# The headless Service the StatefulSets name (the fixture, in namespace bench).
sed 's/namespace: shop/namespace: bench/' "$repo/tests/fixtures/admission/services.yaml" |
  kubectl apply -f - >/dev/null || exit 1

# A StatefulSet sts-guard and the policy both deny (no probes).
bad="$work/bad.yaml"
cat >"$bad" <<'EOF'
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: probe-check}
spec:
  serviceName: web
  selector: {matchLabels: {app.kubernetes.io/name: web}}
  template:
    metadata: {labels: {app.kubernetes.io/name: web}}
    spec: {containers: [{name: app, image: busybox}]}
EOF
denied() { ! kubectl create --dry-run=server -n "$ns" -f "$bad" >/dev/null 2>&1; }
allowed() { kubectl create --dry-run=server -n "$ns" -f "$bad" >/dev/null 2>&1; }

results=()
phase() { # <name> <prefix>
  local out
  out="$(api "${creds[@]}" "$ns" "$2" "$count")" || { echo "phase $1 failed" >&2; exit 1; }
  results+=("$1|$out")
  echo "# $1: $out" >&2
}

# ---- 1. nothing registered ---------------------------------------------------
phase "no admission webhook" none

# ---- 2. sts-guard ------------------------------------------------------------
port="$(free_port)"
metrics_port="$(free_port)"
"$STS_GUARD_BIN" certs --out "$work/certs" --dns localhost --ip 127.0.0.1 >/dev/null 2>&1 || exit 1
"$STS_GUARD_BIN" serve --listen "127.0.0.1:$port" --metrics-listen "127.0.0.1:$metrics_port" \
  --cert "$work/certs/tls.crt" --key "$work/certs/tls.key" --shutdown-delay 0s \
  >"$CP_WORKDIR/logs/sts-guard.log" 2>&1 &
webhook_pid=$!
wait_for 30 curl -fsS --cacert "$work/certs/ca.crt" "https://127.0.0.1:$port/readyz" -o /dev/null || exit 1
webhooks_from_deploy "https://127.0.0.1:$port" "$work/certs/ca.crt" >"$work/webhooks.json" || exit 1
kubectl apply -f "$work/webhooks.json" >/dev/null || exit 1
wait_for 30 denied || { echo "sts-guard webhook never became active" >&2; exit 1; }

svc_calls() { # Service GETs and LISTs the API server has served so far
  echo $(($(metric apiserver_request_total resource=services verb=GET) + $(metric apiserver_request_total resource=services verb=LIST)))
}
svc_before="$(svc_calls)"
hook_stats() { # <webhook name>: "count sum" of the API server's latency histogram
  echo "$(metric apiserver_admission_webhook_admission_duration_seconds_count "name=$1") $(metric apiserver_admission_webhook_admission_duration_seconds_sum "name=$1")"
}
read -r v_count0 v_sum0 <<<"$(hook_stats validate.sts-guard.io)"
read -r m_count0 m_sum0 <<<"$(hook_stats mutate.sts-guard.io)"
phase "sts-guard (mutating + validating webhook)" guard
svc_after="$(svc_calls)"
read -r v_count1 v_sum1 <<<"$(hook_stats validate.sts-guard.io)"
read -r m_count1 m_sum1 <<<"$(hook_stats mutate.sts-guard.io)"
lookups="$(curl -fsS "http://127.0.0.1:$metrics_port/metrics" | awk '/^sts_guard_service_lookups_total/ {print $0}' | tr '\n' ' ')"
kubectl delete -f "$work/webhooks.json" >/dev/null || exit 1
wait_for 30 allowed || { echo "sts-guard webhook never went away" >&2; exit 1; }

# ---- 3. ValidatingAdmissionPolicy --------------------------------------------
kubectl apply -f - >/dev/null <<'EOF' || exit 1
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: sts-probes}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
      - apiGroups: ["apps"]
        apiVersions: ["v1"]
        operations: ["CREATE", "UPDATE"]
        resources: ["statefulsets"]
  validations:
    - expression: >-
        object.spec.template.spec.containers.all(c,
          has(c.livenessProbe) && has(c.readinessProbe))
      message: every container needs a livenessProbe and a readinessProbe
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: sts-probes}
spec:
  policyName: sts-probes
  validationActions: [Deny]
EOF
wait_for 30 denied || { echo "ValidatingAdmissionPolicy never became active" >&2; exit 1; }
phase "ValidatingAdmissionPolicy (CEL, probes only)" vap

# ---- report ------------------------------------------------------------------
echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) × $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), load average $(cut -d' ' -f1-3 /proc/loadavg); $count creates per phase (after 20 unmeasured), one keep-alive connection; kube-apiserver $("$CP_BIN_DIR/kube-apiserver" --version 2>/dev/null | awk '{print $2}')"
echo
echo "| phase | p50 ms | p90 ms | p99 ms | mean ms |"
echo "|---|---:|---:|---:|---:|"
for r in "${results[@]}"; do
  name="${r%%|*}"
  python3 -c 'import json, sys
d = json.loads(sys.argv[2])
print("| %s | %.2f | %.2f | %.2f | %.2f |" % (sys.argv[1], d["p50"], d["p90"], d["p99"], d["mean"]))' "$name" "${r#*|}"
done
echo
calls=$((v_count1 - v_count0))
echo "- Service GET+LIST requests served by the API server during the sts-guard phase: $((svc_after - svc_before)) (for $calls validating-webhook calls)"
echo "- sts-guard's own lookup counters: ${lookups:-none}"
python3 -c 'import sys
for name, c0, s0, c1, s1 in [sys.argv[1:6], sys.argv[6:11]]:
    n = int(c1) - int(c0)
    if n:
        print("- %s latency as the API server measured it (apiserver_admission_webhook_admission_duration_seconds): mean %.2f ms over %d calls" % (name, (float(s1) - float(s0)) / n * 1e3, n))
' validate.sts-guard.io "$v_count0" "$v_sum0" "$v_count1" "$v_sum1" mutate.sts-guard.io "$m_count0" "$m_sum0" "$m_count1" "$m_sum1"
