"""Every reference case through the Python package: the kept set must be exactly the reference's.

Cases are mapped to create() and prune() by the same rule as the C++ fixture tests (tests/reference_case.hpp) and
the command-line tool, driven only by the registry's MethodInfo (tokenprune.method_info), never by method name:

- parameters: every case.json key that names a parameter of the method (null: absent), leaving out parameters that
  set the budget (``sets_budget``) when the case gives its own "keep" or "ratio";
- inputs: ``features.npy`` goes to ``hidden_states`` when the method reads those, else to ``features``;
  ``attention.npy`` to ``cls_attention`` (the [CLS] query row at ``cls_index``, a strided view) when the method
  reads that, else to ``attention``; ``keys``, ``image_embeds``, ``text_embeds``, ``relevance`` by file name;
  ``grid_t/grid_h/grid_w`` give ``video``; ``grid_rows/grid_cols`` give ``grid`` when the method reads one;
- budget: ``layout == "llava-next"`` (tokenprune.LlavaNext), else "keep", else "ratio", else the parameters;
- outputs: ``axis_chosen_by_reference`` and the other expected_*.npy files against the method's extra outputs
  (selection_order -> order, selection_gain -> gains, targets, merged, important) and ``scores``, within the
  case's tolerance.
"""

import numpy as np
import pytest

import tokenprune
from conftest import CASES, NOT_REGISTERED, REGISTERED, RUN

EXTRA = {"selection_order": "order", "selection_gain": "gains", "targets": "targets", "merged": "merged",
         "important": "important", "scores": "scores"}


def load(folder, name):
    return np.load(folder / name, allow_pickle=False)


def cls_row(attention, cls_index):
    """The [CLS] query row over the patch keys of [heads, 1 + n, 1 + n] maps: a strided view, no copy."""
    n = attention.shape[1] - 1
    if cls_index == 0:
        return attention[:, 0, 1:]
    assert cls_index == n
    return attention[:, n, :n]


def case_parameters(spec, info):
    has_budget = "keep" in spec or "ratio" in spec
    params = {}
    for p in info["parameters"]:
        value = spec.get(p["name"])
        if value is None or (p.get("sets_budget") and has_budget):
            continue
        params[p["name"]] = value
    return params


def case_inputs(folder, spec, info):
    reads = set(info["inputs"])
    kwargs = {}
    if (folder / "features.npy").exists():
        kwargs["hidden_states" if "hidden_states" in reads else "features"] = load(folder, "features.npy")
    if (folder / "attention.npy").exists():
        attention = load(folder, "attention.npy")
        if "cls_attention" in reads:
            kwargs["cls_attention"] = cls_row(attention, spec.get("cls_index", 0))
        else:
            kwargs["attention"] = attention
    for name in ("keys", "image_embeds", "text_embeds", "relevance"):
        if (folder / f"{name}.npy").exists():
            kwargs[name] = load(folder, f"{name}.npy")
    if "grid_t" in spec:
        kwargs["video"] = (spec["grid_t"], spec["grid_h"], spec["grid_w"])
    if "grid_rows" in spec and "grid" in reads:
        kwargs["grid"] = (spec["grid_rows"], spec["grid_cols"])
    return kwargs


def n_tokens(kwargs):
    for name, axis in (("features", 0), ("attention", -1), ("cls_attention", -1), ("image_embeds", 0)):
        if name in kwargs:
            return kwargs[name].shape[axis]
    if "hidden_states" in kwargs:
        return kwargs["hidden_states"].shape[0] - 1
    raise AssertionError("no per-token input")


def tolerance(spec, output):
    for key in (output + "_tolerance", "gain_tolerance"):
        if isinstance(spec.get(key), dict):
            t = spec[key]
            return t.get("atol", t.get("abs", 0.0)), t.get("rtol", t.get("rel", 0.0))
    return 0.0, 0.0


@pytest.mark.parametrize("case_id,folder,spec", RUN, ids=[c[0] for c in RUN])
def test_reference_case(case_id, folder, spec):
    method = spec["method"]
    info = tokenprune.method_info(method)
    pruner = tokenprune.create(method, **case_parameters(spec, info))
    kwargs = case_inputs(folder, spec, info)
    expected = load(folder, "expected_keep.npy")

    if spec.get("layout") == "llava-next":
        layout = tokenprune.LlavaNext(spec["grid_rows"], spec["grid_cols"], spec["ratio"])
        promised = pruner.kept_count(layout=layout)
        kept = pruner.prune(layout=layout, **kwargs)
    else:
        budget = {"keep": spec["keep"]} if "keep" in spec else {"ratio": spec["ratio"]} if "ratio" in spec else {}
        if budget or not info["budget_from_parameters"]:
            promised = pruner.kept_count(n_tokens(kwargs), grid=kwargs.get("grid"), video=kwargs.get("video"), **budget)
        else:
            promised = None
        kept = pruner.prune(**kwargs, **budget)

    assert kept.dtype == np.int64 and kept.ndim == 1
    assert np.all(np.diff(kept) > 0), "not strictly ascending"
    np.testing.assert_array_equal(kept, expected, err_msg=case_id)
    seen = pruner.last_inputs  # every array was handed over in place (cls_attention: a strided view of the maps)
    for name, value in kwargs.items():
        if isinstance(value, np.ndarray):
            assert seen[name]["data"] == value.ctypes.data, f"{case_id}: {name} was not read in place"
    if promised is not None:
        assert promised == len(kept)

    if "axis_chosen_by_reference" in spec:
        assert pruner.output("axis") == spec["axis_chosen_by_reference"]
        assert pruner.chosen_axis == spec["axis_chosen_by_reference"]
    outputs = set(pruner.outputs)
    for stem, name in EXTRA.items():
        path = folder / f"expected_{stem}.npy"
        if not path.exists():
            continue
        want = np.load(path)
        if name == "scores":
            got = pruner.scores
        else:
            assert name in outputs, f"{case_id}: method {method} has no output {name}"
            got = pruner.output(name)
        got = np.asarray(got)
        assert got.size == want.size, f"{case_id}: {name} size"
        if np.issubdtype(want.dtype, np.integer):
            np.testing.assert_array_equal(got.reshape(want.shape), want, err_msg=f"{case_id}: {name}")
        else:
            atol, rtol = tolerance(spec, name)
            diff = np.abs(got.reshape(want.shape).astype(np.float64) - want)
            assert np.all(diff <= atol + rtol * np.abs(want.astype(np.float64))), f"{case_id}: {name}"


def test_fixture_inventory():
    """The bundled cases exist and every case is either run or counted by its (unregistered) method."""
    assert any(c[0].startswith("bundled/") for c in CASES)
    assert len(RUN) + sum(NOT_REGISTERED.values()) == len(CASES)
    assert {"gprune", "fopru-rank", "fopru-row"} <= REGISTERED
    for method in NOT_REGISTERED:
        assert method not in REGISTERED
