#!/usr/bin/env bash
# The README's "main job": install what is missing, build the command-line tool (Release), reproduce every
# reference case of an implemented method through it (cases of methods not implemented yet are counted, not run),
# then prune one LLaVA-NeXT-sized G-Prune input and one FoPru input and show what was kept and how fast, and draw
# what G-Prune keeps of a real photograph (docs/kept.png, the README's picture; needs libstb-dev, python3-skimage).
#
#   scripts/demo.sh            about a minute on a 2-core machine (plus first-time apt installs and the build)
#   scripts/demo.sh --bench    also build and run the benchmarks (tokenprune_bench), if that target exists
#
# Environment: JOBS (default 2), BUILD_DIR (default build/release), TOKENPRUNE_ISA (kernel instruction-set level:
# avx512 | avx2 | portable; default the best this CPU supports; every level gives the same answers).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
jobs="${JOBS:-2}"
build="${BUILD_DIR:-build/release}"
bench=0
for arg in "$@"; do
  case "$arg" in
    --bench) bench=1 ;;
    -h|--help) sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument '$arg' (expected --bench)" >&2; exit 2 ;;
  esac
done

banner() { printf '\n========== %s ==========\n' "$*"; }

banner "setup (Debian packages)"
bash "$repo/scripts/setup.sh"

banner "build: $build (Release), the tokenprune executable (CMake target tokenprune_cli)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$jobs" --target tokenprune_cli
tool="$build/tokenprune"
[[ -x "$tool" ]] || { echo "demo.sh: $tool was not built" >&2; exit 1; }
"$tool" --version
# The kernel level every run below uses ("isa: avx512 (supported: avx512 avx2 portable)"; TOKENPRUNE_ISA picks it).
isa="$("$tool" --version | sed -n 's/^isa: \([a-z0-9]*\).*/\1/p')"
[[ -n "$isa" ]] || { echo "demo.sh: no 'isa:' line in $tool --version" >&2; exit 1; }
if [[ -n "${TOKENPRUNE_ISA:-}" ]]; then
  echo "kernels: isa level $isa (TOKENPRUNE_ISA=$TOKENPRUNE_ISA)"
else
  echo "kernels: isa level $isa (the best this CPU supports; TOKENPRUNE_ISA=avx512|avx2|portable picks one)"
fi

shared="$repo/../shared/fixtures/reference"
banner "reference cases bundled with the project (tests/data/reference)"
"$tool" check tests/data/reference
if [[ -d "$shared" ]]; then
  banner "all shared reference cases ($(cd "$shared" && pwd))"
  "$tool" check "$shared"
fi

# Inputs for the two timed runs: the largest cases available (LLaVA-NeXT layout when the shared fixtures exist).
if [[ -d "$shared/gprune_next_24x48_r0.5" ]]; then
  gcase="$shared/gprune_next_24x48_r0.5"
  gargs=(--layout llava-next --grid 24x48 --ratio 0.5)
else
  gcase="tests/data/reference/gprune_flat_144x64_image_k36"
  gargs=(--keep 36)
fi
if [[ -d "$shared/fopru_rank_probs_h16_n576_k64" ]]; then
  fcase="$shared/fopru_rank_probs_h16_n576_k64"
  fargs=(--keep 64)
else
  fcase="tests/data/reference/fopru_rank_probs_h4_n64_k16"
  fargs=(--keep 16)
fi

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

banner "G-Prune on $(basename "$gcase")"
"$tool" prune --method gprune --features "$gcase/features.npy" "${gargs[@]}" --out "$out/gprune_keep.npy"
"$tool" prune --method gprune --features "$gcase/features.npy" "${gargs[@]}" --repeat 10 --report json |
  sed -E 's/"kept_indices":\[[^]]*\],?//'

banner "FoPru (rank) on $(basename "$fcase")"
"$tool" prune --method fopru-rank --attention "$fcase/attention.npy" "${fargs[@]}" --out "$out/fopru_keep.npy"
"$tool" prune --method fopru-rank --attention "$fcase/attention.npy" "${fargs[@]}" --repeat 10 --report json |
  sed -E 's/"kept_indices":\[[^]]*\],?//'

# The README's picture (docs/kept.png): G-Prune on a real photograph, the LLaVA-NeXT layout, tokens from its patches.
banner "picture: G-Prune on a photograph (docs/kept.png)"
python="${PYTHON:-/usr/bin/python3}"  # Debian's python: its numpy and scikit-image (python3-skimage)
photo="$("$python" -c 'import os, skimage; print(os.path.join(os.path.dirname(skimage.__file__), "data", "astronaut.png"))' 2>/dev/null || true)"
if ! "$tool" prune --help | grep -qE -- '^ +--picture PNG'; then
  echo "demo.sh: $tool was built without --picture (stb missing: apt-get install libstb-dev): picture skipped"
elif [[ -z "$photo" || ! -f "$photo" ]]; then
  echo "demo.sh: no skimage/data/astronaut.png (apt-get install python3-skimage): picture skipped"
else
  # 576 base tokens (14x14-pixel patches of a 336x336 resize) + a 48x48 grid (of a 672x672 resize) with one newline
  # token per row; each token: the patch's pixels minus the mean patch, through a fixed random projection to 256.
  "$python" scripts/photo_tokens.py --image "$photo" --layout llava-next --out "$out/photo_tokens.npy"
  "$tool" prune --method gprune --features "$out/photo_tokens.npy" --layout llava-next --grid 48x48 --ratio 0.25 \
    --picture docs/kept.png --image "$photo"
fi

if ((bench)); then
  banner "benchmarks (tokenprune_bench)"
  if cmake --build "$build" --target help 2>/dev/null | grep -q 'tokenprune_bench'; then
    cmake --build "$build" -j "$jobs" --target tokenprune_bench
    "$build/tokenprune_bench" --benchmark_min_time=0.01
  else
    echo "demo.sh: no tokenprune_bench target (no bench/*.cpp, or Google Benchmark missing): skipped"
  fi
fi

banner "demo done"
