"""Every reference case through the Python package: the kept set must be exactly the reference's.

The case.json of each method is mapped to create() parameters and prune() inputs below. Only parameters that the
registered method lists (tokenprune.method_info) are passed, so a method that exposes fewer knobs still runs.
Extra expected_*.npy files are compared with the method's extra output of the same name when it has one
("scores" with pruner.scores), within the case's tolerance.
"""

import numpy as np
import pytest

import tokenprune
from conftest import CASES, NOT_REGISTERED, REGISTERED, RUN


def load(folder, name):
    return np.load(folder / name, allow_pickle=False)


def cls_row(attention, cls_index):
    """The [CLS] query row over the patch keys of [heads, 1 + n, 1 + n] maps: a strided view, no copy."""
    n = attention.shape[1] - 1
    if cls_index == 0:
        return attention[:, 0, 1:]
    assert cls_index == n
    return attention[:, n, :n]


def adapt(folder, spec):
    """(create parameters, prune keyword arguments, extra checks) for one case."""
    method = spec["method"]
    params, kwargs = {}, {}
    if method == "gprune":
        params = {k: spec[k] for k in ("threshold", "temperature", "iterations")}
        kwargs["features"] = load(folder, "features.npy")
        if spec["layout"] == "llava-next":
            kwargs["layout"] = tokenprune.LlavaNext(spec["grid_rows"], spec["grid_cols"], spec["ratio"])
        else:
            kwargs["keep"] = spec["keep"]
    elif method in ("fopru-rank", "fopru-row"):
        kwargs["attention"] = load(folder, "attention.npy")
        kwargs["keep"] = spec["keep"]
        if "grid_rows" in spec:
            kwargs["grid"] = (spec["grid_rows"], spec["grid_cols"])
    elif method == "cls-attention":
        kwargs["cls_attention"] = cls_row(load(folder, "attention.npy"), spec.get("cls_index", 0))
        kwargs["keep"] = spec["keep"]
    elif method == "divprune":
        kwargs["features"] = load(folder, "features.npy")
        kwargs["keep"] = spec["keep"]
    elif method == "cdpruner":
        kwargs["features"] = load(folder, "features.npy")
        kwargs["image_embeds"] = load(folder, "image_embeds.npy")
        kwargs["text_embeds"] = load(folder, "text_embeds.npy")
        kwargs["keep"] = spec["keep"]  # per crop in the crops layout
        params["theta"] = spec.get("theta")
        if spec.get("layout") == "crops":
            params["layout"] = "crops"
            params["crops"] = spec["crops"]
    elif method == "evs":
        kwargs["features"] = load(folder, spec.get("features", "features.npy"))
        kwargs["video"] = (spec["grid_t"], spec["grid_h"], spec["grid_w"])
        kwargs["keep"] = spec["keep"]
    elif method == "visionzip":
        attention = load(folder, spec.get("attention_file", "attention.npy"))
        kwargs["cls_attention"] = cls_row(attention, spec.get("cls_index", 0))
        kwargs["hidden_states"] = load(folder, spec.get("features_file", "features.npy"))
        kwargs["keys"] = load(folder, spec.get("keys_file", "keys.npy"))
        params["contextual"] = spec["contextual"]
        params["dominant"] = spec["dominant"]
        kwargs["keep"] = spec["dominant"] + spec["contextual"]
    elif method == "vispruner":
        attention = load(folder, spec.get("attention_file", "attention.npy"))
        kwargs["cls_attention"] = cls_row(attention, spec.get("cls_index", 0))
        kwargs["features"] = load(folder, spec.get("features_file", "features.npy"))
        params["important_ratio"] = spec["important_ratio"]
        params["dedup_step"] = spec["dedup_step"]
        kwargs["keep"] = spec["keep"]
    else:
        pytest.fail(f"method {method} is registered but tests/python/test_reference.py has no case.json mapping for it")

    info = tokenprune.method_info(method)
    known = {p["name"] for p in info["parameters"]}
    params = {k: v for k, v in params.items() if k in known and v is not None}
    if method == "visionzip" and "dominant" in params and info["budget_from_parameters"]:
        kwargs.pop("keep")  # the budget comes from dominant + contextual
    return params, kwargs


def tolerance(spec, output):
    for key, tol in spec.items():
        if key.endswith("_tolerance") and isinstance(tol, dict) and output.endswith(key[: -len("_tolerance")]):
            return tol.get("atol", tol.get("abs", 0.0)), tol.get("rtol", tol.get("rel", 0.0))
    return 1e-5, 1e-5


@pytest.mark.parametrize("case_id,folder,spec", RUN, ids=[c[0] for c in RUN])
def test_reference_case(case_id, folder, spec):
    params, kwargs = adapt(folder, spec)
    pruner = tokenprune.create(spec["method"], **params)
    expected = load(folder, "expected_keep.npy")

    layout = kwargs.get("layout")
    if layout is not None:
        promised = pruner.kept_count(layout=layout)
    elif "keep" in kwargs:
        if "cls_attention" in kwargs:
            n = kwargs["cls_attention"].shape[-1]
        elif "features" in kwargs:
            n = kwargs["features"].shape[0]
        else:
            n = kwargs["attention"].shape[-1]
        promised = pruner.kept_count(n, keep=kwargs["keep"], grid=kwargs.get("grid"), video=kwargs.get("video"))
    else:
        promised = None

    kept = pruner.prune(**kwargs)
    assert kept.dtype == np.int64 and kept.ndim == 1
    assert np.all(np.diff(kept) > 0), "not strictly ascending"
    np.testing.assert_array_equal(kept, expected, err_msg=case_id)
    if promised is not None:
        assert promised == len(kept)

    if "axis_chosen_by_reference" in spec:
        assert pruner.chosen_axis == spec["axis_chosen_by_reference"]

    outputs = set(pruner.outputs)
    for path in sorted(folder.glob("expected_*.npy")):
        name = path.stem[len("expected_"):]
        if name == "keep":
            continue
        want = np.load(path)
        if name == "scores":
            got = pruner.scores
        elif name in outputs:
            got = pruner.output(name)
        else:
            continue
        if np.issubdtype(want.dtype, np.integer):
            np.testing.assert_array_equal(np.asarray(got).reshape(want.shape), want, err_msg=f"{case_id}: {name}")
        else:
            atol, rtol = tolerance(spec, name)
            got = np.asarray(got, dtype=np.float64).reshape(want.shape)
            assert np.all(np.abs(got - want) <= atol + rtol * np.abs(want)), f"{case_id}: {name}"


def test_fixture_inventory():
    """The bundled cases exist and every case is either run or counted by its (unregistered) method."""
    assert any(c[0].startswith("bundled/") for c in CASES)
    assert len(RUN) + sum(NOT_REGISTERED.values()) == len(CASES)
    assert {"gprune", "fopru-rank", "fopru-row"} <= REGISTERED
    for method in NOT_REGISTERED:
        assert method not in REGISTERED
