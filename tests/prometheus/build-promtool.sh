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
# shellcheck source=../e2e/go-tool.sh
. "$here/../e2e/go-tool.sh"

log() { echo "build-promtool: $*" >&2; }

module_version="$(require_version "$here/promtool/go.mod" github.com/prometheus/prometheus)"
[[ -n "$module_version" ]] \
  || { log "cannot read the pinned version from $here/promtool/go.mod"; exit 1; }
# v0.316.0 -> 3.16.0: what `promtool --version` should say.
[[ "$module_version" =~ ^v0\.3([0-9]+)\.([0-9]+)$ ]] \
  || { log "unexpected module version $module_version (want v0.3YY.Z)"; exit 1; }
release="3.$((10#${BASH_REMATCH[1]})).${BASH_REMATCH[2]}"

cache_root="${STS_GUARD_E2E_CACHE:-$HOME/.cache/sts-guard-e2e}"
bin_dir="$cache_root/promtool-$module_version"

# Stamp what Prometheus' Makefile (promu) stamps, else `promtool --version`
# says nothing useful.
ldflags="-s -w -X github.com/prometheus/common/version.Version=$release"
ldflags+=" -X github.com/prometheus/common/version.Branch=release"

build_go_tool promtool "$here/promtool" github.com/prometheus/prometheus/cmd/promtool \
  "$bin_dir" "$ldflags"
