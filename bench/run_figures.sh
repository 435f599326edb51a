#!/usr/bin/env bash
# The performance figures, on one machine, in one run: tokenprune (command-line tool and tokenprune_bench)
# against its floors (OpenBLAS SYRK of the same Grams; one read of the attention maps) and against the published
# computation in PyTorch, for OMP_NUM_THREADS in 1 2. Prints the machine, the kernel dispatch level and a table
# of ratios; raw JSON goes to $OUT.
#
#   bench/run_figures.sh                         # build/bench (default Release build), 5 interleaved rounds
#   BUILD=/tmp/b MIN_TIME=0.05 REPEAT=3 ROUNDS=3 THREADS="1 2" bench/run_figures.sh
#   NATIVE=1 BUILD=build/bench-native bench/run_figures.sh   # the -march=native build instead
#
# Environment:
#   BUILD      build directory (default <repo>/build/bench; configured Release with the project's default flags,
#              i.e. no -march: the kernels pick their instruction set at run time)
#   NATIVE     1: configure with -DTOKENPRUNE_NATIVE=ON (-march=native) instead (default 0). The setting is
#              written into BUILD's cache either way, so give the native build its own BUILD.
#   OUT        where the JSON files go (default $BUILD/figures)
#   THREADS    thread counts to run (default "1 2"; the OpenBLAS and Eigen floors exist for 1 and 2 only)
#   ROUNDS     interleaved rounds of (tool, OpenBLAS floor) per thread count; the G-Prune ratio is the median
#              of the per-round ratios, with their min-max (default 5)
#   MIN_TIME   --benchmark_min_time in seconds, without "s" (Google Benchmark 1.7.1) (default 0.5)
#   REPEAT     --repeat of the tool and the torch script (median reported) (default 5)
#   BENCH_REPS Google Benchmark repetitions of the in-process set, in random interleaved order (median
#              reported) (default 5)
#   PYTHON     interpreter with numpy (and python3-torch for the torch column) (default /usr/bin/python3)
#   TORCH_BLAS_DIR  a directory holding an optimized libblas.so.3 for torch. Debian's python3-torch is built
#              with BLAS_INFO=generic and uses whatever libblas.so.3 the system selects; with the reference
#              (netlib) BLAS one selection takes ~50 s and the torch column is meaningless. Default: the system's
#              OpenBLAS (/usr/lib/x86_64-linux-gnu/openblas-pthread, from libopenblas-dev, which
#              scripts/setup.sh installs for the floor) if installed.
#   FLOOR_CORETYPE  OpenBLAS's kernels for the floor (and torch): auto (default) lets OpenBLAS choose from CPUID
#              and ignores an OPENBLAS_CORETYPE inherited from the environment (an environment that pins, e.g.,
#              OPENBLAS_CORETYPE=Haswell on an AVX-512 CPU halves the floor's speed, which flatters the tool);
#              a core name (SkylakeX, Cooperlake, Haswell, ...) forces it. The script prints the core OpenBLAS
#              ran and warns when it has no AVX-512 kernels on an AVX-512 CPU.
#
# The G-Prune floor is BM_SyrkOpenBLAS/next_d4096 (cblas_ssyrk of the two Grams, 576 x 4096 and 2304 x 4096,
# one iteration) on 1 OpenBLAS thread for thr 1 and BM_SyrkOpenBLAS2T (2 OpenBLAS threads) for thr 2. The Eigen
# SYRK floors (BM_SyrkFloor, 1 thread; BM_SyrkFloor2T, 2 std::threads) are shown for reference. The tool only
# uses more than one thread if it was compiled with OpenMP; the script says so when it was not. Not needed by CI.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/bench}
OUT=${OUT:-$BUILD/figures}
NATIVE=${NATIVE:-0}
THREADS=${THREADS:-"1 2"}
ROUNDS=${ROUNDS:-5}
MIN_TIME=${MIN_TIME:-0.5}
REPEAT=${REPEAT:-5}
BENCH_REPS=${BENCH_REPS:-5}
PYTHON=${PYTHON:-/usr/bin/python3}
if [[ -z "${TORCH_BLAS_DIR:-}" && -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ]]; then
  TORCH_BLAS_DIR=/usr/lib/x86_64-linux-gnu/openblas-pthread
fi
TORCH_BLAS_DIR=${TORCH_BLAS_DIR:-}
FLOOR_CORETYPE=${FLOOR_CORETYPE:-auto}
INHERITED_CORETYPE=${OPENBLAS_CORETYPE:-}
if [[ $FLOOR_CORETYPE == auto ]]; then
  unset OPENBLAS_CORETYPE
else
  export OPENBLAS_CORETYPE=$FLOOR_CORETYPE
fi

if [[ $NATIVE == 1 ]]; then native_flag=ON; else native_flag=OFF; fi
echo "== build ($BUILD, Release, TOKENPRUNE_NATIVE=$native_flag)"
mkdir -p "$(dirname "$BUILD")"
# A new folder builds only what the figures need; an existing one (a developer's build with its tests) keeps
# its other targets, so that its tokenprune_tests does not go stale behind this run.
lean=()
[[ -f "$BUILD/CMakeCache.txt" ]] || lean=(-DTOKENPRUNE_BUILD_TESTS=OFF -DTOKENPRUNE_BUILD_EXAMPLES=OFF)
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTOKENPRUNE_NATIVE=$native_flag "${lean[@]}" \
  -DTOKENPRUNE_BUILD_TOOLS=ON -DTOKENPRUNE_BUILD_BENCHMARKS=ON >"$BUILD.configure.log" 2>&1 ||
  { cat "$BUILD.configure.log"; exit 1; }
grep -E '^-- tokenprune: .*(OpenBLAS|benchmark)' "$BUILD.configure.log" || true
targets=(tokenprune_bench)
[[ -f "$ROOT/tools/tokenprune.cpp" ]] && targets+=(tokenprune_cli)
cmake --build "$BUILD" -j2 --target "${targets[@]}" >"$BUILD.build.log" 2>&1 || { tail -50 "$BUILD.build.log"; exit 1; }
mkdir -p "$OUT"
BENCH=$BUILD/tokenprune_bench

floor_name() {  # the OpenBLAS floor of the same thread count (empty if there is none)
  case $1 in 1) echo BM_SyrkOpenBLAS/next_d4096 ;; 2) echo BM_SyrkOpenBLAS2T/next_d4096 ;; *) echo "" ;; esac
}
if [[ -z "$("$BENCH" --benchmark_list_tests --benchmark_filter='^BM_SyrkOpenBLAS/next_d4096' 2>/dev/null)" ]]; then
  echo "error: $BENCH has no BM_SyrkOpenBLAS (OpenBLAS not found at configure time): run scripts/setup.sh" \
    "(libopenblas-dev) and re-run" >&2
  exit 1
fi
for t in $THREADS; do
  [[ -n "$(floor_name "$t")" ]] || echo "note: no OpenBLAS/Eigen floor for $t threads (only 1 and 2): floor columns left empty"
done

echo "== machine"
cpu_model=$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
[[ -n "$cpu_model" ]] || cpu_model=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo 2>/dev/null | head -1)
cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | tr ' ' '\n' |
  grep -x -E 'avx2|fma|f16c|avx512f|avx512bw|avx512dq|avx512vl|avx512_bf16|avx512_vnni|avx512_fp16|amx_tile' |
  tr '\n' ' ' | sed 's/ $//' || true)
echo "cpu:      ${cpu_model:-unknown} ($(nproc) CPUs; flags: ${cpu_flags:-none of avx2/avx512})"
echo "load:     $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown) (other work on the machine skews every figure)"

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
if "$PYTHON" -c "import torch" 2>/dev/null; then
  HAVE_TORCH=1
else
  echo "note: no torch for $PYTHON (Debian: python3-torch, ~150 MB download, ~600 MB installed), torch column skipped"
fi
if [[ $HAVE_TORCH == 1 && -z "$TORCH_BLAS_DIR" ]]; then
  echo "warning: no optimized BLAS for torch (see TORCH_BLAS_DIR in this script): torch timings use the system libblas.so.3"
fi

json_get() {  # json_get FILE KEY [KEY...]: a value from a JSON file (last line if several), empty if absent
  "$PYTHON" - "$@" <<'EOF' 2>/dev/null || true
import json, sys
path, keys = sys.argv[1], sys.argv[2:]
text = open(path).read().strip()
try:
    doc = json.loads(text)
except ValueError:
    doc = json.loads(text.splitlines()[-1])
for k in keys:
    doc = doc[k]
print(doc)
EOF
}

run_floor() {  # run_floor THREADS OUTFILE: the OpenBLAS floor of that thread count, once (console output only on failure)
  OMP_NUM_THREADS=$1 "$BENCH" --benchmark_filter="^$(floor_name "$1")" --benchmark_min_time="$MIN_TIME" \
    --benchmark_out="$2" --benchmark_out_format=json >"$2.log" 2>&1 || { cat "$2.log"; exit 1; }
}
floor_ms() {  # floor_ms FILE: the floor's real time in ms
  "$PYTHON" - "$1" <<'EOF'
import json, sys
b = json.load(open(sys.argv[1]))["benchmarks"][0]
print(f'{b["real_time"] * {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}[b["time_unit"]]:.1f}')
EOF
}

# The dispatch level: the benchmark context (always there), the tool's --version / report if it prints one.
first_t=${THREADS%% *}
probe_t=1; [[ -n "$(floor_name "$first_t")" ]] && probe_t=$first_t
run_floor "$probe_t" "$OUT/context.json"
bench_isa=$(json_get "$OUT/context.json" context isa)
echo "isa:      ${bench_isa:-unknown} (tokenprune_bench; supported: $(json_get "$OUT/context.json" context isa_supported);" \
  "build: $(json_get "$OUT/context.json" context march); TOKENPRUNE_ISA=${TOKENPRUNE_ISA:-<unset>})"
if [[ -x "$TOOL" ]]; then
  tool_version=$("$TOOL" --version 2>/dev/null | head -3 | tr '\n' ' ' || true)
  if grep -q -i 'isa' <<<"$tool_version"; then
    echo "tool:     $tool_version"
  else
    echo "tool:     ${tool_version:-(no --version)} (no isa in --version; its report's \"isa\" is shown below if it has one)"
  fi
fi
openblas_core=$(json_get "$OUT/context.json" context openblas_core)
inherited_note=""
if [[ $FLOOR_CORETYPE == auto && -n "$INHERITED_CORETYPE" ]]; then
  inherited_note="; OPENBLAS_CORETYPE=$INHERITED_CORETYPE from the environment ignored, FLOOR_CORETYPE=$INHERITED_CORETYPE to use it"
fi
echo "openblas: $(json_get "$OUT/context.json" context openblas_config) (core: ${openblas_core:-unknown}," \
  "FLOOR_CORETYPE=$FLOOR_CORETYPE$inherited_note)"
if [[ "$bench_isa" == avx512 && -n "$openblas_core" ]] && ! grep -q -i -E 'skylakex|cooperlake|sapphire|zen4|zen5' <<<"$openblas_core"; then
  echo "warning: OpenBLAS runs its $openblas_core kernels (no AVX-512) on this AVX-512 CPU while tokenprune runs" \
    "avx512, so the floor is weaker than the CPU allows. FLOOR_CORETYPE=SkylakeX selects OpenBLAS's AVX-512 kernels."
fi

# Rounds: tool and OpenBLAS floor alternate (tool, floor, tool, floor, ...) so that the machine's drift hits both.
for ((r = 1; r <= ROUNDS; r++)); do
  for t in $THREADS; do
    line="round $r/$ROUNDS thr $t:"
    if [[ -x "$TOOL" ]]; then
      OMP_NUM_THREADS=$t "$TOOL" prune --method gprune --layout llava-next --grid 48x48 --ratio 0.5 \
        --features "$FEATURES" --repeat "$REPEAT" --report json >"$OUT/tool_t${t}_r$r.json"
      line+=" tool $(printf '%.1f' "$(json_get "$OUT/tool_t${t}_r$r.json" select_ms)") ms"
    fi
    if [[ -n "$(floor_name "$t")" ]]; then
      run_floor "$t" "$OUT/floor_t${t}_r$r.json"
      line+=", OpenBLAS SYRK $(floor_ms "$OUT/floor_t${t}_r$r.json") ms"
    fi
    echo "$line"
  done
done

# In-process set at the issue's sizes: the NeXT Grams and their floors, G-Prune NeXT, and FoPru against one read
# of the same maps (16 x 576 x 576, fp32 and fp16).
FILTER='^BM_(SyrkOpenBLAS|SyrkOpenBLAS2T|SyrkFloor|SyrkFloor2T|Gram)/next_d4096|^BM_GPrune/next_d4096/f32|^BM_(FoPruRank|FoPruRow|ReadMaps)/llava15/(f32|f16)'
for t in $THREADS; do
  echo "== OMP_NUM_THREADS=$t: tokenprune_bench ($BENCH_REPS repetitions, interleaved)"
  OMP_NUM_THREADS=$t "$BENCH" --benchmark_filter="$FILTER" --benchmark_min_time="$MIN_TIME" \
    --benchmark_repetitions="$BENCH_REPS" --benchmark_enable_random_interleaving=true \
    --benchmark_report_aggregates_only=true --benchmark_out="$OUT/bench_t$t.json" --benchmark_out_format=json
  if [[ $HAVE_TORCH == 1 ]]; then
    echo "== OMP_NUM_THREADS=$t: torch"
    OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t LD_LIBRARY_PATH="${TORCH_BLAS_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
      "$PYTHON" "$ROOT/bench/torch_reference.py" --features "$FEATURES" --grid 48x48 --ratio 0.5 --threads "$t" \
      --repeat "$REPEAT" --print-indices >"$OUT/torch_t$t.json"
  fi
done

echo "== summary (medians; ratios > 1 mean the first is slower)"
CPU_MODEL="$cpu_model" CPU_FLAGS="$cpu_flags" "$PYTHON" - "$OUT" "$ROUNDS" $THREADS <<'EOF'
import json, os, statistics, sys

out, rounds, threads = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
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
    if not name:
        return None
    runs = [b for b in (doc["benchmarks"] if doc else [])
            if b.get("run_name", b["name"]).split("/real_time")[0] == name]
    medians = [b for b in runs if b.get("aggregate_name") == "median"]
    pick = medians or [b for b in runs if b.get("run_type", "iteration") == "iteration"]
    return pick[0]["real_time"] * scale[pick[0]["time_unit"]] if pick else None

def ratio(a, b):
    return f"{a / b:8.2f}" if a and b else "       -"

def ms(v, digits=1):
    return f"{v:9.{digits}f}" if v else "        -"

def floors(t):
    return {"1": ("BM_SyrkOpenBLAS/next_d4096", "BM_SyrkFloor/next_d4096"),
            "2": ("BM_SyrkOpenBLAS2T/next_d4096", "BM_SyrkFloor2T/next_d4096")}.get(t, (None, None))

context = (load(os.path.join(out, "context.json")) or {}).get("context", {})
print(f"cpu {os.environ.get('CPU_MODEL') or 'unknown'} ({context.get('num_cpus', '?')} CPUs, "
      f"{os.environ.get('CPU_FLAGS', '').strip() or 'no avx2/avx512'}); isa {context.get('isa', 'unknown')} "
      f"(supported: {context.get('isa_supported', '?')}), build {context.get('march', '?')}; "
      f"OpenBLAS core {context.get('openblas_core', '?')}")
tool_isa = {(load(os.path.join(out, f"tool_t{t}_r1.json"), one_line=True) or {}).get("isa") for t in threads} - {None}
if tool_isa:
    print(f"tool report isa: {' '.join(sorted(tool_isa))}")
print()

print(f"G-Prune, LLaVA-NeXT 2928 x 4096 (graphs 576 + 2304), ratio 0.5: tool against the OpenBLAS SYRK of the same "
      f"two Grams, {rounds} interleaved rounds, times in ms")
print("thr   tool ms  SYRK ms  tool/SYRK (rounds min-max)")
rows = []
for t in threads:
    tool_r, floor_r, ratios = [], [], []
    for r in range(1, rounds + 1):
        tool = load(os.path.join(out, f"tool_t{t}_r{r}.json"), one_line=True)
        floor = load(os.path.join(out, f"floor_t{t}_r{r}.json"))
        tool_ms = tool["select_ms"] if tool else None
        floor_ms = bench_ms(floor, floors(t)[0])
        if tool_ms: tool_r.append(tool_ms)
        if floor_ms: floor_r.append(floor_ms)
        if tool_ms and floor_ms: ratios.append(tool_ms / floor_ms)
    tool_med = statistics.median(tool_r) if tool_r else None
    floor_med = statistics.median(floor_r) if floor_r else None
    spread = f"({min(ratios):.2f}-{max(ratios):.2f})" if ratios else ""
    med = f"{statistics.median(ratios):8.2f}" if ratios else "       -"
    print(f"{t:>3} {ms(tool_med)} {ms(floor_med)}  {med} {spread}")
    rows.append((t, tool_med))
print("  (SYRK = cblas_ssyrk, OpenBLAS on 1 thread for thr 1 and 2 threads for thr 2)")
print()

print("In-process (tokenprune_bench, medians of interleaved repetitions), times in ms")
print("thr  GPrune ms   Gram ms  OpenBLAS  Eigen SYRK  GPrune/OB  Gram/OB  Eigen/OB  torch ms  torch/tool  same kept")
fopru = []
for t, tool_ms in rows:
    bench = load(os.path.join(out, f"bench_t{t}.json"))
    torch = load(os.path.join(out, f"torch_t{t}.json"), one_line=True)
    ob, eigen = (bench_ms(bench, n) for n in floors(t))
    lib_ms, gram_ms = bench_ms(bench, "BM_GPrune/next_d4096/f32"), bench_ms(bench, "BM_Gram/next_d4096")
    torch_ms = torch["select_ms"] if torch else None
    same = None
    tool = load(os.path.join(out, f"tool_t{t}_r1.json"), one_line=True)
    if tool and torch and "kept_indices" in tool and "kept_indices" in torch:
        same = tool["kept_indices"] == torch["kept_indices"]
    print(f"{t:>3} {ms(lib_ms)} {ms(gram_ms)} {ms(ob)}   {ms(eigen)}   {ratio(lib_ms, ob)} {ratio(gram_ms, ob)} "
          f"{ratio(eigen, ob)} {ms(torch_ms)}    {ratio(torch_ms, tool_ms)}  {'-' if same is None else ('yes' if same else 'NO')}")
    fopru.append((t, bench_ms(bench, "BM_FoPruRank/llava15/f32"), bench_ms(bench, "BM_ReadMaps/llava15/f32"),
                  bench_ms(bench, "BM_FoPruRank/llava15/f16"), bench_ms(bench, "BM_ReadMaps/llava15/f16")))
print("  (OB = OpenBLAS SYRK, Eigen SYRK = BM_SyrkFloor / BM_SyrkFloor2T; torch/tool uses the tool's median above)")
for t, _ in rows:
    bench = load(os.path.join(out, f"bench_t{t}.json"))
    failed = {b["run_name"] if "run_name" in b else b["name"]: b.get("error_message", "")
              for b in (bench["benchmarks"] if bench else []) if b.get("error_occurred")}
    for name, message in sorted(failed.items()):
        print(f"  thr {t}: {name} failed: {message}")
print()
print("FoPru rank, 16 x 576 x 576 maps, times in ms")
print("thr  f32 FoPru  f32 read  FoPru/read   f16 FoPru  f16 read  FoPru/read")
for t, r32, m32, r16, m16 in fopru:
    print(f"{t:>3} {ms(r32, 3)} {ms(m32, 3)}    {ratio(r32, m32)}   {ms(r16, 3)} {ms(m16, 3)}    {ratio(r16, m16)}")
EOF
