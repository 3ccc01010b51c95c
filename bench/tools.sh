# shellcheck shell=bash
# The load generator of bench/run.sh and bench/soak.sh, pinned in one place.
# Sourced; sets OHA to oha 1.16.0, installed from crates.io into
# ${STS_GUARD_BENCH_CACHE:-~/.cache/sts-guard-bench} once, unless OHA is
# already set; makes sure python3 is there; and runs every process of the
# benchmark with the image's malloc setting (the Dockerfile's
# GLIBC_TUNABLES), unless GLIBC_TUNABLES is already set (set it empty to
# measure glibc's defaults).
bench_tools() {
  export GLIBC_TUNABLES="${GLIBC_TUNABLES-glibc.malloc.tcache_count=64}"
  local version=1.16.0 cache="${STS_GUARD_BENCH_CACHE:-$HOME/.cache/sts-guard-bench}"
  if [[ -z "${OHA:-}" ]]; then
    OHA="$cache/bin/oha"
    if ! "$OHA" --version 2>/dev/null | grep -qF "$version"; then
      echo "# installing oha $version into $cache (once)" >&2
      cargo install --locked --quiet --root "$cache" --version "$version" oha >&2
    fi
  fi
  command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3; }
}
