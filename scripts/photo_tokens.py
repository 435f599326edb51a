#!/usr/bin/env python3
"""Visual tokens from a real photograph's patches, as a float32 .npy for `tokenprune prune --features`.

Each token is one 14x14-pixel patch (CLIP ViT-L/14's patch size): its 588 RGB values in [0, 1], minus the
image's mean patch, times a fixed random Gaussian projection to --dim values (seed 0, scaled by 1/sqrt(dim)),
so that cosine similarity between tokens (G-Prune's graph) follows the photo's real structure: patches of the
sky, the suit or the flag look alike, edges and faces stand out.

    photo_tokens.py --image astronaut.png --out F.npy                        # flat: 336x336 resize, 24x24 = 576 tokens
    photo_tokens.py --image astronaut.png --out F.npy --layout llava-next    # 576 base tokens (336x336) + the
        # high-resolution grid of a 672x672 resize (48x48 patches), each grid row closed by one newline token
        # (a fixed random vector, as LLaVA-NeXT's learned image_newline): 576 + 48 * 49 = 2928 tokens

Needs numpy and scikit-image (Debian: python3-numpy python3-skimage; the photo: skimage/data/astronaut.png).
"""
import argparse

import numpy as np

PATCH = 14


def load(path):
    from skimage import io

    img = io.imread(path)
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = img[..., :3]
    return img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0)


def resized(img, side_rows, side_cols):
    from skimage.transform import resize

    return resize(img, (side_rows, side_cols), order=1, anti_aliasing=True).astype(np.float32)


def patches(img):
    rows, cols = img.shape[0] // PATCH, img.shape[1] // PATCH
    p = img[:rows * PATCH, :cols * PATCH].reshape(rows, PATCH, cols, PATCH, 3).transpose(0, 2, 1, 3, 4)
    return p.reshape(rows * cols, PATCH * PATCH * 3), rows, cols


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--layout", choices=["flat", "llava-next"], default="flat")
    ap.add_argument("--dim", type=int, default=256)
    args = ap.parse_args()

    img = load(args.image)
    rng = np.random.default_rng(0)
    projection = rng.standard_normal((PATCH * PATCH * 3, args.dim)).astype(np.float32) / np.sqrt(args.dim)
    base, _, _ = patches(resized(img, 24 * PATCH, 24 * PATCH))
    mean = base.mean(axis=0)
    tokens = [(base - mean) @ projection]
    grid = ""
    if args.layout == "llava-next":
        high, rows, cols = patches(resized(img, 48 * PATCH, 48 * PATCH))
        high = (high - mean) @ projection
        newline = rng.standard_normal(args.dim).astype(np.float32)
        for r in range(rows):
            tokens += [high[r * cols:(r + 1) * cols], newline[None, :]]
        grid = f", high-resolution grid {rows}x{cols}"
    x = np.ascontiguousarray(np.concatenate(tokens), dtype=np.float32)
    np.save(args.out, x)
    print(f"{args.out}: {x.shape[0]} x {x.shape[1]} float32 ({args.layout}{grid})")


if __name__ == "__main__":
    main()
