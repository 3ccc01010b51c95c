# Sourced by build-control-plane.sh, build-helm.sh and
# tests/prometheus/build-promtool.sh: how a Go tool for the tests is built
# from the Go module proxy and cached, once.
#
#   require_version GO_MOD MODULE        the version GO_MOD requires
#   build_go_tool NAME MODULE_DIR PACKAGE BIN_DIR LDFLAGS
#       builds PACKAGE (in the wrapper module MODULE_DIR, exactly as its
#       committed go.mod/go.sum say) into BIN_DIR/NAME unless it is there,
#       then prints BIN_DIR as the last line on stdout. Progress goes to
#       stderr through the caller's `log`.

command -v go >/dev/null 2>&1 || PATH="/usr/local/go/bin:$PATH"

# Read straight from the committed go.mod (no go invocation, so the warm
# path stays instant).
require_version() { # <go.mod> <module>
  awk -v m="$2" '{ for (i = 1; i < NF; i++) if ($i == m && $(i + 1) ~ /^v/) { print $(i + 1); exit } }' "$1"
}

build_go_tool() { # <name> <module dir> <package> <bin dir> <ldflags>
  local name="$1" module_dir="$2" package="$3" bin_dir="$4" ldflags="$5"
  if [[ -x "$bin_dir/$name" ]]; then
    log "using cached $bin_dir"
    echo "$bin_dir"
    return 0
  fi
  mkdir -p "$bin_dir"
  # Two test runs started together must not both build: the second waits
  # for the first and then finds the binary.
  exec 9>"$bin_dir/.build.lock"
  flock 9
  if [[ -x "$bin_dir/$name" ]]; then
    log "built meanwhile by another process: $bin_dir"
    echo "$bin_dir"
    return 0
  fi

  # A temp output in the same directory, renamed into place (atomic, same
  # file system) only once complete, so an interrupted build never leaves a
  # binary that looks usable. Leftovers of killed builds go first (we hold
  # the lock).
  rm -f "$bin_dir"/.*.tmp.*
  tmp_bin="$bin_dir/.$name.tmp.$$"
  trap 'rm -f "$tmp_bin"' EXIT

  # `go build` in its own process group (setsid) in the background, so that
  # a signal to the script stops the whole compile instead of orphaning it.
  build_pgid=""
  on_signal() {
    [[ -n "$build_pgid" ]] && kill -TERM -- "-$build_pgid" 2>/dev/null
    exit "$1"
  }
  trap 'on_signal 130' INT
  trap 'on_signal 143' TERM
  trap 'on_signal 129' HUP

  # readonly: build exactly the committed go.mod/go.sum, never rewrite them.
  # buildvcs=false: the wrapper lives in this repo; no git stamping wanted.
  log "building $name (a cold build takes a few minutes)"
  local start=$SECONDS
  (cd "$module_dir" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false" \
    exec setsid go build -trimpath -ldflags="$ldflags" -o "$tmp_bin" "$package") &
  build_pgid=$!
  wait "$build_pgid"
  build_pgid=""
  mv -f "$tmp_bin" "$bin_dir/$name"
  log "$name built in $((SECONDS - start))s"

  [[ -x "$bin_dir/$name" ]] || { log "build finished but $bin_dir/$name is missing"; exit 1; }
  log "done: $bin_dir"
  echo "$bin_dir"
}
