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
# shellcheck source=go-tool.sh
. "$here/go-tool.sh"

log() { echo "build-helm: $*" >&2; }

helm_version="$(require_version "$here/helm/go.mod" helm.sh/helm/v3)"
client_go_version="$(require_version "$here/helm/go.mod" k8s.io/client-go)"
[[ -n "$helm_version" && -n "$client_go_version" ]] \
  || { log "cannot read pinned versions from $here/helm/go.mod"; exit 1; }

cache_root="${STS_GUARD_E2E_CACHE:-$HOME/.cache/sts-guard-e2e}"
bin_dir="$cache_root/helm-$helm_version"

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

build_go_tool helm "$here/helm" helm.sh/helm/v3/cmd/helm "$bin_dir" "$ldflags"
