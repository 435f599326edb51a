#!/usr/bin/env bash
# The determinism matrix: the tool built for several instruction-set levels (MARCH_LEVELS, default
# "x86-64-v2 x86-64-v3 native"), each run with 1, 2 and 4 OpenMP threads
#   - on every reference case (tokenprune check: each must match the reference answer), and
#   - on inputs beyond the reference cases (other budgets and parameters on the bundled features and maps),
#     whose selections must be identical across every build and thread count.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
levels="${MARCH_LEVELS:-x86-64-v2 x86-64-v3 native}"
jobs="${JOBS:-2}"
cases="$repo/tests/data/reference"
[[ -d "$repo/../shared/fixtures/reference" ]] && cases="$repo/../shared/fixtures/reference"
data="$repo/tests/data/reference"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Selections beyond the reference answers: name | tool arguments.
extra=(
  "flat_tau0.4|--method gprune --keep 40 --threshold 0.4 --temperature 0.05 --features $data/gprune_flat_144x64_image_dup_k14/features.npy"
  "flat_it9|--method gprune --keep 100 --iterations 9 --features $data/gprune_flat_144x64_clustered_k14/features.npy"
  "rank_given|--method fopru-rank --axis given --keep 20 --attention $data/fopru_rank_logits_h4_n64_k16/attention.npy"
  "row_received|--method fopru-row --axis received --grid 8x8 --keep 30 --attention $data/fopru_row_probs_h4_n64_k32/attention.npy"
)

shared="$repo/../shared/fixtures/reference"
if [[ -d "$shared" ]]; then  # larger inputs, when the shared fixtures are there
  extra+=("next_r0.37|--method gprune --layout llava-next --grid 24x48 --ratio 0.37 --features $shared/gprune_next_24x48_r0.5/features.npy"
          "flat_576x1024|--method gprune --keep 200 --features $shared/gprune_flat_576x1024_image_k57/features.npy")
fi

for level in $levels; do
  build="$repo/build/march-$level"
  cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS="-march=$level" \
    -DTOKENPRUNE_BUILD_TESTS=OFF -DTOKENPRUNE_BUILD_EXAMPLES=OFF -DTOKENPRUNE_BUILD_BENCHMARKS=OFF > /dev/null
  cmake --build "$build" -j "$jobs" --target tokenprune_cli > /dev/null
  for threads in 1 2 4; do
    summary="$(OMP_NUM_THREADS=$threads "$build/tokenprune" check "$cases" | tail -n 1)"
    echo "march=$level threads=$threads: $summary"
    [[ "$summary" == *", 0 failed" ]] || { echo "determinism.sh: reference mismatch" >&2; exit 1; }
    for entry in "${extra[@]}"; do
      name="${entry%%|*}"
      # shellcheck disable=SC2086
      OMP_NUM_THREADS=$threads "$build/tokenprune" prune ${entry#*|} --out "$work/$name-$level-$threads.npy" > /dev/null
    done
  done
done

differ=0
for entry in "${extra[@]}"; do
  name="${entry%%|*}"
  first=""
  for file in "$work/$name"-*.npy; do
    if [[ -z "$first" ]]; then first="$file"; elif ! cmp -s "$first" "$file"; then
      echo "determinism.sh: $name differs: $(basename "$first") vs $(basename "$file")" >&2
      differ=1
    fi
  done
  echo "$name: identical across $(ls "$work/$name"-*.npy | wc -l) builds x thread counts"
done
exit $differ
