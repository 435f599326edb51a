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
#     every build x thread count x ISA level;
#   - on multi-tile inputs generated at run time (nothing large is committed): LLaVA-NeXT-layout features
#     576 + 48 x (48 + 1) = 2928 x 4096 (G-Prune's Gram spans many 288-token tiles) as float32 and float16, and
#     FoPru maps 16 x 576 x 576 (softmax rows) as float32 and float16, whose kept indices and scores must be bitwise
#     identical across every ISA level x thread count of one build with the default flags (no -march; see below).
# bf16 features and FoPru's queries/keys path are not run here: the tool's .npy reader takes '<f4', '<f2' and '<i8'
# only (io/npy.hpp), and the tool has no queries/keys input. tests/test_levels.cpp (ctest) covers both in-process:
# G-Prune scores and kept sets for fp32, fp16 and bf16 features, dense and sparse, at n = 2 x 288 + 61 (three
# tiles), d 96, and FoPru significance from fp32/fp16 maps and from queries and keys (with and without softmax), each
# bitwise equal across every supported level, at ctest's default thread count.
# Selections are run once each (--repeat 1): this is about answers, not timings.
# Needs /usr/bin/python3 with numpy (python3-numpy, installed by scripts/setup.sh) for the generated inputs.
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

# ---- Multi-tile inputs, generated into the build directory of a default-flags build (no -march) -------------------
# One build only, to bound the time: with the default flags the portable level's std::fma has no FMA instruction
# to compile to and goes through libm's software fma: one G-Prune run on the 2928 x 4096 input took 11-18 s (float32)
# and 16-21 s (float16) at that level on the 2-core machine, against 0.2-0.3 s at avx2 and avx512, so 90-110 s for
# the six portable G-Prune runs. The whole script took 3 min 44 s to 4 min 3 s there (the latter with other builds
# running), inside its ~6 minute budget, so portable runs at every thread count too (were it to outgrow that,
# portable at 1 and 2 threads only on next_48x48 would be the first cut).
# (Builds whose -march has FMA compile the portable level's fma to the instruction; the reference cases above run
# those.)
large_build="$repo/build/march-default"
cmake -S "$repo" -B "$large_build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS="" \
  -DTOKENPRUNE_BUILD_TESTS=OFF -DTOKENPRUNE_BUILD_EXAMPLES=OFF -DTOKENPRUNE_BUILD_BENCHMARKS=OFF > /dev/null
cmake --build "$large_build" -j "$jobs" --target tokenprune_cli > /dev/null
large_tool="$large_build/tokenprune"
inputs="$large_build/determinism-inputs"
mkdir -p "$inputs"
python=/usr/bin/python3
"$python" -c 'import numpy' 2> /dev/null || fail "$python with numpy is needed for the generated inputs (scripts/setup.sh installs python3-numpy)"
t0=$SECONDS
"$python" "$repo/bench/make_features.py" --out "$inputs/next_48x48_f32.npy" --layout llava-next --grid 48x48 --dim 4096 \
  --seed 1 > /dev/null
"$python" - "$inputs" << 'PY'
import sys
import numpy as np
out = sys.argv[1]
x = np.load(f"{out}/next_48x48_f32.npy")
assert x.shape == (576 + 48 * 49, 4096) and x.dtype == np.float32
np.save(f"{out}/next_48x48_f16.npy", x.astype(np.float16))  # |x| stays far below fp16's 65504
# FoPru maps [16, 576, 576]: softmax of Gaussian logits (computed in float64), one temperature per head from diffuse
# to peaked, so rows are positive and sum to 1 within fp32 rounding; the fp16 copy has subnormal and zero entries.
rng = np.random.default_rng(7)
heads, n = 16, 576
logits = rng.standard_normal((heads, n, n)) * np.linspace(0.5, 4.0, heads)[:, None, None]
p = np.exp(logits - logits.max(axis=2, keepdims=True))
p /= p.sum(axis=2, keepdims=True)
maps = p.astype(np.float32)
assert abs(maps.sum(axis=2, dtype=np.float64) - 1).max() < 1e-5
np.save(f"{out}/maps_h16_n576_f32.npy", maps)
np.save(f"{out}/maps_h16_n576_f16.npy", maps.astype(np.float16))
PY
echo "generated inputs in ${inputs#"$repo"/} ($((SECONDS - t0)) s): next_48x48 2928 x 4096 and maps 16 x 576 x 576, float32 and float16"

# name | tool arguments (each run on every ISA level x thread count of the default build).
large=(
  "next_48x48_f32|--method gprune --layout llava-next --grid 48x48 --ratio 0.5 --features $inputs/next_48x48_f32.npy"
  "next_48x48_f16|--method gprune --layout llava-next --grid 48x48 --ratio 0.5 --features $inputs/next_48x48_f16.npy"
  "rank_h16_n576_f32|--method fopru-rank --keep 64 --attention $inputs/maps_h16_n576_f32.npy"
  "rank_h16_n576_f16|--method fopru-rank --keep 64 --attention $inputs/maps_h16_n576_f16.npy"
  "row_given_h16_n576_f32|--method fopru-row --axis given --grid 24x24 --keep 144 --attention $inputs/maps_h16_n576_f32.npy"
  "row_given_h16_n576_f16|--method fopru-row --axis given --grid 24x24 --keep 144 --attention $inputs/maps_h16_n576_f16.npy"
)
large_runs=0
for entry in "${large[@]}"; do
  name="${entry%%|*}"
  mkdir -p "$work/large-$name"
  for isa in $isa_levels; do
    times=""
    for threads in $thread_counts; do
      start=${EPOCHREALTIME/[.,]/}
      # shellcheck disable=SC2086
      TOKENPRUNE_ISA=$isa OMP_NUM_THREADS=$threads "$large_tool" prune ${entry#*|} --repeat 1 \
        --out "$work/large-$name/keep-$isa-$threads.npy" --scores-out "$work/large-$name/scores-$isa-$threads.npy" \
        > /dev/null || fail "$name: tokenprune failed (isa=$isa threads=$threads)"
      ms=$(((${EPOCHREALTIME/[.,]/} - start) / 1000))
      times+=" $threads: $((ms / 1000)).$(printf '%03d' $((ms % 1000))) s;"
      large_runs=$((large_runs + 1))
    done
    echo "default build, $name isa=$isa, wall time per thread count:${times%;}"
  done
done
per_input=$((large_runs / ${#large[@]}))
for entry in "${large[@]}"; do
  name="${entry%%|*}"
  keep_files=("$work/large-$name"/keep-*.npy) score_files=("$work/large-$name"/scores-*.npy)
  ((${#keep_files[@]} == per_input && ${#score_files[@]} == per_input)) ||
    fail "$name: ${#keep_files[@]} kept / ${#score_files[@]} score files, expected $per_input"
  kept="identical" scores="identical"
  same_files "$name kept indices" "${keep_files[@]}" || kept="DIFFER"
  same_files "$name scores" "${score_files[@]}" || scores="DIFFER"
  echo "$name: kept indices $kept, scores $scores across $per_input runs (default build: ISA levels x threads)"
done

total=$((runs + large_runs))
if ((differ == 0)); then
  echo "determinism.sh: all identical: $runs build x ISA level x thread runs (${#case_sets[@]} reference case sets and" \
    "${#extra[@]} extra inputs each) and $large_runs multi-tile runs (${#large[@]} inputs x $per_input ISA level x thread" \
    "combinations, default build): $total runs"
else
  echo "determinism.sh: DIFFERENCES found (see above) among $total runs" >&2
fi
exit $differ
