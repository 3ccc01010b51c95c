#!/usr/bin/env bash
# Smoke test of the e2e harness itself (no sts-guard involved): builds or
# reuses the control plane, starts it, and checks that StatefulSets are
# stored, defaulted and dry-run like on a real cluster.
#
# Usage: tests/e2e/smoke.sh
#   STS_GUARD_E2E_KEEP=1  keep the work dir (printed) for inspection
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=tests/e2e/lib.sh
. "$here/lib.sh"

passed=0
ok() {
  passed=$((passed + 1))
  echo "ok $passed - $*"
}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}

CP_BIN_DIR="$("$here/build-control-plane.sh" | tail -n 1)"
export CP_BIN_DIR

work="$(mktemp -d "${TMPDIR:-/tmp}/sts-guard-smoke.XXXXXX")"
cleanup() {
  local rc=$?
  if ((rc != 0)); then
    cp_dump_logs 40
    echo "smoke: $passed passed, 1 failed"
  fi
  cp_stop
  if [[ -n "${STS_GUARD_E2E_KEEP:-}" ]]; then
    echo "smoke: work dir kept: $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start=$SECONDS
cp_start "$work"
ok "control plane ready in $((SECONDS - start))s at $CP_APISERVER_URL"

server_version="$(kubectl get --raw /version | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p')"
[[ "$server_version" == v1.* ]] || fail "unexpected server version '$server_version'"
ok "server reports $server_version"

kubectl create namespace smoke >/dev/null
ok "namespace created"

# A StatefulSet as the rules want it: headless Service, both probes.
# podManagementPolicy is left out on purpose: the server must default it.
manifest() { # <name>
  cat <<EOF
apiVersion: v1
kind: Service
metadata:
  name: $1
  namespace: smoke
spec:
  clusterIP: None
  selector:
    app: $1
  ports:
  - name: http
    port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: $1
  namespace: smoke
spec:
  serviceName: $1
  replicas: 2
  selector:
    matchLabels:
      app: $1
  template:
    metadata:
      labels:
        app: $1
    spec:
      containers:
      - name: web
        image: registry.k8s.io/nginx-slim:0.27
        ports:
        - name: http
          containerPort: 80
        livenessProbe:
          httpGet:
            path: /
            port: http
        readinessProbe:
          httpGet:
            path: /
            port: http
EOF
}

manifest web | kubectl apply -f - >/dev/null
ok "service and statefulset applied"

policy="$(kubectl get sts -n smoke web -o jsonpath='{.spec.podManagementPolicy}')"
[[ "$policy" == OrderedReady ]] || fail "podManagementPolicy is '$policy', want OrderedReady"
ok "podManagementPolicy defaulted to OrderedReady"

# Server-side dry run: admitted and defaulted by the server, never stored.
dry="$(manifest web2 | kubectl apply --dry-run=server -f - \
  -o jsonpath='{.kind}/{.metadata.name}={.spec.podManagementPolicy};')"
[[ "$dry" == *"StatefulSet/web2=OrderedReady;"* ]] || fail "dry-run output: '$dry'"
ok "dry-run=server accepted and defaulted web2"

stored="$(kubectl get sts,svc -n smoke -o name | sort | tr '\n' ' ')"
[[ "$stored" == "service/web statefulset.apps/web " ]] ||
  fail "after dry-run, stored objects are '$stored'"
ok "dry-run stored nothing"

# No controller-manager: nothing else should have appeared in the namespace.
pods="$(kubectl get pods -n smoke -o name)"
[[ -z "$pods" ]] || fail "unexpected pods: $pods"
ok "no pods (no controllers run)"

echo "smoke: $passed passed, 0 failed"
