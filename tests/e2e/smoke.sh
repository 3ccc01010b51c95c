#!/usr/bin/env bash
# Smoke test of the e2e harness itself (no sts-guard involved): builds or
# reuses the control plane, starts it, and checks that StatefulSets are
# stored, defaulted and dry-run like on a real cluster.
#
# Usage: tests/e2e/smoke.sh
#   STS_GUARD_E2E_KEEP=1  keep the work dir (printed) for inspection
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=lib.sh
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
# (kubectl prints several applied objects as one List.)
dry="$(manifest web2 | kubectl apply --dry-run=server -f - \
  -o jsonpath='{range .items[*]}{.kind}/{.metadata.name}={.spec.podManagementPolicy};{end}')"
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

# An admission webhook on loopback, wired the way the sts-guard tests wire
# theirs: serving cert from cp_issue_serving_cert, registered by URL +
# caBundle, started with cp_spawn. The stub denies StatefulSets named
# deny-* (echoing the request's dryRun flag) and warns on the others.
if command -v python3 >/dev/null 2>&1; then
  cp_issue_serving_cert "$CP_WORKDIR/stub" 127.0.0.1 localhost
  stub_port="$(free_port)"
  cp_spawn stub-webhook python3 "$here/stub_webhook.py" "$stub_port" \
    "$CP_WORKDIR/stub/tls.crt" "$CP_WORKDIR/stub/tls.key"
  kubectl apply -f - >/dev/null <<EOF
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: smoke-stub
webhooks:
- name: validate.smoke.example
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 5
  clientConfig:
    url: https://127.0.0.1:$stub_port/validate
    caBundle: $(base64 -w0 <"$CP_WORKDIR/stub/ca.crt")
  namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: smoke
  rules:
  - apiGroups: [apps]
    apiVersions: [v1]
    operations: [CREATE, UPDATE]
    resources: [statefulsets]
EOF
  manifest deny-me >"$CP_WORKDIR/deny-me.yaml"
  # The apiserver loads a new webhook configuration asynchronously, and the
  # stub may still be starting: poll until the denial comes back.
  denied_by_stub() {
    local out
    out="$(kubectl apply --dry-run=server -f "$CP_WORKDIR/deny-me.yaml" 2>&1)"
    [[ "$out" == *"stub denied"* ]]
  }
  wait_for 20 denied_by_stub || fail "the stub webhook was never called"
  out="$(kubectl apply --dry-run=server -f "$CP_WORKDIR/deny-me.yaml" 2>&1)" && fail "deny-me admitted: $out"
  want='admission webhook "validate.smoke.example" denied the request: stub denied deny-me dryRun=True'
  [[ "$out" == *"$want"* ]] || fail "denial on dry-run: $out"
  ok "webhook on loopback called, its denial shown, dryRun=true sent"

  out="$(manifest web3 | kubectl apply -f - 2>&1)" || fail "apply web3: $out"
  [[ "$out" == *"Warning: stub: looked at web3"* ]] || fail "no webhook warning in: $out"
  ok "webhook warning shown by kubectl"
else
  echo "smoke: python3 missing, webhook round trip skipped" >&2
fi

echo "smoke: $passed passed, 0 failed"
