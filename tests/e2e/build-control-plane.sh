#!/usr/bin/env bash
# Builds the control plane for the e2e tests from the Go module proxy:
# kube-apiserver, kube-controller-manager and kube-scheduler (the wrapper
# module tests/e2e/kubernetes) and etcd (tests/e2e/etcd); versions are
# whatever their go.mod pins (change them with gen-gomod.sh). kwok, the
# simulated nodes, is build-kwok.sh's.
#
# Output: ${STS_GUARD_E2E_CACHE:-$HOME/.cache/sts-guard-e2e}/<k8s>-<etcd>/
#         holding the four binaries. Its path is the LAST line on stdout;
#         progress and compiler output go to stderr.
# When all four are already there, nothing is built (warm run); a cache
# made before the controller-manager and scheduler joined gets only those. The
# cached, locked, interrupt-safe `go build` is go-tool.sh's, shared with
# build-helm.sh and tests/prometheus/build-promtool.sh.
# A cold build takes many minutes on 2 cores (kube-apiserver is large); the
# Go build cache (~/.cache/go-build) makes a rebuild after a version bump of
# one component much cheaper.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=go-tool.sh
. "$here/go-tool.sh"

log() { echo "build-control-plane: $*" >&2; }

k8s_version="$(require_version "$here/kubernetes/go.mod" k8s.io/kubernetes)"
etcd_version="$(require_version "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)"
[[ -n "$k8s_version" && -n "$etcd_version" ]] || { log "cannot read pinned versions from go.mod"; exit 1; }

cache_root="${STS_GUARD_E2E_CACHE:-$HOME/.cache/sts-guard-e2e}"
bin_dir="$cache_root/$k8s_version-$etcd_version"

# All there: one line, the directory (the usual, instant case).
tools=(kube-apiserver kube-controller-manager kube-scheduler)
all_built() {
  local t
  for t in etcd "${tools[@]}"; do [[ -x "$bin_dir/$t" ]] || return 1; done
}
if all_built; then
  log "using cached $bin_dir"
  echo "$bin_dir"
  exit 0
fi

# Stamp the version like the upstream build does (hack/lib/version.sh), so
# /version and `kubectl version` report the real release, not v0.0.0.
minor="${k8s_version#v1.}"
minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done
# Each builds only what is missing; the last line on stdout is the directory.
for t in "${tools[@]}"; do
  build_go_tool "$t" "$here/kubernetes" "k8s.io/kubernetes/cmd/$t" "$bin_dir" "$ldflags" >/dev/null
done
build_go_tool etcd "$here/etcd" go.etcd.io/etcd/server/v3 "$bin_dir" "-s -w"
