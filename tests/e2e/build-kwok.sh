#!/usr/bin/env bash
# Builds kwok for the e2e tests from the Go module proxy, using the wrapper
# module in tests/e2e/kwok (the version is whatever its go.mod pins:
# `require sigs.k8s.io/kwok vX.Y.Z`). kwok plays the kubelet of fake nodes:
# it moves their pods through scheduled, running and ready without running
# any container (tests/support/control_plane.rs gives it its stages).
#
# Output: ${STS_GUARD_E2E_CACHE:-$HOME/.cache/sts-guard-e2e}/kwok-<version>/
#         holding `kwok`. Its path is the LAST line on stdout; progress and
#         compiler output go to stderr.
# When the binary is already there, nothing is built (warm run).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=go-tool.sh
. "$here/go-tool.sh"

log() { echo "build-kwok: $*" >&2; }

kwok_version="$(require_version "$here/kwok/go.mod" sigs.k8s.io/kwok)"
[[ -n "$kwok_version" ]] || { log "cannot read the pinned version from $here/kwok/go.mod"; exit 1; }

cache_root="${STS_GUARD_E2E_CACHE:-$HOME/.cache/sts-guard-e2e}"
bin_dir="$cache_root/kwok-$kwok_version"

# (kwok's version is a constant in its source: nothing to stamp.)
build_go_tool kwok "$here/kwok" sigs.k8s.io/kwok/cmd/kwok "$bin_dir" "-s -w"
