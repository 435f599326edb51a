#!/usr/bin/env python3
"""The published G-Prune computation in PyTorch, timed: the baseline tokenprune is compared against.

Same op sequence as the authors' code (SPEC 2.2), fp32 on CPU:
    w = ||x||;  u = F.normalize(x);  s = u @ u.T
    P = softmax(where(s >= tau, s / T, -5000), dim=-1);  degree = (P > 0).sum(-1)
    score = (w @ torch.linalg.matrix_power(P, m)) / degree;  keep topk(score, k), ascending
on the LLaVA-NeXT anyres layout: two graphs (the 576 base tokens, the R*C grid tokens without newlines), each
keeping floor(ratio * size); newline tokens always kept.

    /usr/bin/python3 bench/torch_reference.py --features F.npy --grid 48x48 --threads 2 --repeat 5
    /usr/bin/python3 bench/torch_reference.py --seed 1 --grid 48x48 --dim 4096      # generate the data instead

Prints one JSON line: {"impl": "torch", "threads": N, "select_ms": median over --repeat, ...}. The time covers
both graphs and the union (from the feature tensor in memory to the kept indices), after one warm-up call.
Needs python3-torch (Debian) and numpy; not used by CI.
"""
import argparse
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def gprune(x, k, tau, temperature, iterations):
    w = torch.norm(x, dim=-1)
    u = F.normalize(x, dim=-1)
    s = u @ u.T
    logits = torch.where(s >= tau, s / temperature, torch.tensor(-5000.0, dtype=s.dtype))
    p = torch.softmax(logits, dim=-1)
    degree = (p > 0).sum(dim=-1)
    v = w @ torch.linalg.matrix_power(p, iterations)
    score = v / degree
    return torch.topk(score, k).indices.sort().values


def select_next(x, base, grid_rows, grid_cols, ratio, tau, temperature, iterations):
    n = x.shape[0]
    grid_idx = torch.tensor([base + r * (grid_cols + 1) + c for r in range(grid_rows) for c in range(grid_cols)])
    newline_idx = torch.tensor([base + r * (grid_cols + 1) + grid_cols for r in range(grid_rows)], dtype=torch.long)
    assert n == base + grid_rows * (grid_cols + 1), f"{n} tokens do not match the layout"
    kept_base = gprune(x[:base], int(np.floor(ratio * base)), tau, temperature, iterations)
    kept_grid = grid_idx[gprune(x[grid_idx], int(np.floor(ratio * grid_rows * grid_cols)), tau, temperature, iterations)]
    return torch.cat([kept_base, kept_grid, newline_idx]).sort().values


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--features", help=".npy [n, d] float32 (default: generate with --seed)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dim", type=int, default=4096, help="with --seed: feature width")
    ap.add_argument("--grid", default="48x48", help="LLaVA-NeXT high-resolution grid RxC")
    ap.add_argument("--base", type=int, default=576, help="base-view tokens")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--temperature", type=float, default=0.03)
    ap.add_argument("--iterations", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--print-indices", action="store_true", help="add the kept indices to the JSON line")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    grid_rows, grid_cols = (int(v) for v in args.grid.lower().split("x"))
    if args.features:
        array = np.load(args.features)
    else:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from make_features import llava_next_features
        array = llava_next_features(args.seed, grid_rows, grid_cols, args.dim, base_side=int(round(args.base ** 0.5)))
    x = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    def run():
        return select_next(x, args.base, grid_rows, grid_cols, args.ratio, args.threshold, args.temperature,
                           args.iterations)

    times = []
    with torch.inference_mode():
        kept = run()  # warm-up
        for _ in range(args.repeat):
            start = time.perf_counter()
            kept = run()
            times.append((time.perf_counter() - start) * 1e3)
    out = {
        "impl": "torch",
        "threads": args.threads,
        "select_ms": statistics.median(times),
        "select_ms_min": min(times),
        "select_ms_max": max(times),
        "repeat": args.repeat,
        "n_tokens": int(x.shape[0]),
        "dim": int(x.shape[1]),
        "kept": int(kept.numel()),
        "torch": torch.__version__,
    }
    if args.print_indices:
        out["kept_indices"] = kept.tolist()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
