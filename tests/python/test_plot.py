"""tokenprune.plot: the picture of what was kept (matplotlib, Debian python3-matplotlib).

Skipped when matplotlib is not installed, except with CI=true, where it must be there.
"""

import os

import numpy as np
import pytest

import tokenprune

if os.environ.get("CI") == "true":
    import matplotlib  # noqa: F401  (CI must have python3-matplotlib)
else:
    pytest.importorskip("matplotlib")

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def features(n, dim=16, seed=0):
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def pruned(n, keep, seed=0):
    g = tokenprune.GPrune()
    kept = g.prune(features=features(n, seed=seed), keep=keep)
    return g.scores.copy(), kept


def panel_rgba(ax):
    return np.asarray(ax.images[0].get_array(), dtype=np.float64)


def test_scores_as_colours_and_dropped_dimmed():
    scores, kept = pruned(16, 4)
    full = panel_rgba(tokenprune.plot(scores, np.arange(16), grid=(4, 4)))
    ax = tokenprune.plot(scores, kept, grid=(4, 4))
    part = panel_rgba(ax)
    assert part.shape == (4, 4, 4)
    mask = np.zeros(16, dtype=bool)
    mask[kept] = True
    mask = mask.reshape(4, 4)
    np.testing.assert_allclose(part[mask], full[mask])                             # kept: as they are
    np.testing.assert_allclose(part[~mask][:, :3], 0.35 * full[~mask][:, :3])      # dropped: dimmed
    # The colour follows the score: the highest-scoring token is the brightest of the full picture.
    lum = full[..., :3] @ np.array([0.299, 0.587, 0.114])
    assert np.argmax(lum.reshape(-1)) == np.argmax(scores)
    assert ax.get_title() == "4/16 kept"
    assert len(ax.figure.axes) == 2  # the panel and its colour bar


def test_square_grid_by_default_and_ax_given():
    scores, kept = pruned(36, 9)
    fig, ax = plt.subplots()
    assert tokenprune.plot(scores, kept, ax=ax) is ax
    assert panel_rgba(ax).shape == (6, 6, 4)
    assert len(fig.axes) == 1  # no colour bar unless asked for, on an Axes the caller made


def test_image_dropped_patches_greyed_out():
    scores, kept = pruned(16, 4, seed=3)
    h = w = 64
    photo = np.zeros((h, w, 3), dtype=np.uint8)
    photo[..., 0] = np.linspace(40, 240, w, dtype=np.uint8)[None, :]
    photo[..., 1] = 30
    photo[..., 2] = 200
    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    fig.subplots_adjust(0, 0, 1, 1)
    tokenprune.plot(scores, kept, grid=(4, 4), image=photo, ax=ax, titles=False)
    assert len(ax.images) == 2  # the photo, then the veil over the dropped patches
    veil = np.asarray(ax.images[1].get_array())
    mask = np.zeros(16, dtype=bool)
    mask[kept] = True
    assert np.all(veil[..., 3].reshape(-1)[mask] == 0.0)
    assert np.all(veil[..., 3].reshape(-1)[~mask] > 0.5)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    for t in range(16):
        r, c = divmod(t, 4)
        x, y = ax.transData.transform((c + 0.5, r + 0.5))
        px = pixels[pixels.shape[0] - 1 - int(round(y)), int(round(x))]
        if mask[t]:
            assert px[2] > px[1] + 100, (t, px)        # the photo's colour
        else:
            assert px.max() - px.min() < 40, (t, px)   # grey
            assert px.min() > 150, (t, px)             # and light


def test_image_from_a_path(tmp_path):
    scores, kept = pruned(16, 8)
    path = tmp_path / "photo.png"
    plt.imsave(path, np.random.default_rng(1).random((20, 30, 3)))
    ax = tokenprune.plot(scores, kept, grid=(4, 4), image=str(path))
    assert len(ax.images) == 2


def test_llava_next_base_and_high_resolution_side_by_side():
    layout = tokenprune.LlavaNext(2, 3, 0.5)
    g = tokenprune.GPrune()
    kept = g.prune(features=features(layout.n_tokens), layout=layout)
    axes = tokenprune.plot(g.scores, kept, grid=layout)
    assert len(axes) == 2
    assert panel_rgba(axes[0]).shape == (24, 24, 4)
    assert panel_rgba(axes[1]).shape == (2, 3, 4)  # the newline token after each row is not drawn
    assert axes[0].get_title() == "base: 288/576 kept"
    assert axes[1].get_title() == "high resolution 2x3: 3/6 kept"


def test_video_frames_as_a_strip():
    scores = np.arange(3 * 2 * 2, dtype=np.float32)
    axes = tokenprune.plot(scores, [0, 5, 11], video=(3, 2, 2))
    assert len(axes) == 3
    assert [a.get_title() for a in axes] == ["frame 0: 1/4 kept", "frame 1: 1/4 kept", "frame 2: 1/4 kept"]


def test_errors():
    scores, kept = pruned(16, 4)
    with pytest.raises(tokenprune.Error, match="not a square grid"):
        tokenprune.plot(np.zeros(15, np.float32), [1])
    with pytest.raises(tokenprune.Error, match="has 6 cells"):
        tokenprune.plot(scores, kept, grid=(2, 3))
    with pytest.raises(tokenprune.Error, match="indices must be in"):
        tokenprune.plot(scores, [16], grid=(4, 4))
    with pytest.raises(tokenprune.Error, match="panels"):
        _, axes = plt.subplots(1, 2)
        tokenprune.plot(scores, kept, ax=axes)
    with pytest.raises(tokenprune.Error, match="image"):
        tokenprune.plot(scores, kept, image=np.zeros((4, 4, 2)))
    with pytest.raises(tokenprune.Error, match="LlavaNext"):
        tokenprune.plot(scores, kept, grid=tokenprune.LlavaNext(2, 3, 0.5))
