"""The package's API: methods and the registry, construction, budgets, scores, outputs, layouts, gather, positions."""

import pickle

import numpy as np
import pytest

import tokenprune


def features(rng, n=64, d=32, dtype=np.float32):
    return rng.standard_normal((n, d)).astype(dtype)


def maps(rng, heads=4, n=64):
    logits = rng.standard_normal((heads, n, n)).astype(np.float32)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------------------------------------------------- registry

def test_methods_lists_the_registry():
    names = tokenprune.methods()
    assert isinstance(names, list) and names[:3] == ["gprune", "fopru-rank", "fopru-row"]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", tokenprune.methods())
def test_every_method_has_info_and_builds_with_defaults(name):
    info = tokenprune.method_info(name)
    assert info["name"] == name and info["summary"]
    assert info["inputs"], "a method reads at least one input"
    for p in info["parameters"]:
        assert set(p) == {"name", "default", "help", "sets_budget"}
    pruner = tokenprune.create(name)
    assert pruner.method == name
    assert pruner.inputs == info["inputs"]
    assert pruner.outputs == [o["name"] for o in info["outputs"]]
    assert name in repr(pruner)


def test_gprune_and_fopru_defaults_match_the_registry():
    import inspect

    defaults = {p["name"]: p["default"] for p in tokenprune.method_info("gprune")["parameters"]}
    sig = inspect.signature(tokenprune.GPrune)
    for name in ("threshold", "temperature", "iterations"):
        assert float(defaults[name]) == float(sig.parameters[name].default)
    fopru = {p["name"]: p["default"] for p in tokenprune.method_info("fopru-rank")["parameters"]}
    assert inspect.signature(tokenprune.FoPru).parameters["axis"].default == fopru["axis"]


def test_convenience_classes_are_pruners(rng):
    g = tokenprune.GPrune(threshold=0.6)
    assert isinstance(g, tokenprune.Pruner) and g.method == "gprune"
    assert g.parameters["threshold"] == 0.6
    assert tokenprune.FoPru().method == "fopru-rank"
    assert tokenprune.FoPru(strategy="row", axis="given").method == "fopru-row"
    x = features(rng)
    np.testing.assert_array_equal(g.prune(x, keep=10), tokenprune.create("gprune", threshold=0.6).prune(x, keep=10))


@pytest.mark.parametrize("cls,method", [
    ("DivPrune", "divprune"), ("ClsAttention", "cls-attention"), ("CDPruner", "cdpruner"),
    ("VisionZip", "visionzip"), ("VisPruner", "vispruner"), ("EVS", "evs"), ("DART", "dart")])
def test_later_method_classes(cls, method):
    klass = getattr(tokenprune, cls)
    if method in tokenprune.methods():
        assert klass().method == method
    else:
        with pytest.raises(tokenprune.Error) as e:
            klass()
        assert e.value.argument == "method" and e.value.value == method


def test_unknown_method_and_parameters():
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.create("nope")
    assert (e.value.argument, e.value.value) == ("method", "nope")
    assert "gprune" in e.value.reason
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.create("gprune", bogus=1)
    assert e.value.argument == "bogus" and "threshold" in e.value.reason
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.GPrune(threshold=1.5).prune(np.ones((4, 2), np.float32), keep=1)
    assert e.value.argument == "threshold"
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.FoPru(strategy="column")
    assert e.value.argument == "strategy"
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.FoPru(axis="sideways")
    assert e.value.argument == "axis"
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.create("gprune", iterations=2.5)
    assert e.value.argument == "iterations"
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.create("gprune", threshold=[0.5])
    assert e.value.argument == "threshold"


def test_parameter_kinds():
    # text that parses, numpy scalars, None for the default
    a = tokenprune.create("gprune", threshold="0.6", iterations=np.int64(3), temperature=np.float32(0.05))
    b = tokenprune.create("gprune", threshold=0.6, iterations=3, temperature=float(np.float32(0.05)))
    x = np.random.default_rng(1).standard_normal((40, 8)).astype(np.float32)
    np.testing.assert_array_equal(a.prune(x, keep=7), b.prune(x, keep=7))
    np.testing.assert_array_equal(a.scores, b.scores)
    c = tokenprune.create("gprune", threshold=None)
    np.testing.assert_array_equal(c.prune(x, keep=7), tokenprune.GPrune().prune(x, keep=7))


def test_error_is_a_value_error_with_fields():
    assert issubclass(tokenprune.Error, ValueError)
    with pytest.raises(ValueError) as e:
        tokenprune.GPrune().prune(np.ones((6, 2), np.float32), keep=7)
    err = e.value
    assert isinstance(err, tokenprune.Error)
    assert (err.argument, err.value) == ("keep", "7")
    assert err.reason == "must be in [0, n_tokens] = [0, 6]"
    assert str(err) == "tokenprune: keep = 7: must be in [0, n_tokens] = [0, 6]"
    again = pickle.loads(pickle.dumps(err))
    assert (again.argument, again.value, again.reason, str(again)) == (err.argument, err.value, err.reason, str(err))


# ---------------------------------------------------------------------------------------------- budgets

def test_prune_result_and_kept_count(rng):
    x = features(rng, 100, 16)
    g = tokenprune.GPrune()
    for keep, ratio in [(0, None), (1, None), (37, None), (100, None), (None, 0.0), (None, 0.25), (None, 1.0)]:
        kept = g.prune(x, keep=keep, ratio=ratio)
        assert kept.dtype == np.int64 and kept.ndim == 1 and kept.flags.c_contiguous
        assert np.all(np.diff(kept) > 0)
        assert len(kept) == g.kept_count(100, keep=keep, ratio=ratio)
        assert kept.min(initial=0) >= 0 and kept.max(initial=0) < 100
    assert g.kept_count(100, ratio=0.333) == 33  # floor(r * n)
    s = g.scores
    assert s.dtype == np.float32 and s.shape == (100,)
    top = np.lexsort((np.arange(100), -s))[:37]  # descending score, lower index first
    np.testing.assert_array_equal(g.prune(x, keep=37), np.sort(top))


def test_fopru_row_kept_count_needs_the_grid(rng):
    f = tokenprune.FoPru(strategy="row")
    a = maps(rng, 2, 48)
    assert f.kept_count(48, keep=20, grid=(6, 8)) == 16
    kept = f.prune(attention=a, keep=20, grid=(6, 8))
    assert len(kept) == 16 and len(np.unique(kept // 8)) == 2
    with pytest.raises(tokenprune.Error):
        f.kept_count(48, keep=20)  # 48 is not a square
    assert f.kept_count(64, keep=20) == 16  # square grid assumed


@pytest.mark.parametrize("kwargs,argument", [
    (dict(), "keep"),
    (dict(keep=3, ratio=0.5), "keep"),
    (dict(keep=-1), "keep"),
    (dict(keep=17), "keep"),
    (dict(keep=2.0), "keep"),
    (dict(keep=True), "keep"),
    (dict(keep="3"), "keep"),
    (dict(ratio=1.5), "ratio"),
    (dict(ratio=-0.1), "ratio"),
    (dict(ratio=float("nan")), "ratio"),
    (dict(ratio="half"), "ratio"),
])
def test_budget_errors(rng, kwargs, argument):
    g = tokenprune.GPrune()
    with pytest.raises(tokenprune.Error) as e:
        g.prune(features(rng, 16, 4), **kwargs)
    assert e.value.argument == argument
    if kwargs:
        with pytest.raises(tokenprune.Error) as e:
            g.kept_count(16, **kwargs)
        assert e.value.argument == argument


def test_kept_count_errors():
    g = tokenprune.GPrune()
    with pytest.raises(tokenprune.Error) as e:
        g.kept_count(keep=3)
    assert e.value.argument == "n_tokens"
    with pytest.raises(tokenprune.Error) as e:
        g.kept_count(-1, keep=0)
    assert e.value.argument == "n_tokens"
    with pytest.raises(tokenprune.Error) as e:
        g.kept_count(10, keep=3, grid=(3,))
    assert e.value.argument == "grid"


def test_fopru_inputs_agree(rng):
    a = maps(rng, 4, 64)
    f = tokenprune.FoPru()
    kept = f.prune(attention=a, keep=16)
    sig = f.scores.copy()
    # the ranked values as a significance vector give the same selection
    np.testing.assert_array_equal(tokenprune.FoPru().prune(significance=sig, keep=16), kept)
    assert f.chosen_axis in ("received", "given")
    assert tokenprune.GPrune().chosen_axis is None
    with pytest.raises(tokenprune.Error) as e:
        f.prune(keep=1)
    assert e.value.argument == "inputs"
    with pytest.raises(tokenprune.Error) as e:
        f.prune(features=features(rng, 64, 8), keep=1)
    assert e.value.argument == "attention"


def test_query_keys_match_maps(rng):
    heads, n, hd = 4, 36, 16
    q = rng.standard_normal((heads, n + 1, hd)).astype(np.float32)
    k = rng.standard_normal((heads, n + 1, hd)).astype(np.float32)
    logits = np.einsum("hid,hjd->hij", q.astype(np.float64), k.astype(np.float64)) / np.sqrt(hd)
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    p = p.astype(np.float32)
    by_maps = tokenprune.FoPru(axis="received").prune(attention=p[:, 1:, 1:], keep=9)
    f = tokenprune.FoPru(axis="received")
    by_qk = f.prune(queries=q, keys=k, skip_tokens=1, keep=9)
    np.testing.assert_array_equal(by_qk, by_maps)
    # fused [tokens, heads * head_dim] layout (strided heads) gives the same
    qf = np.ascontiguousarray(q.transpose(1, 0, 2)).reshape(n + 1, heads * hd)
    kf = np.ascontiguousarray(k.transpose(1, 0, 2)).reshape(n + 1, heads * hd)
    np.testing.assert_array_equal(f.prune(queries=qf, keys=kf, heads=heads, skip_tokens=1, keep=9), by_qk)
    seen = f.last_inputs
    assert seen["queries"]["data"] == qf.ctypes.data and seen["keys"]["data"] == kf.ctypes.data
    # [tokens, heads, hd] transposed to [heads, tokens, hd]: a strided view
    q3 = qf.reshape(n + 1, heads, hd).transpose(1, 0, 2)
    k3 = kf.reshape(n + 1, heads, hd).transpose(1, 0, 2)
    np.testing.assert_array_equal(f.prune(queries=q3, keys=k3, skip_tokens=1, keep=9), by_qk)
    # raw logits: closed form
    lg = (logits.astype(np.float32))[:, 1:, 1:]
    np.testing.assert_array_equal(
        tokenprune.FoPru(axis="received").prune(queries=q, keys=k, skip_tokens=1, softmax=False, keep=9),
        tokenprune.FoPru(axis="received").prune(attention=np.ascontiguousarray(lg), keep=9))


def test_query_keys_errors(rng):
    q = rng.standard_normal((2, 10, 4)).astype(np.float32)
    f = tokenprune.FoPru()
    with pytest.raises(tokenprune.Error) as e:
        f.prune(queries=q, keep=1)
    assert e.value.argument == "keys"
    with pytest.raises(tokenprune.Error) as e:
        f.prune(keys=q, keep=1)
    assert e.value.argument == "queries"
    with pytest.raises(tokenprune.Error) as e:
        f.prune(queries=q[0], keys=q[0], keep=1)
    assert e.value.argument == "heads"
    with pytest.raises(tokenprune.Error) as e:
        f.prune(queries=q[0], keys=q[0], heads=3, keep=1)
    assert e.value.argument == "heads"
    with pytest.raises(tokenprune.Error) as e:
        f.prune(queries=q, keys=q, heads=3, keep=1)
    assert e.value.argument == "heads"
    with pytest.raises(tokenprune.Error) as e:
        f.prune(queries=q, keys=q, skip_tokens=-1, keep=1)
    assert e.value.argument == "skip_tokens"


# ---------------------------------------------------------------------------------------------- outputs

def test_output_errors(rng):
    g = tokenprune.GPrune()
    g.prune(features(rng), keep=3)
    with pytest.raises(tokenprune.Error) as e:
        g.output("merged")
    assert e.value.argument == "output" and e.value.value == "merged"


# ---------------------------------------------------------------------------------------------- layouts

def test_llava_next_layout(rng):
    layout = tokenprune.LlavaNext(4, 6, 0.5, base_tokens=16)
    assert layout.n_tokens == 16 + 4 * 7
    assert (layout.grid_rows, layout.grid_cols, layout.ratio, layout.base_tokens) == (4, 6, 0.5, 16)
    assert "LlavaNext" in repr(layout)
    x = features(rng, layout.n_tokens, 8)
    g = tokenprune.GPrune()
    kept = g.prune(x, layout=layout)
    assert len(kept) == g.kept_count(layout=layout) == 8 + 12 + 4
    newlines = [16 + r * 7 + 6 for r in range(4)]
    assert set(newlines) <= set(kept.tolist())
    np.testing.assert_array_equal(kept[kept < 16], tokenprune.GPrune().prune(x[:16], ratio=0.5))
    assert np.isinf(g.scores[newlines]).all() and (g.scores[newlines] > 0).all()
    assert g.kept_count(layout.n_tokens, layout=layout) == len(kept)
    with pytest.raises(tokenprune.Error) as e:
        g.kept_count(5, layout=layout)
    assert e.value.argument == "n_tokens"
    with pytest.raises(tokenprune.Error) as e:
        g.prune(x, layout=layout, keep=3)
    assert e.value.argument == "keep"
    with pytest.raises(tokenprune.Error) as e:
        g.prune(x[:-1], layout=layout)
    assert e.value.argument == "layout.n_tokens"
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.LlavaNext(2, 2, 1.5)
    assert e.value.argument == "ratio"
    with pytest.raises(tokenprune.Error) as e:
        g.prune(x, layout="llava")
    assert e.value.argument == "layout"


def test_segments_per_image_budgets_and_always_kept(rng):
    # text(3) imageA(16) text(2) imageB(9) text(1): per-image budgets, text always kept
    a = list(range(3, 19))
    b = list(range(21, 30))
    text = [0, 1, 2, 19, 20, 30]
    layout = tokenprune.Segments(31, [tokenprune.Segment(a, ratio=0.25), tokenprune.Segment(b, keep=5)],
                                 always_keep=text)
    assert layout.n_tokens == 31 and layout.segments[1].keep == 5 and layout.segments[0].ratio == 0.25
    x = features(rng, 31, 8)
    g = tokenprune.GPrune()
    kept = g.prune(x, layout=layout)
    assert len(kept) == g.kept_count(layout=layout) == 4 + 5 + 6
    np.testing.assert_array_equal(kept[(kept >= 3) & (kept < 19)], 3 + tokenprune.GPrune().prune(x[3:19], ratio=0.25))
    np.testing.assert_array_equal(kept[(kept >= 21) & (kept < 30)], 21 + tokenprune.GPrune().prune(x[21:30], keep=5))
    # a token in no segment is dropped and scores -inf
    layout2 = tokenprune.Segments(31, [tokenprune.Segment(a, keep=2)], always_keep=[0])
    kept2 = g.prune(x, layout=layout2)
    assert len(kept2) == 3 and g.scores[30] == -np.inf
    # a non-contiguous segment of features is gathered by the library
    layout3 = tokenprune.Segments(31, [tokenprune.Segment(np.arange(0, 31, 2), keep=4)])
    kept3 = g.prune(x, layout=layout3)
    np.testing.assert_array_equal(kept3, 2 * tokenprune.GPrune().prune(np.ascontiguousarray(x[::2]), keep=4))
    # FoPru per segment on contiguous attention blocks
    att = maps(rng, 2, 31)
    f = tokenprune.FoPru()
    kept4 = f.prune(attention=att, layout=layout)
    np.testing.assert_array_equal(kept4[(kept4 >= 3) & (kept4 < 19)],
                                  3 + tokenprune.FoPru().prune(attention=att[:, 3:19, 3:19], ratio=0.25))


def test_segment_errors(rng):
    x = features(rng, 10, 4)
    g = tokenprune.GPrune()
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.Segment([0, 1])
    assert e.value.argument == "keep"
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.Segment([0, 1], keep=1, ratio=0.5)
    assert e.value.argument == "keep"
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.Segment([0.5, 1], keep=1)
    assert e.value.argument == "tokens"
    with pytest.raises(tokenprune.Error) as e:
        g.prune(x, layout=tokenprune.Segments(10, [tokenprune.Segment([1, 0], keep=1)]))
    assert e.value.argument == "segment.tokens"
    with pytest.raises(tokenprune.Error) as e:
        g.prune(x, layout=tokenprune.Segments(10, [tokenprune.Segment([0, 1], keep=1)], always_keep=[1]))
    assert e.value.argument == "always_keep"
    with pytest.raises(tokenprune.Error) as e:
        g.prune(x, layout=tokenprune.Segments(10, [tokenprune.Segment([0, 10], keep=1)]))
    assert e.value.argument == "segment.tokens"
    with pytest.raises(tokenprune.Error) as e:
        g.prune(x, layout=tokenprune.Segments(10, [tokenprune.Segment([0, 1], keep=3)]))
    assert e.value.argument == "keep"
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.Segments(-1, [])
    assert e.value.argument == "n_tokens"


# ---------------------------------------------------------------------------------------------- gather, positions

def test_gather_rows_numpy_and_torch(rng):
    torch = pytest.importorskip("torch")
    wide = features(rng, 20, 12)
    x = wide[:, :8]  # row stride 12
    kept = np.array([1, 4, 19])
    got = tokenprune.gather_rows(x, kept)
    assert got.dtype == np.float32 and got.shape == (3, 8)
    np.testing.assert_array_equal(got, x[kept])
    h = x.astype(np.float16)
    np.testing.assert_array_equal(tokenprune.gather_rows(h, kept), h[kept])
    t = torch.from_numpy(np.ascontiguousarray(x)).to(torch.bfloat16)
    tb = tokenprune.gather_rows(t, torch.tensor([1, 4, 19]))
    assert tb.dtype == torch.bfloat16 and torch.equal(tb, t[[1, 4, 19]])
    out = np.zeros((3, 16), np.float32)[:, :8]  # into a strided caller buffer
    assert tokenprune.gather_rows(x, kept, out=out) is out
    np.testing.assert_array_equal(out, x[kept])
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.gather_rows(x, kept, out=np.zeros((3, 8), np.float16))
    assert e.value.argument == "out.dtype"
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.gather_rows(x, kept, out=np.zeros((2, 8), np.float32))
    assert e.value.argument == "out.shape"
    ro = np.zeros((3, 8), np.float32)
    ro.flags.writeable = False
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.gather_rows(x, kept, out=ro)
    assert e.value.argument == "out"
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.gather_rows(x, [4, 1])
    assert e.value.argument == "kept"
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.gather_rows(x, [20])
    assert e.value.argument == "kept"


def test_positions():
    pos, nxt = tokenprune.original_positions([1, 3], [5, 6, 7, 8])
    assert pos.tolist() == [6, 8] and nxt == 9
    pos, nxt = tokenprune.compacted_positions(3, start=10)
    assert pos.tolist() == [10, 11, 12] and nxt == 13
    # a 2 x 3 grid at t = 0; keep columns 0 and 2 of both rows
    mrope = np.stack([np.zeros(6, np.int64), np.repeat(np.arange(2), 3), np.tile(np.arange(3), 2)]) + 4
    kept = [0, 2, 3, 5]
    orig, nxt = tokenprune.original_mrope_positions(kept, mrope)
    assert orig.shape == (3, 4) and orig[2].tolist() == [4, 6, 4, 6] and nxt == 7
    comp, nxt = tokenprune.compacted_mrope_positions(kept, mrope)
    assert comp[2].tolist() == [4, 5, 4, 5] and comp[1].tolist() == [4, 4, 5, 5] and nxt == 6
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.original_positions([3, 1], [0, 1, 2, 3])
    assert e.value.argument == "kept"
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.original_mrope_positions(kept, mrope[:2])
    assert e.value.argument == "positions.shape"
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.compacted_positions(-1)
    assert e.value.argument == "count"


def test_isa_controls():
    levels = tokenprune.supported_isas().split()
    assert "portable" in levels and tokenprune.active_isa() in levels
    with pytest.raises(tokenprune.Error) as e:
        tokenprune.set_isa("sse9")
    assert e.value.argument == "isa"
