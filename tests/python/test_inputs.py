"""Inputs are read in place: the library sees the caller's pointer, for every accepted dtype and layout; every
input that could only be read through a copy is a tokenprune.Error."""

import numpy as np
import pytest

import tokenprune

torch = pytest.importorskip("torch")


def exact_features(rng, n=64, d=24):
    """Values exactly representable in float32, float16 and bfloat16 (so every dtype ranks the same numbers)."""
    return (rng.integers(-64, 65, size=(n, d)) / 16.0).astype(np.float32)


def seen(pruner, name="features"):
    return pruner.last_inputs[name]


# ---------------------------------------------------------------------------------------------- zero copy

@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_numpy_contiguous_is_not_copied(rng, dtype):
    x = exact_features(rng).astype(dtype)
    g = tokenprune.GPrune()
    g.prune(features=x, keep=8)
    s = seen(g)
    assert s["data"] == x.ctypes.data
    assert s["dtype"] == np.dtype(dtype).name and s["shape"] == x.shape and s["strides"] == (x.shape[1], 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_numpy_row_stride_is_not_copied(rng, dtype):
    wide = exact_features(rng, 64, 40).astype(dtype)
    x = wide[5:, 3:27]  # rows 40 elements apart, starting mid-row
    assert not x.flags.c_contiguous
    g = tokenprune.GPrune()
    kept = g.prune(features=x, keep=8)
    s = seen(g)
    assert s["data"] == x.ctypes.data == wide.ctypes.data + (5 * 40 + 3) * wide.itemsize
    assert s["strides"] == (40, 1) and s["shape"] == (59, 24)
    np.testing.assert_array_equal(kept, tokenprune.GPrune().prune(features=np.ascontiguousarray(x), keep=8))


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_torch_is_not_copied(rng, dtype):
    t = torch.from_numpy(exact_features(rng)).to(getattr(torch, dtype))
    g = tokenprune.GPrune()
    g.prune(features=t, keep=8)
    assert seen(g)["data"] == t.data_ptr() and seen(g)["dtype"] == dtype
    strided = torch.from_numpy(exact_features(rng, 64, 40)).to(getattr(torch, dtype))[2:, 4:28]
    g.prune(features=strided, keep=8)
    assert seen(g)["data"] == strided.data_ptr() and seen(g)["strides"] == (40, 1)
    batched = t.unsqueeze(0)  # [1, n, d]: the leading 1 is dropped, still a view
    g.prune(features=batched, keep=8)
    assert seen(g)["data"] == t.data_ptr() and seen(g)["shape"] == tuple(t.shape)


def test_torch_requires_grad_is_read_in_place(rng):
    t = torch.from_numpy(exact_features(rng)).requires_grad_(True)
    g = tokenprune.GPrune()
    g.prune(features=t, keep=8)
    assert seen(g)["data"] == t.data_ptr()


def test_library_reads_the_callers_memory(rng):
    """Changing the caller's buffer between calls changes the answer: nothing was cached or copied."""
    x = exact_features(rng, 32, 8)
    g = tokenprune.FoPru()
    sig = np.linspace(0, 1, 32, dtype=np.float32)
    first = g.prune(significance=sig, keep=4).tolist()
    sig[:4] = 10.0  # in place
    assert g.prune(significance=sig, keep=4).tolist() == [0, 1, 2, 3] != first
    assert seen(g, "significance")["data"] == sig.ctypes.data
    del x


def test_attention_views_are_not_copied(rng):
    a = rng.random((4, 65, 65)).astype(np.float32)
    f = tokenprune.FoPru()
    block = a[:, 1:, 1:]  # the CLS-free patch block
    kept = f.prune(attention=block, keep=10)
    s = seen(f, "attention")
    assert s["data"] == block.ctypes.data == a.ctypes.data + (65 + 1) * 4
    assert s["strides"] == (65 * 65, 65, 1) and s["shape"] == (4, 64, 64)
    np.testing.assert_array_equal(kept, tokenprune.FoPru().prune(attention=np.ascontiguousarray(block), keep=10))
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        t = torch.from_numpy(a).to(dtype)[:, 1:, 1:]
        f.prune(attention=t, keep=10)
        assert seen(f, "attention")["data"] == t.data_ptr()
    one = np.ascontiguousarray(a[0, 1:, 1:])  # [n, n]: one head
    f.prune(attention=one, keep=10)
    assert seen(f, "attention")["data"] == one.ctypes.data and seen(f, "attention")["shape"] == (1, 64, 64)
    batched = torch.from_numpy(a).unsqueeze(0)  # [1, heads, n, n] as HF returns it
    f.prune(attention=batched, keep=10)
    assert seen(f, "attention")["data"] == batched.data_ptr()


def test_cls_row_view_is_not_copied(rng):
    """cls_attention = maps[:, 0, 1:] is a strided [heads, n] view (cls-attention reads it)."""
    a = rng.random((2, 17, 17)).astype(np.float32)
    row = a[:, 0, 1:]
    readers = [m for m in tokenprune.methods() if "cls_attention" in tokenprune.method_info(m)["inputs"]
               and tokenprune.method_info(m)["inputs"] == ["cls_attention"]]
    assert readers, "cls-attention is registered and reads only cls_attention"
    p = tokenprune.create(readers[0])
    p.prune(cls_attention=row, keep=4)
    s = seen(p, "cls_attention")
    assert s["data"] == row.ctypes.data and s["strides"] == (17 * 17, 1) and s["shape"] == (2, 16)


# ---------------------------------------------------------------------------------------------- all dtypes agree

def test_every_dtype_gives_the_same_selection(rng):
    base = exact_features(rng, 96, 32)
    g = tokenprune.GPrune()
    want = g.prune(features=base, keep=20)
    want_scores = g.scores.copy()
    inputs = [base.astype(np.float16), torch.from_numpy(base), torch.from_numpy(base).half(),
              torch.from_numpy(base).bfloat16()]
    for x in inputs:
        np.testing.assert_array_equal(g.prune(features=x, keep=20), want)
        np.testing.assert_array_equal(g.scores, want_scores)
    a = (rng.integers(0, 64, size=(3, 49, 49)) / 64.0).astype(np.float32)
    f = tokenprune.FoPru()
    want = f.prune(attention=a, keep=12)
    for x in [a.astype(np.float16), torch.from_numpy(a).half(), torch.from_numpy(a).bfloat16()]:
        np.testing.assert_array_equal(f.prune(attention=x, keep=12), want)


# ---------------------------------------------------------------------------------------------- refusals

def expect_error(argument, fn, *args, **kwargs):
    with pytest.raises(tokenprune.Error) as e:
        fn(*args, **kwargs)
    assert e.value.argument == argument, str(e.value)
    assert isinstance(e.value, ValueError)
    return e.value


@pytest.mark.parametrize("dtype", [np.float64, np.int32, np.int64, np.uint8, np.bool_, np.complex64])
def test_numpy_unsupported_dtypes(rng, dtype):
    x = np.ones((8, 4), dtype=dtype)
    err = expect_error("features.dtype", tokenprune.GPrune().prune, features=x, keep=2)
    assert err.value == np.dtype(dtype).name and "float32" in err.reason


@pytest.mark.parametrize("dtype", ["float64", "int32", "int64", "uint8", "bool", "complex64"])
def test_torch_unsupported_dtypes(dtype):
    t = torch.ones((8, 4), dtype=getattr(torch, dtype))
    err = expect_error("features.dtype", tokenprune.GPrune().prune, features=t, keep=2)
    assert err.value == "torch." + dtype


def test_big_endian_is_refused():
    x = np.ones((8, 4), dtype=">f4")
    expect_error("features.dtype", tokenprune.GPrune().prune, features=x, keep=2)


def test_column_major_and_transposed_are_refused(rng):
    x = exact_features(rng, 16, 8)
    g = tokenprune.GPrune()
    err = expect_error("features.strides", g.prune, features=np.asfortranarray(x), keep=2)
    assert "column-major" in err.reason and "copy" in err.reason
    expect_error("features.strides", g.prune, features=x.T, keep=2)
    expect_error("features.strides", g.prune, features=x[:, ::2], keep=2)
    expect_error("features.strides", g.prune, features=torch.from_numpy(x).t(), keep=2)
    expect_error("features.strides", g.prune, features=x[::-1], keep=2)
    expect_error("features.strides", g.prune, features=np.broadcast_to(x[:1], (16, 8)), keep=2)
    a = rng.random((2, 16, 16)).astype(np.float32)
    expect_error("attention.strides", tokenprune.FoPru().prune, attention=a.transpose(0, 2, 1), keep=2)
    expect_error("significance.strides", tokenprune.FoPru().prune, significance=np.ones(32, np.float32)[::2], keep=2)


class FakeDevice:
    """A DLPack producer on a CUDA device (kDLCUDA = 2): refused before any export."""

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None):
        raise AssertionError("must not be exported")


def test_non_cpu_tensors_are_refused():
    err = expect_error("features.device", tokenprune.GPrune().prune, features=FakeDevice(), keep=1)
    assert "CPU" in err.reason
    meta = torch.empty((8, 4), device="meta")
    err = expect_error("features.device", tokenprune.GPrune().prune, features=meta, keep=1)
    assert err.value == "meta"
    if torch.cuda.is_available():  # pragma: no cover - no GPU in CI
        expect_error("features.device", tokenprune.GPrune().prune, features=torch.ones((8, 4), device="cuda"), keep=1)


def test_not_an_array_is_refused():
    err = expect_error("features", tokenprune.GPrune().prune, features=[[1.0, 2.0], [3.0, 4.0]], keep=1)
    assert err.value == "list"
    expect_error("attention", tokenprune.FoPru().prune, attention="maps", keep=1)


def test_shape_errors(rng):
    g = tokenprune.GPrune()
    expect_error("features.shape", g.prune, features=np.ones(8, np.float32), keep=1)
    expect_error("features.shape", g.prune, features=np.ones((2, 4, 4), np.float32), keep=1)
    f = tokenprune.FoPru()
    expect_error("attention.shape", f.prune, attention=np.ones((2, 4, 5), np.float32), keep=1)
    expect_error("attention.shape", f.prune, attention=np.ones((2, 2, 4, 4), np.float32), keep=1)
    expect_error("significance.dtype", f.prune, significance=np.ones(8, np.float16), keep=1)
    expect_error("significance.shape", f.prune, significance=np.ones((2, 8), np.float32), keep=1)
    expect_error("grid", f.prune, significance=np.ones(8, np.float32), grid=(2, "4"), keep=1)
    expect_error("grid.rows*grid.cols", f.prune, significance=np.ones(8, np.float32), grid=(3, 3), keep=1)
    expect_error("video", f.prune, significance=np.ones(8, np.float32), video=(2, 4), keep=1)


def test_token_counts_must_agree(rng):
    f = tokenprune.FoPru()
    err = expect_error("significance.size", f.prune, attention=rng.random((1, 8, 8)).astype(np.float32),
                       significance=np.ones(9, np.float32), keep=1)
    assert "disagrees" in err.reason


def test_nan_is_named(rng):
    x = exact_features(rng, 8, 4)
    x[3, 2] = np.nan
    err = expect_error("features[3,2]", tokenprune.GPrune().prune, features=x, keep=2)
    assert err.value == "nan"
    t = torch.from_numpy(exact_features(rng, 8, 4)).bfloat16()
    t[5, 1] = float("inf")
    expect_error("features[5,1]", tokenprune.GPrune().prune, features=t, keep=2)


def test_no_reference_is_leaked(rng):
    import gc
    import sys
    import weakref

    x = exact_features(rng, 16, 4)
    g = tokenprune.GPrune()
    before = sys.getrefcount(x)
    for _ in range(50):
        g.prune(features=x, keep=2)
        with pytest.raises(tokenprune.Error):
            g.prune(features=x, keep=99)
    assert sys.getrefcount(x) == before
    t = torch.from_numpy(exact_features(rng, 16, 4)).bfloat16()
    alive = weakref.ref(t)
    g.prune(features=t, keep=2)
    with pytest.raises(tokenprune.Error):
        g.prune(features=t, keep=99)  # the DLPack export is released on the error path too
    del t
    gc.collect()
    assert alive() is None
