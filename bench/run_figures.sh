#!/usr/bin/env bash
# The performance figures, on one machine, in one run: tokenprune (command-line tool and tokenprune_bench)
# against its floors (Eigen SYRK of the same Grams; one read of the attention maps) and against the published
# computation in PyTorch, for OMP_NUM_THREADS in 1 2. Prints a table of ratios; raw JSON goes to $OUT.
#
#   bench/run_figures.sh                         # build/bench, 0.5 s per benchmark, 5 repeats
#   BUILD=/tmp/b MIN_TIME=0.05 REPEAT=3 THREADS="1 2" bench/run_figures.sh
#
# Environment:
#   BUILD      build directory (default <repo>/build/bench; configured Release, -DTOKENPRUNE_NATIVE=ON)
#   OUT        where the JSON files go (default $BUILD/figures)
#   THREADS    thread counts to run (default "1 2")
#   MIN_TIME   --benchmark_min_time in seconds, without "s" (Google Benchmark 1.7.1) (default 0.5)
#   REPEAT     --repeat of the tool and the torch script (median reported) (default 5)
#   BENCH_REPS Google Benchmark repetitions, run in random interleaved order (median reported) (default 5)
#   PYTHON     interpreter with numpy (and python3-torch for the torch column) (default /usr/bin/python3)
#   TORCH_BLAS_DIR  a directory holding an optimized libblas.so.3 for torch. Debian's python3-torch is built
#              with BLAS_INFO=generic and uses whatever libblas.so.3 the system selects; with the reference
#              (netlib) BLAS one selection takes ~50 s and the torch column is meaningless. Default: the system's
#              OpenBLAS (/usr/lib/x86_64-linux-gnu/openblas-pthread) if installed. To use OpenBLAS without
#              changing the system: apt-get download libopenblas0-pthread && dpkg -x libopenblas0-pthread_*.deb D,
#              then TORCH_BLAS_DIR=D/usr/lib/x86_64-linux-gnu/openblas-pthread.
#
# Notes: BM_SyrkFloor is single-threaded whatever OMP_NUM_THREADS says (Eigen does not parallelize SYRK);
# BM_SyrkFloor2T always uses 2 std::threads. The tool row compares with the floor of the same thread count.
# The tool only uses more than one thread if it was compiled with OpenMP; the script says so when it was not.
# Not needed by CI.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/bench}
OUT=${OUT:-$BUILD/figures}
THREADS=${THREADS:-"1 2"}
MIN_TIME=${MIN_TIME:-0.5}
REPEAT=${REPEAT:-5}
BENCH_REPS=${BENCH_REPS:-5}
PYTHON=${PYTHON:-/usr/bin/python3}
if [[ -z "${TORCH_BLAS_DIR:-}" && -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ]]; then
  TORCH_BLAS_DIR=/usr/lib/x86_64-linux-gnu/openblas-pthread
fi
TORCH_BLAS_DIR=${TORCH_BLAS_DIR:-}

echo "== build ($BUILD)"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTOKENPRUNE_NATIVE=ON \
  -DTOKENPRUNE_BUILD_TESTS=OFF -DTOKENPRUNE_BUILD_EXAMPLES=OFF >"$BUILD.configure.log" 2>&1 ||
  { cat "$BUILD.configure.log"; exit 1; }
targets=(tokenprune_bench)
[[ -f "$ROOT/tools/tokenprune.cpp" ]] && targets+=(tokenprune_cli)
cmake --build "$BUILD" -j2 --target "${targets[@]}" >"$BUILD.build.log" 2>&1 || { tail -50 "$BUILD.build.log"; exit 1; }
mkdir -p "$OUT"

FEATURES=$BUILD/next_features_2928x4096.npy
if [[ ! -f "$FEATURES" ]]; then
  echo "== features ($FEATURES)"
  "$PYTHON" "$ROOT/bench/make_features.py" --out "$FEATURES" --layout llava-next --grid 48x48 --dim 4096 --seed 1
fi

TOOL=$BUILD/tokenprune
if [[ -x "$TOOL" ]] && ! ldd "$TOOL" | grep -q -E 'libgomp|libomp'; then
  echo "note: $TOOL is not built with OpenMP: it runs one thread whatever OMP_NUM_THREADS says"
fi
HAVE_TORCH=0
if "$PYTHON" -c "import torch" 2>/dev/null; then HAVE_TORCH=1; else echo "note: no torch for $PYTHON, torch column skipped"; fi
if [[ $HAVE_TORCH == 1 && -z "$TORCH_BLAS_DIR" ]]; then
  echo "warning: no optimized BLAS for torch (see TORCH_BLAS_DIR in this script): torch timings use the system libblas.so.3"
fi

# Benchmarks at the issue's sizes: the NeXT Grams (floor of G-Prune), G-Prune NeXT in-process, and FoPru against
# one read of the same maps (16 x 576 x 576, fp32 and fp16).
FILTER='^BM_(SyrkFloor|SyrkFloor2T|Gram)/next_d4096|^BM_GPrune/next_d4096/f32|^BM_(FoPruRank|FoPruRow|ReadMaps)/llava15/(f32|f16)'

for t in $THREADS; do
  echo "== OMP_NUM_THREADS=$t"
  if [[ -x "$TOOL" ]]; then
    OMP_NUM_THREADS=$t "$TOOL" prune --method gprune --layout llava-next --grid 48x48 --ratio 0.5 \
      --features "$FEATURES" --repeat "$REPEAT" --report json >"$OUT/tool_t$t.json"
  fi
  OMP_NUM_THREADS=$t "$BUILD/tokenprune_bench" --benchmark_filter="$FILTER" --benchmark_min_time="$MIN_TIME" \
    --benchmark_repetitions="$BENCH_REPS" --benchmark_enable_random_interleaving=true \
    --benchmark_out="$OUT/bench_t$t.json" --benchmark_out_format=json
  if [[ $HAVE_TORCH == 1 ]]; then
    OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t LD_LIBRARY_PATH="${TORCH_BLAS_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
      "$PYTHON" "$ROOT/bench/torch_reference.py" --features "$FEATURES" --grid 48x48 --ratio 0.5 --threads "$t" \
      --repeat "$REPEAT" --print-indices >"$OUT/torch_t$t.json"
  fi
done

echo "== summary (medians; ratios > 1 mean the first is slower)"
"$PYTHON" - "$OUT" $THREADS <<'EOF'
import json, os, sys

out, threads = sys.argv[1], sys.argv[2:]
scale = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}

def load(path, one_line=False):
    """A Google Benchmark JSON file, or (one_line) the last line of a tool/torch report; None if missing."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        return None
    with open(path) as f:
        text = f.read()
    return json.loads(text.strip().splitlines()[-1]) if one_line else json.loads(text)

def bench_ms(doc, name):
    """The median over repetitions of benchmark `name` (its only run without repetitions)."""
    runs = [b for b in (doc["benchmarks"] if doc else [])
            if b.get("run_name", b["name"]).split("/real_time")[0] == name]
    medians = [b for b in runs if b.get("aggregate_name") == "median"]
    pick = medians or [b for b in runs if b.get("run_type", "iteration") == "iteration"]
    return pick[0]["real_time"] * scale[pick[0]["time_unit"]] if pick else None

def ratio(a, b):
    return f"{a / b:8.2f}" if a and b else "       -"

def ms(v, digits=1):
    return f"{v:9.{digits}f}" if v else "        -"

rows = []
for t in threads:
    bench = load(os.path.join(out, f"bench_t{t}.json"))
    tool = load(os.path.join(out, f"tool_t{t}.json"), one_line=True)
    torch = load(os.path.join(out, f"torch_t{t}.json"), one_line=True)
    syrk = bench_ms(bench, "BM_SyrkFloor2T/next_d4096" if t != "1" else "BM_SyrkFloor/next_d4096")
    tool_ms = tool["select_ms"] if tool else None
    torch_ms = torch["select_ms"] if torch else None
    same = None
    if tool and torch and "kept_indices" in tool and "kept_indices" in torch:
        same = tool["kept_indices"] == torch["kept_indices"]
    rows.append((t, tool_ms, bench_ms(bench, "BM_GPrune/next_d4096/f32"), bench_ms(bench, "BM_Gram/next_d4096"), syrk,
                 torch_ms, same,
                 bench_ms(bench, "BM_FoPruRank/llava15/f32"), bench_ms(bench, "BM_ReadMaps/llava15/f32"),
                 bench_ms(bench, "BM_FoPruRank/llava15/f16"), bench_ms(bench, "BM_ReadMaps/llava15/f16")))

print("G-Prune, LLaVA-NeXT 2928 x 4096 (graphs 576 + 2304), ratio 0.5, times in ms")
print("thr   tool ms  bench ms   Gram ms   SYRK ms  tool/SYRK  Gram/SYRK  torch ms  torch/tool  same kept")
for t, tool_ms, lib_ms, gram_ms, syrk, torch_ms, same, *_ in rows:
    print(f"{t:>3} {ms(tool_ms)} {ms(lib_ms)} {ms(gram_ms)} {ms(syrk)}   {ratio(tool_ms, syrk)}   {ratio(gram_ms, syrk)} "
          f"{ms(torch_ms)}    {ratio(torch_ms, tool_ms)}  {'-' if same is None else ('yes' if same else 'NO')}")
print("  (SYRK = Eigen SYRK of the same two Grams: 1 thread for thr 1, 2 std::threads for thr 2)")
print()
print("FoPru rank, 16 x 576 x 576 maps, times in ms")
print("thr  f32 FoPru  f32 read  FoPru/read   f16 FoPru  f16 read  FoPru/read")
for t, *_, r32, m32, r16, m16 in rows:
    print(f"{t:>3} {ms(r32, 3)} {ms(m32, 3)}    {ratio(r32, m32)}   {ms(r16, 3)} {ms(m16, 3)}    {ratio(r16, m16)}")
EOF
