#!/usr/bin/env bash
# Builds kube-apiserver and etcd for the e2e tests from the Go module proxy,
# using the wrapper modules in tests/e2e/apiserver and tests/e2e/etcd
# (versions are whatever their go.mod pins; change them with gen-gomod.sh).
#
# Output: ${STS_GUARD_E2E_CACHE:-$HOME/.cache/sts-guard-e2e}/<k8s>-<etcd>/
#         holding `kube-apiserver` and `etcd`. Its path is the LAST line on
#         stdout; progress and compiler output go to stderr.
# When both binaries are already there, nothing is built (warm run). The
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

k8s_version="$(require_version "$here/apiserver/go.mod" k8s.io/kubernetes)"
etcd_version="$(require_version "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)"
[[ -n "$k8s_version" && -n "$etcd_version" ]] || { log "cannot read pinned versions from go.mod"; exit 1; }

cache_root="${STS_GUARD_E2E_CACHE:-$HOME/.cache/sts-guard-e2e}"
bin_dir="$cache_root/$k8s_version-$etcd_version"

# Both there: one line, the directory (the usual, instant case).
if [[ -x "$bin_dir/kube-apiserver" && -x "$bin_dir/etcd" ]]; then
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
build_go_tool kube-apiserver "$here/apiserver" k8s.io/kubernetes/cmd/kube-apiserver "$bin_dir" "$ldflags" >/dev/null
build_go_tool etcd "$here/etcd" go.etcd.io/etcd/server/v3 "$bin_dir" "-s -w"
