#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz / libFuzzer) of the webhook's review
# entry points and of the policy-file parser.
#
#   fuzz/run.sh [SECONDS]
#
# SECONDS is the total fuzzing time, split evenly over the targets (default
# 600: 200 s each for review_bytes, review_structured, policy_yaml). Set
# FUZZ_TARGETS="review_bytes" to run a subset.
#
# Installs cargo-fuzz into ~/.cache/sts-guard-fuzz if it is missing (outside
# the repository). Works on stable Rust: RUSTC_BOOTSTRAP=1 lets rustc accept
# the -Z flags cargo fuzz passes. Built without a sanitizer (the code under
# test is safe Rust; libFuzzer still catches panics, stack overflows, inputs
# slower than 10 s and memory above 2 GiB). The first build takes ~8 minutes.
#
# Exits non-zero if any target found a crash; the input is kept in
# fuzz/artifacts/TARGET/ (reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run
# --sanitizer none TARGET FILE; minimize: cargo fuzz tmin ...). New
# coverage-increasing inputs accumulate in fuzz/corpus/TARGET (ignored by git).
set -euo pipefail
cd "$(dirname "$0")"

TOTAL=${1:-600}
TOOLS=${STS_GUARD_FUZZ_HOME:-$HOME/.cache/sts-guard-fuzz}
export PATH="$TOOLS/bin:$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1
read -r -a targets <<<"${FUZZ_TARGETS:-review_bytes review_structured policy_yaml}"
per=$((TOTAL / ${#targets[@]}))
((per > 0)) || { echo "fuzz/run.sh: SECONDS must be at least ${#targets[@]}" >&2; exit 2; }

if ! command -v cargo-fuzz >/dev/null; then
  echo "installing cargo-fuzz into $TOOLS"
  cargo install --locked --root "$TOOLS" cargo-fuzz@0.13.2
fi

declare -A extra=(
  [review_bytes]="-max_len=65536 -dict=dicts/review.dict"
  [review_structured]="-max_len=8192"
  [policy_yaml]="-max_len=8192 -dict=dicts/policy.dict"
)

mkdir -p logs
# Build once, then run the binaries themselves: `cargo fuzz run` would
# rebuild whenever a source file changed meanwhile.
cargo fuzz build --sanitizer none
bindir="target/x86_64-unknown-linux-gnu/release"

status=0
summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  extra_seeds=()
  [[ $t == policy_yaml ]] && extra_seeds=(../tests/fixtures/check/policy)
  echo "== $t: ${per}s"
  # shellcheck disable=SC2086
  if "$bindir/$t" -artifact_prefix="artifacts/$t/" \
      -max_total_time="$per" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      ${extra[$t]} "corpus/$t" "seeds/$t" "${extra_seeds[@]}" >"logs/$t.log" 2>&1; then
    result=ok
  else
    result=CRASH
    status=1
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "logs/$t.log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "logs/$t.log" | tail -1)
  summary+=("$(printf '%-18s %-6s %8ss %12s execs %8s/s  %s  corpus %s files' \
    "$t" "$result" "$per" "${execs:-?}" "${rate:-?}" "${cov:-cov: ?}" "$(ls "corpus/$t" | wc -l)")")
  if [[ $result == CRASH ]]; then
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "logs/$t.log" | head -20 >&2 || true
  fi
done

echo
echo "target             result  time        executions     rate"
printf '%s\n' "${summary[@]}"
exit $status
