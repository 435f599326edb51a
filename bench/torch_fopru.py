#!/usr/bin/env python3
"""FoPru rank (SPEC 2.3) as the reference computes it, in PyTorch (CPU), timed beside tokenprune's benchmark.

The op sequence, from [heads, n, n] attention maps (CLS removed) to the kept indices:
    m = maps.mean(dim=0)                      # mean over heads, n x n
    received, given = m.mean(dim=0), m.mean(dim=1)
    sig = received if received.var() > given.var() else given
    kept = sig.topk(k).indices.sort().values  # rank strategy, output ascending
fp16 maps: the means run in fp16 (PyTorch's CPU reductions accumulate in fp32 and round to fp16); topk has no
CPU fp16 kernel in PyTorch 1.13, so the significance is cast to fp32 for topk (n values, negligible).

    /usr/bin/python3 bench/torch_fopru.py --threads 1 --repeat 21            # one JSON line per dtype
    /usr/bin/python3 bench/torch_fopru.py --figures --bench build/fopru/tokenprune_bench --rounds 5
        # interleaved rounds: for each round, each thread count (1 2), each level (avx512 avx2, those this CPU
        # has) and dtype (f32 f16): tokenprune_bench's BM_FoPruRank and BM_ReadMaps (TOKENPRUNE_ISA,
        # OMP_NUM_THREADS) and PyTorch at the same thread count; medians over rounds, with min-max

Sizes: 16 heads x 576 x 576 (LLaVA-1.5's CLIP ViT-L/336 layer), ratio 0.5, like bench/bench_fopru.cpp's llava15
case. The maps are softmax probabilities (row-wise softmax of scaled Gaussian logits); the timings of both sides
do not depend on the values. Timing: one warm-up call, then the median of --repeat calls of the whole sequence
(maps already in memory as a tensor), under torch.inference_mode(), torch.set_num_threads(--threads).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

HEADS, SIDE = 16, 24


def fopru_rank(maps, k):
    m = maps.mean(dim=0)
    received, given = m.mean(dim=0), m.mean(dim=1)
    sig = received if received.var() > given.var() else given
    if sig.dtype != torch.float32:
        sig = sig.float()  # no CPU fp16 topk in PyTorch 1.13
    return sig.topk(k).indices.sort().values


def make_maps(dtype, seed=7):
    g = torch.Generator().manual_seed(seed)
    n = SIDE * SIDE
    logits = torch.randn(HEADS, n, n, generator=g) * 2.0
    return torch.softmax(logits, dim=-1).to(dtype).contiguous()


def time_torch(dtype, threads, repeat):
    torch.set_num_threads(threads)
    maps = make_maps(dtype)
    k = maps.shape[-1] // 2
    with torch.inference_mode():
        fopru_rank(maps, k)
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            kept = fopru_rank(maps, k)
            times.append((time.perf_counter() - t0) * 1e3)
    assert kept.numel() == k
    return statistics.median(times)


def run_bench(bench, isa, threads, min_time):
    env = dict(os.environ, TOKENPRUNE_ISA=isa, OMP_NUM_THREADS=str(threads))
    out = subprocess.run(
        [bench, "--benchmark_filter=^BM_(FoPruRank|ReadMaps)/llava15/(f32|f16)/",
         f"--benchmark_min_time={min_time}", "--benchmark_format=json"],
        env=env, check=True, capture_output=True, text=True).stdout
    result = {}
    for b in json.loads(out)["benchmarks"]:
        name = b["name"].replace("/real_time", "")
        result[name] = b["real_time"] * {"ms": 1.0, "us": 1e-3, "ns": 1e-6}[b["time_unit"]]
    return result


def figures(args):
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    flags = open("/proc/cpuinfo").read()
    levels = [isa for isa, flag in (("avx512", "avx512f"), ("avx2", "avx2")) if flag in flags]
    threads = [int(t) for t in args.thread_list.split()]
    samples = {}  # (threads, isa, dtype, what) -> [ms]
    for r in range(args.rounds):
        for t in threads:
            for isa in levels:
                bench = run_bench(args.bench, isa, t, args.min_time)
                for dtype in ("f32", "f16"):
                    samples.setdefault((t, isa, dtype, "ours"), []).append(bench[f"BM_FoPruRank/llava15/{dtype}"])
                    samples.setdefault((t, isa, dtype, "read"), []).append(bench[f"BM_ReadMaps/llava15/{dtype}"])
            for dtype, torch_dtype in (("f32", torch.float32), ("f16", torch.float16)):
                samples.setdefault((t, dtype, "torch"), []).append(time_torch(torch_dtype, t, args.repeat))
        print(f"round {r + 1}/{args.rounds} done (load average {os.getloadavg()[0]:.1f})", file=sys.stderr)

    def med(xs):
        return statistics.median(xs)

    print(f"FoPru rank, {HEADS} x {SIDE * SIDE} x {SIDE * SIDE} maps, ratio 0.5; CPU {cpu}, {os.cpu_count()} vCPU; "
          f"{args.rounds} interleaved rounds, medians (min-max over rounds); torch {torch.__version__}")
    print("thr  level   dtype  ours ms              read ms              ours/read          torch ms     "
          "torch/ours")
    rows = []
    for t in threads:
        for isa in levels:
            for dtype in ("f32", "f16"):
                ours, read = samples[(t, isa, dtype, "ours")], samples[(t, isa, dtype, "read")]
                tor = samples[(t, dtype, "torch")]
                ratios = [o / r for o, r in zip(ours, read)]
                vs_torch = [med(tor) / o for o in ours]
                print(f"{t:<4} {isa:<7} {dtype:<6} {med(ours):6.3f} ({min(ours):.3f}-{max(ours):.3f})  "
                      f"{med(read):6.3f} ({min(read):.3f}-{max(read):.3f})  "
                      f"{med(ratios):5.2f} ({min(ratios):.2f}-{max(ratios):.2f})  "
                      f"{med(tor):7.3f}      {med(vs_torch):5.2f} ({min(vs_torch):.2f}-{max(vs_torch):.2f})")
                rows.append(dict(threads=t, isa=isa, dtype=dtype, ours_ms=ours, read_ms=read, torch_ms=tor))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(cpu=cpu, rows=rows), f)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=21)
    p.add_argument("--figures", action="store_true", help="interleave with tokenprune_bench (--bench)")
    p.add_argument("--bench", default="build/fopru/tokenprune_bench")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--thread-list", default="1 2")
    p.add_argument("--min-time", default="0.2", help="--benchmark_min_time (seconds, no 's': benchmark 1.7.1)")
    p.add_argument("--json", help="write the raw samples here")
    args = p.parse_args()
    if args.figures:
        figures(args)
        return
    for name, dtype in (("f32", torch.float32), ("f16", torch.float16)):
        print(json.dumps(dict(method="fopru-rank", dtype=name, heads=HEADS, n=SIDE * SIDE, threads=args.threads,
                              select_ms=time_torch(dtype, args.threads, args.repeat))))


if __name__ == "__main__":
    main()
