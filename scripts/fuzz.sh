#!/usr/bin/env bash
# Builds the libFuzzer targets in fuzz/ with clang (AddressSanitizer + UndefinedBehaviorSanitizer) and runs each
# for FUZZ_SECONDS (default 60) on a scratch copy of its seed corpus (fuzz/corpus/<target>, left untouched).
# A crash, a sanitizer report, a timeout (10 s per input) or a leak fails the script; the failing input is kept
# in build/fuzz/. Prints one line per target: executions, corpus size. FUZZ_SEED (default 1) fixes libFuzzer's
# random choices, so a CI run explores the same inputs each time and a failure reproduces; set another seed, or
# FUZZ_SEED=0 for a time-based one, to explore further by hand.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${FUZZ_SECONDS:-60}"
seed="${FUZZ_SEED:-1}"
out="${FUZZ_BUILD:-$repo/build/fuzz}"
clang="$(command -v clang++-14 || command -v clang++ || true)"
[[ -n "$clang" ]] || { echo "fuzz.sh: clang++ not found (scripts/setup.sh installs it)" >&2; exit 2; }
mkdir -p "$out"
for target in ${FUZZ_TARGETS:-npy gprune fopru}; do
  "$clang" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
    -I"$repo/include" -I/usr/include/eigen3 "$repo/fuzz/fuzz_$target.cpp" -o "$out/fuzz_$target"
  corpus="$(mktemp -d)"
  cp -r "$repo/fuzz/corpus/$target/." "$corpus/"
  if ! "$out/fuzz_$target" -seed="$seed" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$out/$target-" "$corpus" > "$out/$target.log" 2>&1; then
    tail -n 40 "$out/$target.log"
    echo "fuzz.sh: fuzz_$target FAILED; input kept under $out/$target-*" >&2
    rm -rf "$corpus"
    exit 1
  fi
  executions="$(awk '/stat::number_of_executed_units/ {print $2}' "$out/$target.log")"
  echo "fuzz_$target: $executions executions in ${seconds} s, corpus $(ls "$corpus" | wc -l) inputs, no failure"
  rm -rf "$corpus"
done
