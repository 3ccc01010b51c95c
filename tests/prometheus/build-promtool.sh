#!/usr/bin/env bash
# Builds promtool for the alert rule tests from the Go module proxy, using the
# wrapper module in tests/prometheus/promtool (the version is whatever its
# go.mod pins: `require github.com/prometheus/prometheus v0.3YY.Z`, which is
# Prometheus 3.YY.Z).
#
# Output: ${STS_GUARD_E2E_CACHE:-$HOME/.cache/sts-guard-e2e}/promtool-<version>/
#         holding `promtool`. Its path is the LAST line on stdout; progress
#         and compiler output go to stderr.
# When the binary is already there, nothing is built (warm run).
# A cold build takes a few minutes on 2 cores.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
command -v go >/dev/null 2>&1 || PATH="/usr/local/go/bin:$PATH"

log() { echo "build-promtool: $*" >&2; }

# The pinned version, read straight from the committed go.mod (no go
# invocation, so the warm path stays instant).
require_version() { # <go.mod> <module>
  awk -v m="$2" '{ for (i = 1; i < NF; i++) if ($i == m && $(i + 1) ~ /^v/) { print $(i + 1); exit } }' "$1"
}
module_version="$(require_version "$here/promtool/go.mod" github.com/prometheus/prometheus)"
[[ -n "$module_version" ]] \
  || { log "cannot read the pinned version from $here/promtool/go.mod"; exit 1; }
# v0.316.0 -> 3.16.0: what `promtool --version` should say.
[[ "$module_version" =~ ^v0\.3([0-9]+)\.([0-9]+)$ ]] \
  || { log "unexpected module version $module_version (want v0.3YY.Z)"; exit 1; }
release="3.$((10#${BASH_REMATCH[1]})).${BASH_REMATCH[2]}"

cache_root="${STS_GUARD_E2E_CACHE:-$HOME/.cache/sts-guard-e2e}"
bin_dir="$cache_root/promtool-$module_version"

if [[ -x "$bin_dir/promtool" ]]; then
  log "using cached $bin_dir"
  echo "$bin_dir"
  exit 0
fi

mkdir -p "$bin_dir"
# Two test runs started together must not both build: the second waits for
# the first and then finds the binary.
exec 9>"$bin_dir/.build.lock"
flock 9
if [[ -x "$bin_dir/promtool" ]]; then
  log "built meanwhile by another process: $bin_dir"
  echo "$bin_dir"
  exit 0
fi

# A temp output in the same directory, renamed into place (atomic, same file
# system) only once complete, so an interrupted build never leaves a binary
# that looks usable. Leftovers of killed builds go first (we hold the lock).
rm -f "$bin_dir"/.*.tmp.*
tmp_bin="$bin_dir/.promtool.tmp.$$"
trap 'rm -f "$tmp_bin"' EXIT

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

# Stamp what Prometheus' Makefile (promu) stamps, else `promtool --version`
# says nothing useful.
ldflags="-s -w -X github.com/prometheus/common/version.Version=$release"
ldflags+=" -X github.com/prometheus/common/version.Branch=release"

log "building promtool $release ($module_version; a cold build takes a few minutes)"
start=$SECONDS
(cd "$here/promtool" && exec setsid go build -trimpath -ldflags="$ldflags" -o "$tmp_bin" \
  github.com/prometheus/prometheus/cmd/promtool) &
build_pgid=$!
wait "$build_pgid"
build_pgid=""
mv -f "$tmp_bin" "$bin_dir/promtool"
log "promtool built in $((SECONDS - start))s"

[[ -x "$bin_dir/promtool" ]] || { log "build finished but $bin_dir/promtool is missing"; exit 1; }
log "done: $bin_dir"
echo "$bin_dir"
