#!/usr/bin/env bash
# The determinism matrix: the tool built for several -march levels (MARCH_LEVELS, default
# "x86-64-v2 x86-64-v3 native"), each run with 1, 2 and 4 OpenMP threads (THREADS) at every kernel instruction-set
# level this CPU supports (TOKENPRUNE_ISA; default: the "supported" list of `tokenprune --version`, ISA_LEVELS
# overrides it)
#   - on every reference case of an implemented method, the bundled ones (tests/data/reference) and, when present,
#     ../shared/fixtures/reference (cases of methods not implemented yet are counted by check, not run):
#     tokenprune check, each must match the reference answer, and each case's per-token scores
#     (check --scores-dir) must be bitwise identical across every build x thread count x ISA level;
#   - on inputs beyond the reference cases (other budgets and parameters on the bundled features and maps, and
#     larger shared inputs), whose kept indices (--out) and scores (--scores-out) must be bitwise identical across
#     every build x thread count x ISA level.
# Selections are run once each (--repeat 1): this is about answers, not timings.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
levels="${MARCH_LEVELS:-x86-64-v2 x86-64-v3 native}"
thread_counts="${THREADS:-1 2 4}"
jobs="${JOBS:-2}"
data="$repo/tests/data/reference"
shared="$repo/../shared/fixtures/reference"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# Reference case folders: name | folder (checked in separate runs, so that equal case names cannot collide).
case_sets=("bundled|$data")
[[ -d "$shared" ]] && case_sets+=("shared|$shared")

# Selections beyond the reference answers: name | tool arguments.
extra=(
  "flat_tau0.4|--method gprune --keep 40 --threshold 0.4 --temperature 0.05 --features $data/gprune_flat_144x64_image_dup_k14/features.npy"
  "flat_it9|--method gprune --keep 100 --iterations 9 --features $data/gprune_flat_144x64_clustered_k14/features.npy"
  "rank_given|--method fopru-rank --axis given --keep 20 --attention $data/fopru_rank_logits_h4_n64_k16/attention.npy"
  "row_received|--method fopru-row --axis received --grid 8x8 --keep 30 --attention $data/fopru_row_probs_h4_n64_k32/attention.npy"
)
if [[ -d "$shared" ]]; then  # larger inputs, when the shared fixtures are there
  extra+=("next_r0.37|--method gprune --layout llava-next --grid 24x48 --ratio 0.37 --features $shared/gprune_next_24x48_r0.5/features.npy"
          "flat_576x1024|--method gprune --keep 200 --features $shared/gprune_flat_576x1024_image_k57/features.npy")
fi

fail() { echo "determinism.sh: $*" >&2; exit 1; }

isa_levels="${ISA_LEVELS:-}"
runs=0
for level in $levels; do
  build="$repo/build/march-$level"
  cmake -S "$repo" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS="-march=$level" \
    -DTOKENPRUNE_BUILD_TESTS=OFF -DTOKENPRUNE_BUILD_EXAMPLES=OFF -DTOKENPRUNE_BUILD_BENCHMARKS=OFF > /dev/null
  cmake --build "$build" -j "$jobs" --target tokenprune_cli > /dev/null
  tool="$build/tokenprune"
  if [[ -z "$isa_levels" ]]; then  # "isa: avx512 (supported: avx512 avx2 portable)"
    isa_levels="$(env -u TOKENPRUNE_ISA "$tool" --version | sed -n 's/^isa: .*(supported: \(.*\))$/\1/p')"
    [[ -n "$isa_levels" ]] || fail "no 'isa: ... (supported: ...)' line in $tool --version"
    echo "ISA levels: $isa_levels"
  fi
  for isa in $isa_levels; do
    for threads in $thread_counts; do
      tag="$level-$isa-$threads"
      line="march=$level isa=$isa threads=$threads:"
      for set in "${case_sets[@]}"; do
        name="${set%%|*}"
        scores="$work/cases-$name/$tag"
        mkdir -p "$scores"
        if ! TOKENPRUNE_ISA=$isa OMP_NUM_THREADS=$threads "$tool" check "${set#*|}" --repeat 1 --scores-dir "$scores" \
               > "$work/check.log" 2>&1; then
          cat "$work/check.log" >&2
          fail "$name reference cases: mismatch or error (march=$level isa=$isa threads=$threads)"
        fi
        summary="$(tail -n 1 "$work/check.log")"
        [[ "$summary" =~ ^check:\ [1-9][0-9]*\ passed,\ 0\ failed(,\ .*)?$ ]] || fail "$name: unexpected summary: $summary"
        summary="${summary#check: }"
        line+=" $name ${summary%% (*};"  # (the per-method list of cases not implemented is the same every run)
      done
      for entry in "${extra[@]}"; do
        name="${entry%%|*}"
        mkdir -p "$work/extra-$name"
        # shellcheck disable=SC2086
        TOKENPRUNE_ISA=$isa OMP_NUM_THREADS=$threads "$tool" prune ${entry#*|} \
          --out "$work/extra-$name/keep-$tag.npy" --scores-out "$work/extra-$name/scores-$tag.npy" > /dev/null
      done
      echo "$line"
      runs=$((runs + 1))
    done
  done
done

# Every file of a kind must equal the first one of that kind, byte for byte (cmp). A difference is reported once per
# kind: how many runs differ from the first, and the first that does.
differ=0
same_files() {  # label, files... (named <kind>-<march>-<isa>-<threads>.npy or <march>-<isa>-<threads>/<case>.npy)
  local label="$1" first="$2" file mismatched=0 example=""
  shift
  for file in "$@"; do
    if ! cmp -s "$first" "$file"; then
      mismatched=$((mismatched + 1))
      [[ -n "$example" ]] || example="$file"
    fi
  done
  if ((mismatched > 0)); then
    echo "determinism.sh: $label: $mismatched of $# runs differ from ${first#"$work"/} (first: ${example#"$work"/})" >&2
    differ=1
    return 1
  fi
}
for set in "${case_sets[@]}"; do
  name="${set%%|*}"
  tags=("$work/cases-$name"/*)
  ((${#tags[@]} == runs)) || fail "$name: ${#tags[@]} score folders, expected $runs"
  count=0 bad=0
  for file in "${tags[0]}"/*.npy; do
    case_name="$(basename "$file")"
    others=()
    for tag in "${tags[@]}"; do
      [[ -f "$tag/$case_name" ]] || fail "$name: no scores of ${case_name%.npy} in $(basename "$tag")"
      others+=("$tag/$case_name")
    done
    same_files "$name case ${case_name%.npy} scores" "${others[@]}" || bad=$((bad + 1))
    count=$((count + 1))
  done
  for tag in "${tags[@]}"; do  # no run wrote scores of a case the first one did not run
    n="$(find "$tag" -name '*.npy' | wc -l)"
    ((n == count)) || fail "$name: $(basename "$tag") has $n score files, $(basename "${tags[0]}") has $count"
  done
  if ((bad == 0)); then
    echo "$name reference cases: scores of all $count cases identical across $runs runs (builds x ISA levels x threads)"
  else
    echo "$name reference cases: scores of $bad of $count cases DIFFER across $runs runs (builds x ISA levels x threads)"
  fi
done
for entry in "${extra[@]}"; do
  name="${entry%%|*}"
  kept="identical" scores="identical"
  same_files "$name kept indices" "$work/extra-$name"/keep-*.npy || kept="DIFFER"
  same_files "$name scores" "$work/extra-$name"/scores-*.npy || scores="DIFFER"
  echo "$name: kept indices $kept, scores $scores across $runs runs (builds x ISA levels x threads)"
done
exit $differ
