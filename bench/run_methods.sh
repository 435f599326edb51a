#!/usr/bin/env bash
# The seven methods of issue 11 against their floors and against their published op sequences in PyTorch:
# tokenprune_bench's BM_Method/* and BM_Floor/* (bench/bench_methods.cpp) and bench/torch_methods.py, run
# interleaved (round r: ours, floor, torch, for each thread count) and summarized as medians over the rounds.
#
#   bench/run_methods.sh                                   # build/bench-methods, THREADS="1 2", 3 rounds
#   ROUNDS=5 THREADS=1 ONLY='cdpruner|divprune' bench/run_methods.sh      # rerun some rows
#   CHECK=1 bench/run_methods.sh                           # first check torch == tool on reference cases
#
# Environment:
#   BUILD      build directory (default <repo>/build/bench-methods; Release, no -march)
#   OUT        raw JSON (default $BUILD/methods)
#   THREADS    thread counts (default "1 2"): OMP_NUM_THREADS for the library and the read floors,
#              openblas_set_num_threads for the SYRK / sgemm floors (the executor's count), torch.set_num_threads
#   ROUNDS     interleaved rounds (default 3)
#   MIN_TIME   --benchmark_min_time per benchmark and round, seconds (default 0.2)
#   REPEAT     timed calls per torch case and round, median taken (default 5)
#   ONLY       a regex of case names (method/case, e.g. 'cdpruner/next|evs'), default all
#   FLOOR_CORETYPE  OpenBLAS kernels for the floors and torch: default SkylakeX on an AVX-512 CPU (else
#              OpenBLAS's own choice); "auto" leaves OpenBLAS to choose; any core name forces it
#   TORCH_BLAS_DIR  the libblas.so.3 torch uses (default the system's OpenBLAS, openblas-pthread: Debian's
#              python3-torch is BLAS_INFO=generic and with the netlib BLAS it is meaningless)
#   TORCH_MALLOC  glibc malloc tunables for the torch process (default: no mmap for blocks below 4 GiB, no heap
#              trimming, 1 GiB top pad, so that torch's large temporaries reuse heap memory instead of fresh pages:
#              without them glibc's mmap of every large tensor adds page faults, e.g. DART NeXT 1.5 s instead of
#              0.3 s, and the figure depends on what ran before in the process). "none": glibc defaults.
#   PYTHON     default /usr/bin/python3
#   CHECK      1: run bench/torch_methods.py --check (torch vs the tool vs expected_keep) first
#
# Columns: ours / floor / torch are the medians over the rounds (ms); ratio = ours / floor; speed-up = torch /
# ours; bound = torch / floor, the speed-up an implementation running at the floor would have (for the Gram
# methods PyTorch itself is within a few times of the SYRK, so this caps what any exact implementation can
# show); min-sp = the speed-up from each side's fastest round (robust to other load on the machine); noise =
# the largest (max - min) / median over the rounds of ours, floor and torch. A "*" marks noise above 20 %:
# rerun those rows with ONLY (and more ROUNDS).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$ROOT/build/bench-methods}
OUT=${OUT:-$BUILD/methods}
THREADS=${THREADS:-"1 2"}
ROUNDS=${ROUNDS:-3}
MIN_TIME=${MIN_TIME:-0.2}
REPEAT=${REPEAT:-5}
ONLY=${ONLY:-}
PYTHON=${PYTHON:-/usr/bin/python3}
CHECK=${CHECK:-0}
TORCH_MALLOC=${TORCH_MALLOC:-glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=68719476736:glibc.malloc.top_pad=1073741824}
[[ $TORCH_MALLOC == none ]] && TORCH_MALLOC=""
if [[ -z "${TORCH_BLAS_DIR:-}" && -e /usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3 ]]; then
  TORCH_BLAS_DIR=/usr/lib/x86_64-linux-gnu/openblas-pthread
fi
cpu_flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | tr ' ' '\n' |
  grep -x -E 'avx2|fma|f16c|avx512f|avx512bw|avx512vl|avx512_bf16|avx512_fp16|amx_tile' | tr '\n' ' ' || true)
if [[ -z "${FLOOR_CORETYPE:-}" ]]; then
  if grep -q -w avx512f <<<"$cpu_flags"; then FLOOR_CORETYPE=SkylakeX; else FLOOR_CORETYPE=auto; fi
fi
inherited=${OPENBLAS_CORETYPE:-<unset>}
if [[ $FLOOR_CORETYPE == auto ]]; then unset OPENBLAS_CORETYPE; else export OPENBLAS_CORETYPE=$FLOOR_CORETYPE; fi

echo "== build ($BUILD, Release, no -march)"
# A new folder builds only what the figures need; an existing one keeps its other targets (tests, examples).
lean=()
[[ -f "$BUILD/CMakeCache.txt" ]] || lean=(-DTOKENPRUNE_BUILD_TESTS=OFF -DTOKENPRUNE_BUILD_EXAMPLES=OFF)
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTOKENPRUNE_NATIVE=OFF "${lean[@]}" \
  -DTOKENPRUNE_BUILD_TOOLS=ON -DTOKENPRUNE_BUILD_BENCHMARKS=ON \
  >"$BUILD.configure.log" 2>&1 || { cat "$BUILD.configure.log"; exit 1; }
cmake --build "$BUILD" -j1 --target tokenprune_bench tokenprune_cli >"$BUILD.build.log" 2>&1 ||
  { tail -50 "$BUILD.build.log"; exit 1; }
BENCH=$BUILD/tokenprune_bench
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.jsonl

echo "== machine"
echo "cpu:      $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1) ($(nproc) CPUs; flags: ${cpu_flags:-none})"
echo "load:     $(cut -d' ' -f1-3 /proc/loadavg) at start (a shared machine: see the noise column)"
echo "openblas: OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-<auto>} for the floors and torch (inherited: $inherited)"
echo "torch:    $("$PYTHON" -c 'import torch; print(torch.__version__)') with ${TORCH_BLAS_DIR:-the system libblas.so.3}, GLIBC_TUNABLES=${TORCH_MALLOC:-<defaults>}"

if [[ $CHECK == 1 ]]; then
  echo "== torch vs tool vs reference cases"
  LD_LIBRARY_PATH=${TORCH_BLAS_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
    "$PYTHON" "$ROOT/bench/torch_methods.py" --check --tool "$BUILD/tokenprune" --per-method 6
fi

filter_of() {  # the benchmark filter of a family (Method|Floor) restricted to ONLY
  if [[ -n "$ONLY" ]]; then echo "^BM_$1/($ONLY)"; else echo "^BM_$1/"; fi
}
torch_only=()
if [[ -n "$ONLY" ]]; then
  while read -r c; do torch_only+=(--only "$c"); done < <(
    LD_LIBRARY_PATH=${TORCH_BLAS_DIR} "$PYTHON" -c "
import re, sys; sys.path.insert(0, '$ROOT/bench')
import torch_methods as t
[print(c) for c in t.cases() if re.search(r'''$ONLY''', c)]")
fi

for ((r = 1; r <= ROUNDS; r++)); do
  for t in $THREADS; do
    echo "== round $r/$ROUNDS, $t thread(s), load $(cut -d' ' -f1 /proc/loadavg)"
    for family in Method Floor; do
      OMP_NUM_THREADS=$t "$BENCH" --benchmark_filter="$(filter_of $family)" --benchmark_min_time="$MIN_TIME" \
        --benchmark_out="$OUT/${family}_t${t}_r$r.json" --benchmark_out_format=json >"$OUT/${family}_t${t}_r$r.log" 2>&1 ||
        { cat "$OUT/${family}_t${t}_r$r.log"; exit 1; }
    done
    OMP_NUM_THREADS=$t LD_LIBRARY_PATH=${TORCH_BLAS_DIR}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
      GLIBC_TUNABLES=$TORCH_MALLOC "$PYTHON" "$ROOT/bench/torch_methods.py" --threads "$t" --repeat "$REPEAT" "${torch_only[@]}" \
      >"$OUT/torch_t${t}_r$r.jsonl"
  done
done

echo "== results (medians over $ROUNDS rounds; ms)"
"$PYTHON" - "$OUT" "$THREADS" <<'EOF'
import glob, json, os, statistics, sys
out, threads = sys.argv[1], sys.argv[2].split()
unit = {"ns": 1e-6, "us": 1e-3, "ms": 1.0, "s": 1e3}

def bench(family, t):
    runs = {}
    for path in sorted(glob.glob(os.path.join(out, f"{family}_t{t}_r*.json"))):
        for b in json.load(open(path))["benchmarks"]:
            name = b["name"].split("/", 1)[1].replace("/real_time", "")
            runs.setdefault(name, []).append(b["real_time"] * unit[b["time_unit"]])
            if family == "Floor":
                labels[name] = b.get("label", "")
    return runs

def torch_runs(t):
    runs = {}
    for path in sorted(glob.glob(os.path.join(out, f"torch_t{t}_r*.jsonl"))):
        for line in open(path):
            d = json.loads(line)
            runs.setdefault(d["case"], []).append(d["ms"])
    return runs

def med(v):
    return statistics.median(v) if v else float("nan")

def noise(v):
    return (max(v) - min(v)) / statistics.median(v) if len(v) > 1 else 0.0

def kind(label):
    return "syrk" if "ssyrk" in label else "pivot sgemm" if "sgemm" in label else "read" if "read" in label else "-"

labels = {}
for t in threads:
    ours, floor, torch = bench("Method", t), bench("Floor", t), torch_runs(t)
    print(f"\nthreads {t}")
    head = (f"{'method':14s} {'size':14s} {'ours ms':>9s} {'floor':>12s} {'floor ms':>9s} {'ratio':>6s} {'torch ms':>9s} "
            f"{'speed-up':>8s} {'bound':>7s} {'min-sp':>7s} {'noise':>6s}")
    print(head)
    print("-" * len(head))
    for name in ours:
        method, size = name.split("/", 1)
        o, f, p = med(ours[name]), med(floor.get(name, [])), med(torch.get(name, []))
        worst = max(noise(ours[name]), noise(floor.get(name, [1])), noise(torch.get(name, [1])))
        flag = "*" if worst > 0.2 else ""
        fcol = f"{f:9.3f}" if floor.get(name) else f"{'-':>9s}"
        ratio = f"{o / f:6.2f}" if floor.get(name) else f"{'-':>6s}"
        tcol = f"{p:9.3f}" if torch.get(name) else f"{'-':>9s}"
        sp = f"{p / o:7.1f}x" if torch.get(name) else f"{'-':>8s}"
        bound = f"{p / f:6.1f}x" if torch.get(name) and floor.get(name) else f"{'-':>7s}"
        min_sp = f"{min(torch[name]) / min(ours[name]):6.1f}x" if torch.get(name) else f"{'-':>7s}"
        print(f"{method:14s} {size:14s} {o:9.3f} {kind(labels.get(name, '')):>12s} {fcol} {ratio} {tcol} {sp} {bound} "
              f"{min_sp} {worst:5.0%}{flag}")
EOF
