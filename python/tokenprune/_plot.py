"""tokenprune.plot: a picture of what a pruner kept (matplotlib; Debian: python3-matplotlib).

The same picture as the command-line tool's ``--picture`` (tools/picture.hpp): the patch grid with each token's
score as a colour scale and the dropped tokens dimmed, or, with ``image``, the photograph laid over the grid with
the dropped patches greyed out. matplotlib is imported only when ``plot`` is called, so ``import tokenprune`` does
not need it.
"""

from __future__ import annotations

import math

import numpy as _np

_DIM = 0.35    # dropped tokens, score picture: each channel times this (as the tool)
_GREY = 0.78   # dropped patches, photo picture: this light grey ...
_VEIL = 0.85   # ... laid over them with this opacity


def _error(argument, value, reason):
    from ._core import Error

    return Error(argument, str(value), reason)


def _panels(n, grid, video):
    """[(title, rows, cols, token indices [rows, cols], scale group)] for n tokens."""
    if video is not None:
        frames, rows, cols = (int(v) for v in video)
        if frames * rows * cols != n:
            raise _error("video", video, f"frames * rows * cols = {frames * rows * cols}, scores has {n} tokens")
        per = rows * cols
        return [(f"frame {t}", rows, cols, _np.arange(t * per, (t + 1) * per).reshape(rows, cols), 0)
                for t in range(frames)]
    if grid is not None and hasattr(grid, "grid_rows"):  # tokenprune.LlavaNext
        rows, cols, base = int(grid.grid_rows), int(grid.grid_cols), int(getattr(grid, "base_tokens", 576))
        side = math.isqrt(base)
        if base + rows * (cols + 1) != n:
            raise _error("grid", f"LlavaNext({rows}, {cols})",
                         f"needs {base} + R*(C+1) = {base + rows * (cols + 1)} tokens, scores has {n}")
        high = base + _np.arange(rows)[:, None] * (cols + 1) + _np.arange(cols)[None, :]  # newline tokens not drawn
        return [("base", side, side, _np.arange(base).reshape(side, side), 0),
                (f"high resolution {rows}x{cols}", rows, cols, high, 1)]
    if grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise _error("grid", "None", f"{n} tokens are not a square grid: give grid=(rows, cols), "
                                          "a tokenprune.LlavaNext or video=(frames, rows, cols)")
        rows = cols = side
    else:
        rows, cols = (int(v) for v in grid)
        if rows * cols != n:
            raise _error("grid", tuple(grid), f"has {rows * cols} cells, scores has {n} tokens")
    return [(None, rows, cols, _np.arange(n).reshape(rows, cols), 0)]


def _load_image(image):
    if isinstance(image, (str, bytes)) or hasattr(image, "__fspath__"):
        import matplotlib.image as mpimg

        image = mpimg.imread(image)
    a = _np.asarray(image)
    if a.ndim == 2:
        a = _np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise _error("image", a.shape, "must be [H, W], [H, W, 3] or [H, W, 4]")
    a = a[..., :3]
    if a.dtype.kind in "ui":
        a = a.astype(_np.float32) / 255.0
    return _np.clip(a.astype(_np.float32), 0.0, 1.0)


def plot(scores, kept, grid=None, image=None, ax=None, *, video=None, cmap="viridis", dim=_DIM, titles=True,
         colorbar=None):
    """Draws which tokens were kept.

    scores: per-token scores [n] (``pruner.scores``), or None (one colour). kept: the kept indices
    (``pruner.prune(...)``). grid: ``(rows, cols)``, a ``tokenprune.LlavaNext`` (base view and high-resolution
    grid side by side; the newline tokens are not drawn), or None for a square grid. video: ``(frames, rows,
    cols)``: the frames as a strip. image: a photograph (path, or [H, W(, 3|4)] array) laid over each grid, with the
    dropped patches greyed out; without it, the scores as a colour scale (``cmap``, linear between the 2nd and 98th
    percentile of the finite scores, per panel of a LlavaNext) with the dropped tokens dimmed (times ``dim``).
    ax: an Axes (one panel) or a sequence of Axes (one per panel); None makes a figure.

    Returns the Axes (a list of Axes when there are several panels).
    """
    import matplotlib.pyplot as plt
    from matplotlib import colormaps, colors

    kept = _np.asarray(kept, dtype=_np.int64).reshape(-1)
    if scores is None:
        if isinstance(grid, tuple) and len(grid) == 2:
            n = int(grid[0]) * int(grid[1])
        elif video is not None:
            n = int(_np.prod(video))
        elif grid is not None and hasattr(grid, "n_tokens"):
            n = int(grid.n_tokens)
        else:
            raise _error("scores", "None", "give the scores, or the token count through grid or video")
        scores = _np.zeros(n, dtype=_np.float32)
    if hasattr(scores, "detach"):  # torch
        scores = scores.detach().cpu().float().numpy()
    scores = _np.asarray(scores, dtype=_np.float32).reshape(-1)
    n = scores.size
    if kept.size and (kept.min() < 0 or kept.max() >= n):
        raise _error("kept", f"[{kept.min()}, {kept.max()}]", f"indices must be in [0, {n})")
    mask = _np.zeros(n, dtype=bool)
    mask[kept] = True
    panels = _panels(n, grid, video)

    if ax is None:
        widths = [p[2] / p[1] for p in panels]
        height = 4.0 if len(panels) <= 2 else 2.0
        fig, axes = plt.subplots(1, len(panels), figsize=(height * sum(widths) + 0.3 * len(panels), height),
                                 gridspec_kw={"width_ratios": widths}, squeeze=False)
        axes = list(axes[0])
    else:
        axes = list(ax) if isinstance(ax, (list, tuple, _np.ndarray)) else [ax]
        if len(axes) != len(panels):
            raise _error("ax", f"{len(axes)} Axes", f"this picture has {len(panels)} panels")
    photo = _load_image(image) if image is not None else None
    colour_map = colormaps[cmap] if isinstance(cmap, str) else cmap

    norms = {}
    for _, _, _, tokens, group in panels:
        values = scores[tokens.reshape(-1)]
        finite = values[_np.isfinite(values)]
        if group in norms:
            finite = _np.concatenate([norms[group], finite])
        norms[group] = finite
    for group, finite in norms.items():
        lo, hi = (float(_np.quantile(finite, 0.02)), float(_np.quantile(finite, 0.98))) if finite.size else (0.0, 0.0)
        norms[group] = colors.Normalize(lo, hi if hi > lo else lo + 1.0)

    for a, (title, rows, cols, tokens, group) in zip(axes, panels):
        keep = mask[tokens]
        if photo is not None:
            a.imshow(photo, extent=(0, cols, rows, 0), interpolation="antialiased")
            veil = _np.zeros((rows, cols, 4), dtype=_np.float32)
            veil[..., :3] = _GREY
            veil[..., 3] = _np.where(keep, 0.0, _VEIL)
            a.imshow(veil, extent=(0, cols, rows, 0), interpolation="nearest")
        else:
            values = scores[tokens]
            t = norms[group](_np.nan_to_num(values, nan=0.0, posinf=_np.inf, neginf=-_np.inf))
            rgba = colour_map(_np.clip(_np.ma.filled(t, 0.5), 0.0, 1.0))
            rgba[_np.isnan(values)] = (0.5, 0.5, 0.5, 1.0)
            rgba[..., :3] = _np.where(keep[..., None], rgba[..., :3], rgba[..., :3] * dim)
            a.imshow(rgba, extent=(0, cols, rows, 0), interpolation="nearest")
        a.set_xlim(0, cols)
        a.set_ylim(rows, 0)
        a.set_xticks([])
        a.set_yticks([])
        if titles:
            label = f"{int(keep.sum())}/{keep.size} kept"
            a.set_title(label if title is None else f"{title}: {label}", fontsize=9)
    if photo is None and (colorbar or (colorbar is None and ax is None)):
        fig = axes[0].figure
        for group in sorted(norms):
            members = [a for a, p in zip(axes, panels) if p[4] == group]
            fig.colorbar(plt.cm.ScalarMappable(norm=norms[group], cmap=colour_map), ax=members, shrink=0.8,
                         label="score" if len(norms) == 1 else f"score ({'base' if group == 0 else 'high-res'})")
    return axes[0] if len(axes) == 1 else axes
