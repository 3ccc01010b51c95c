#!/usr/bin/env bash
# Builds kube-apiserver and etcd for the e2e tests from the Go module proxy,
# using the wrapper modules in tests/e2e/apiserver and tests/e2e/etcd
# (versions are whatever their go.mod pins; change them with gen-gomod.sh).
#
# Output: ${STS_GUARD_E2E_CACHE:-$HOME/.cache/sts-guard-e2e}/<k8s>-<etcd>/
#         holding `kube-apiserver` and `etcd`. Its path is the LAST line on
#         stdout; progress and compiler output go to stderr.
# When both binaries are already there, nothing is built (warm run).
# A cold build takes many minutes on 2 cores (kube-apiserver is large); the
# Go build cache (~/.cache/go-build) makes a rebuild after a version bump of
# one component much cheaper.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v go >/dev/null 2>&1 || PATH="/usr/local/go/bin:$PATH"

log() { echo "build-control-plane: $*" >&2; }

# The pinned versions, read straight from the committed go.mod files (no go
# invocation, so the warm path stays instant).
require_version() { # <go.mod> <module>
  awk -v m="$2" '{ for (i = 1; i < NF; i++) if ($i == m && $(i + 1) ~ /^v/) { print $(i + 1); exit } }' "$1"
}
k8s_version="$(require_version "$here/apiserver/go.mod" k8s.io/kubernetes)"
etcd_version="$(require_version "$here/etcd/go.mod" go.etcd.io/etcd/server/v3)"
[[ -n "$k8s_version" && -n "$etcd_version" ]] || { log "cannot read pinned versions from go.mod"; exit 1; }

cache_root="${STS_GUARD_E2E_CACHE:-$HOME/.cache/sts-guard-e2e}"
bin_dir="$cache_root/$k8s_version-$etcd_version"

have_all() { [[ -x "$bin_dir/kube-apiserver" && -x "$bin_dir/etcd" ]]; }

if have_all; then
  log "using cached $bin_dir"
  echo "$bin_dir"
  exit 0
fi

mkdir -p "$bin_dir"
# Two test scripts started together must not both build: the second waits
# for the first and then finds the binaries.
exec 9>"$bin_dir/.build.lock"
flock 9
if have_all; then
  log "built meanwhile by another process: $bin_dir"
  echo "$bin_dir"
  exit 0
fi

# Temp outputs in the same directory, each renamed into place (atomic, same
# file system) only once complete, so an interrupted build never leaves a
# binary that looks usable.
# Leftovers of killed builds (we hold the lock, so none is running here).
rm -f "$bin_dir"/.*.tmp.*
tmp_api="$bin_dir/.kube-apiserver.tmp.$$"
tmp_etcd="$bin_dir/.etcd.tmp.$$"
trap 'rm -f "$tmp_api" "$tmp_etcd"' EXIT

# `go build` runs in its own process group (setsid) in the background, so
# that a signal to this script can stop the whole compile instead of leaving
# it running orphaned (bash would otherwise wait for it before the trap).
build_pgid=""
on_signal() {
  [[ -n "$build_pgid" ]] && kill -TERM -- "-$build_pgid" 2>/dev/null
  exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP
go_build() { # <module dir> <go build args...>
  local dir="$1"
  shift
  (cd "$dir" && exec setsid go build "$@") &
  build_pgid=$!
  local rc=0
  wait "$build_pgid" || rc=$?
  build_pgid=""
  return "$rc"
}

export CGO_ENABLED=0
# readonly: build exactly the committed go.mod/go.sum, never rewrite them.
# buildvcs=false: the wrapper lives in this repo; no git stamping wanted.
export GOFLAGS="-mod=readonly -buildvcs=false"

if [[ ! -x "$bin_dir/kube-apiserver" ]]; then
  # Stamp the version like the upstream build does (hack/lib/version.sh), so
  # /version and `kubectl version` report the real release, not v0.0.0.
  minor="${k8s_version#v1.}"
  minor="${minor%%.*}"
  ver_ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ver_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ver_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "building kube-apiserver $k8s_version (cold build takes many minutes)"
  start=$SECONDS
  go_build "$here/apiserver" -trimpath -ldflags="-s -w$ver_ldflags" -o "$tmp_api" \
    k8s.io/kubernetes/cmd/kube-apiserver
  mv -f "$tmp_api" "$bin_dir/kube-apiserver"
  log "kube-apiserver built in $((SECONDS - start))s"
fi

if [[ ! -x "$bin_dir/etcd" ]]; then
  log "building etcd $etcd_version"
  start=$SECONDS
  go_build "$here/etcd" -trimpath -ldflags="-s -w" -o "$tmp_etcd" go.etcd.io/etcd/server/v3
  mv -f "$tmp_etcd" "$bin_dir/etcd"
  log "etcd built in $((SECONDS - start))s"
fi

have_all || { log "build finished but binaries are missing in $bin_dir"; exit 1; }
log "done: $bin_dir"
echo "$bin_dir"
