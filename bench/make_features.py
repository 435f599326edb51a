#!/usr/bin/env python3
"""Synthetic, image-like visual-token features as a float32 .npy (numpy only).

Same recipe as bench/bench_data.hpp (not bit-identical: numpy's generator, not ours): each image is a common
component + a coarse and a fine smooth random field (bilinearly interpolated Gaussian control vectors) + noise,
times a log-normal amplitude, with about one token in 200 replaced by a high-norm "artifact" token; so G-Prune's
graph at tau 0.5 has a realistic edge density (each token links to a few dozen neighbours).

    make_features.py --out F.npy --layout llava-next --grid 48x48 --dim 4096    # 576 + 48*(48+1) = 2928 x 4096
    make_features.py --out F.npy --layout flat --side 24 --dim 1024             # 576 x 1024

Used by bench/run_figures.sh (tool, torch reference and tokenprune read the same file) and importable by
bench/torch_reference.py. Not needed by CI.
"""
import argparse

import numpy as np


def smooth_field(rng, rows, cols, dim, spacing):
    cr = int(np.ceil(rows / spacing)) + 2
    cc = int(np.ceil(cols / spacing)) + 2
    control = rng.standard_normal((cr, cc, dim), dtype=np.float32)
    y = np.arange(rows) / spacing
    x = np.arange(cols) / spacing
    y0, x0 = y.astype(int), x.astype(int)
    fy, fx = (y - y0).astype(np.float32)[:, None], (x - x0).astype(np.float32)[None, :]
    w = np.stack([(1 - fy) * (1 - fx), (1 - fy) * fx, fy * (1 - fx), fy * fx])  # 4 x rows x cols
    w /= np.sqrt((w * w).sum(0, keepdims=True))  # keep unit variance per component
    field = (w[0][..., None] * control[y0][:, x0] + w[1][..., None] * control[y0][:, x0 + 1]
             + w[2][..., None] * control[y0 + 1][:, x0] + w[3][..., None] * control[y0 + 1][:, x0 + 1])
    return field.reshape(rows * cols, dim)


def image_features(rng, rows, cols, dim, common=0.55, coarse=0.75, fine=0.45, noise=0.50, amplitude_sigma=0.35,
                   artifact_norm=12.0, artifact_every=200):
    n = rows * cols
    c = rng.standard_normal(dim, dtype=np.float32)
    artifact = rng.standard_normal(dim, dtype=np.float32)
    x = noise * rng.standard_normal((n, dim), dtype=np.float32)
    x += common * c
    x += coarse * smooth_field(rng, rows, cols, dim, 7.0)
    x += fine * smooth_field(rng, rows, cols, dim, 2.5)
    x *= np.exp(amplitude_sigma * rng.standard_normal((n, 1))).astype(np.float32)
    mean_norm = np.linalg.norm(x, axis=1).mean()
    for t in rng.integers(0, n, size=max(1, n // artifact_every)):
        v = artifact + 0.4 * rng.standard_normal(dim, dtype=np.float32)
        x[t] = v * (artifact_norm * mean_norm / np.linalg.norm(v))
    return x


def llava_next_features(seed, grid_rows, grid_cols, dim, base_side=24):
    """[base_side^2 base tokens] + for each grid row: [grid_cols tokens, 1 newline token]."""
    rng = np.random.default_rng(seed)
    base = image_features(rng, base_side, base_side, dim)
    grid = image_features(rng, grid_rows, grid_cols, dim)
    newline = rng.standard_normal(dim, dtype=np.float32)
    parts = [base]
    for r in range(grid_rows):
        parts.append(grid[r * grid_cols:(r + 1) * grid_cols])
        parts.append((newline + 0.01 * rng.standard_normal(dim, dtype=np.float32))[None, :])
    return np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)


def flat_features(seed, side, dim):
    return np.ascontiguousarray(image_features(np.random.default_rng(seed), side, side, dim), dtype=np.float32)


def parse_grid(text):
    rows, cols = text.lower().split("x")
    return int(rows), int(cols)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--layout", choices=["llava-next", "flat"], default="llava-next")
    ap.add_argument("--grid", default="48x48", help="llava-next high-resolution grid RxC")
    ap.add_argument("--side", type=int, default=24, help="flat: side x side tokens")
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.layout == "llava-next":
        x = llava_next_features(args.seed, *parse_grid(args.grid), args.dim)
    else:
        x = flat_features(args.seed, args.side, args.dim)
    np.save(args.out, x)
    print(f"{args.out}: {x.shape[0]} x {x.shape[1]} float32")


if __name__ == "__main__":
    main()
