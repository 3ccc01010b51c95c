#!/usr/bin/env bash
# Builds the helm CLI for the e2e tests from the Go module proxy, using the
# wrapper module in tests/e2e/helm (the version is whatever its go.mod pins:
# `require helm.sh/helm/v3 vX.Y.Z`).
#
# Output: ${STS_GUARD_E2E_CACHE:-$HOME/.cache/sts-guard-e2e}/helm-<version>/
#         holding `helm`. Its path is the LAST line on stdout; progress and
#         compiler output go to stderr.
# When the binary is already there, nothing is built (warm run).
# A cold build takes a few minutes on 2 cores.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v go >/dev/null 2>&1 || PATH="/usr/local/go/bin:$PATH"

log() { echo "build-helm: $*" >&2; }

# Pinned versions, read straight from the committed go.mod (no go
# invocation, so the warm path stays instant).
require_version() { # <go.mod> <module>
  awk -v m="$2" '{ for (i = 1; i < NF; i++) if ($i == m && $(i + 1) ~ /^v/) { print $(i + 1); exit } }' "$1"
}
helm_version="$(require_version "$here/helm/go.mod" helm.sh/helm/v3)"
client_go_version="$(require_version "$here/helm/go.mod" k8s.io/client-go)"
[[ -n "$helm_version" && -n "$client_go_version" ]] \
  || { log "cannot read pinned versions from $here/helm/go.mod"; exit 1; }

cache_root="${STS_GUARD_E2E_CACHE:-$HOME/.cache/sts-guard-e2e}"
bin_dir="$cache_root/helm-$helm_version"

if [[ -x "$bin_dir/helm" ]]; then
  log "using cached $bin_dir"
  echo "$bin_dir"
  exit 0
fi

mkdir -p "$bin_dir"
# Two test runs started together must not both build: the second waits for
# the first and then finds the binary.
exec 9>"$bin_dir/.build.lock"
flock 9
if [[ -x "$bin_dir/helm" ]]; then
  log "built meanwhile by another process: $bin_dir"
  echo "$bin_dir"
  exit 0
fi

# A temp output in the same directory, renamed into place (atomic, same file
# system) only once complete, so an interrupted build never leaves a binary
# that looks usable. Leftovers of killed builds go first (we hold the lock).
rm -f "$bin_dir"/.*.tmp.*
tmp_helm="$bin_dir/.helm.tmp.$$"
trap 'rm -f "$tmp_helm"' EXIT

# `go build` in its own process group (setsid) in the background, so that a
# signal to this script stops the whole compile instead of orphaning it.
build_pgid=""
on_signal() {
  [[ -n "$build_pgid" ]] && kill -TERM -- "-$build_pgid" 2>/dev/null
  exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

export CGO_ENABLED=0
# readonly: build exactly the committed go.mod/go.sum, never rewrite them.
# buildvcs=false: the wrapper lives in this repo; no git stamping wanted.
export GOFLAGS="-mod=readonly -buildvcs=false"

# Stamp what helm's Makefile stamps: its own version (else `helm version`
# says v3.22 with "unreleased"), and the Kubernetes version of its client-go
# (client-go v0.Y.Z <-> Kubernetes 1.Y), which `helm template` and
# `helm lint` use for .Capabilities.KubeVersion (else a 1.20 default).
k8s_minor="${client_go_version#v0.}"
k8s_minor="${k8s_minor%%.*}"
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
ldflags+=" -X helm.sh/helm/v3/internal/version.metadata="
ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done

log "building helm $helm_version (a cold build takes a few minutes)"
start=$SECONDS
(cd "$here/helm" && exec setsid go build -trimpath -ldflags="$ldflags" -o "$tmp_helm" \
  helm.sh/helm/v3/cmd/helm) &
build_pgid=$!
wait "$build_pgid"
build_pgid=""
mv -f "$tmp_helm" "$bin_dir/helm"
log "helm built in $((SECONDS - start))s"

[[ -x "$bin_dir/helm" ]] || { log "build finished but $bin_dir/helm is missing"; exit 1; }
log "done: $bin_dir"
echo "$bin_dir"
