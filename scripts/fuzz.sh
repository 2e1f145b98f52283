#!/usr/bin/env bash
# Runs the cargo-fuzz targets one after another, each for FUZZ_SECONDS, and reports.
#
#   scripts/fuzz.sh                    every target, 600 s each
#   FUZZ_SECONDS=60 scripts/fuzz.sh lineproto influxql
#
# Each target starts from its seeds (fuzz/corpus/<target>) and its kept findings
# (fuzz/regressions/<target>); what it learns goes to fuzz/learned/<target>, never into the
# committed seeds. A crash, timeout or out-of-memory input is left in
# fuzz/artifacts/<target>/ and the script exits 1 once every target ran. The table at the
# end gives each target's executions per second (libFuzzer's final stats).
#
# Environment:
#   FUZZ_SECONDS    time per target (default 600)
#   FUZZ_SANITIZER  cargo fuzz's -s (default none: the workspace has no unsafe code, and
#                   AddressSanitizer costs 3-10x here; `address` checks the dependencies'
#                   unsafe code too, slowly)
#   FUZZ_ARGS       more libFuzzer flags, e.g. "-max_len=65536 -only_ascii=1"
# Needs the nightly toolchain; installs cargo-fuzz if it is missing.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${FUZZ_SECONDS:-600}"
sanitizer="${FUZZ_SANITIZER:-none}"
read -r -a extra <<<"${FUZZ_ARGS:-}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz.sh: the nightly toolchain is missing (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

cd "$root/fuzz"
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

# Each sanitizer builds into its own directory, so switching does not rebuild the other.
build=(-a -s "$sanitizer")
[ "$sanitizer" = address ] || build+=(--target-dir "target/$sanitizer")
# One build of every target first: the runs then only link-check.
# -a: debug assertions, so integer overflow panics as it does in `cargo test`.
cargo +nightly fuzz build "${build[@]}"

# No stack unwinding per allocation, no fake stacks, no leak check after each input: the
# targets are safe Rust (`unsafe_code = "deny"`), so these only cost throughput (together
# about a third of each run); a heap error would still be caught, without its allocation's
# stack.
export ASAN_OPTIONS="${ASAN_OPTIONS:-malloc_context_size=0:detect_stack_use_after_return=0:detect_leaks=0}"

status=0
declare -a rows
for target in "${targets[@]}"; do
  work="learned/$target"
  artifacts="artifacts/$target"
  mkdir -p "$work" "$artifacts"
  corpora=("$work" "corpus/$target")
  [ -d "regressions/$target" ] && corpora+=("regressions/$target")
  before=$(find "$artifacts" -type f | wc -l)
  log="learned/$target.log"
  echo "== $target: ${seconds}s"
  # -timeout: an input taking 10 s is a hang; -rss_limit_mb / -malloc_limit_mb: one input
  # must not take more than a small share of the machine.
  set +e
  cargo +nightly fuzz run "${build[@]}" "$target" "${corpora[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -print_final_stats=1 -artifact_prefix="$artifacts/" "${extra[@]}" >"$log" 2>&1
  code=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  after=$(find "$artifacts" -type f | wc -l)
  found=$((after - before))
  result=ok
  if [ "$code" -ne 0 ] || [ "$found" -gt 0 ]; then
    result="FOUND $found (see $log)"
    status=1
    grep -m3 -E 'panicked|ERROR: libFuzzer|SUMMARY' "$log" || true
  fi
  echo "   exec/s ${rate:-?}, ${execs:-?} runs, cov ${cov:-?}: $result"
  rows+=("$(printf '| %-22s | %8s | %12s | %6s | %s |' "$target" "${rate:-?}" "${execs:-?}" "${cov:-?}" "$result")")
done

echo
echo "Fuzzing summary: ${seconds}s per target, sanitizer $sanitizer"
printf '| %-22s | %8s | %12s | %6s | %s |\n' target exec/s runs cov result
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..24})" "$(printf -- '-%.0s' {1..10})" \
  "$(printf -- '-%.0s' {1..14})" "$(printf -- '-%.0s' {1..8})" "--------"
printf '%s\n' "${rows[@]}"
exit "$status"
