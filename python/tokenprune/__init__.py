"""tokenprune: training-free visual-token pruning for multimodal LLMs, from Python.

Every method in the library's registry is reachable by name::

    import tokenprune
    tokenprune.methods()                          # ['gprune', 'fopru-rank', 'fopru-row', ...]
    pruner = tokenprune.create("gprune", threshold=0.6)
    kept = pruner.prune(features=x, ratio=0.25)   # numpy int64, 1-D, strictly ascending
    pruner.scores                                 # float32, the values that were ranked

or through a convenience class (``GPrune``, ``FoPru``, ``DivPrune``, ...). Inputs (numpy float32/float16 arrays,
torch CPU tensors in float32/float16/bfloat16) are read in place: C-contiguous or with a row stride. Anything
that could only be read through a copy (another dtype, a GPU tensor, a column-major array) raises
:class:`tokenprune.Error`, a ``ValueError`` with ``.argument``, ``.value`` and ``.reason``.

``prune()`` releases the GIL: separate pruner objects run in parallel from several threads (calls on one object
are serialized).
"""

from __future__ import annotations

import numpy as _np

from . import _core
from ._core import (  # noqa: F401
    Error,
    LlavaNext,
    Pruner,
    Segment,
    Segments,
    active_isa,
    compacted_mrope_positions,
    compacted_positions,
    method_info,
    methods,
    original_mrope_positions,
    original_positions,
    set_isa,
    supported_isas,
)
from ._plot import plot  # noqa: F401  (matplotlib is imported when plot() is called)

__all__ = [
    "Error", "Pruner", "create", "methods", "method_info",
    "GPrune", "FoPru", "DivPrune", "ClsAttention", "CDPruner", "VisionZip", "VisPruner", "EVS", "DART",
    "LlavaNext", "Segment", "Segments", "gather_rows",
    "original_positions", "compacted_positions", "original_mrope_positions", "compacted_mrope_positions",
    "active_isa", "set_isa", "supported_isas", "plot",
]


__version__ = _core.__version__


def create(name: str, **params) -> Pruner:
    """A pruner of registered method `name` (see ``methods()``), with parameters by keyword.

    Unknown methods or parameters, and invalid values, raise :class:`Error` naming them. ``None`` means the
    method's default.
    """
    return Pruner(name, **params)


def gather_rows(src, kept, out=None):
    """The rows ``kept`` of token matrix ``src`` ([n, d], read in place), in ``src``'s own dtype.

    With ``out`` (a writable [len(kept), d] numpy array or torch tensor of the same dtype, rows contiguous) the
    rows are written there and ``out`` is returned; otherwise a new array is made (a torch tensor for a torch
    source, so bfloat16 works, else numpy).
    """
    if out is None:
        kept_len = len(kept)
        shape = tuple(src.shape)
        while len(shape) > 2 and shape[0] == 1:
            shape = shape[1:]
        if len(shape) != 2:
            raise Error("src.shape", str(tuple(src.shape)), "must have 2 dimensions")
        if hasattr(src, "new_empty"):  # torch
            out = src.new_empty((kept_len, shape[1]))
        else:
            out = _np.empty((kept_len, shape[1]), dtype=src.dtype)
    _core._gather_rows_into(src, kept, out)
    return out


class GPrune(Pruner):
    """G-Prune (Jiang et al., 2025): information propagation over the cosine-similarity graph of ``features``."""

    def __init__(self, threshold=0.5, temperature=0.03, iterations=5, **params):
        super().__init__("gprune", threshold=threshold, temperature=temperature, iterations=iterations, **params)


class FoPru(Pruner):
    """FoPru (Jiang et al., 2024): significance from the encoder's ``attention`` maps (or ``queries``/``keys``,
    or a ``significance`` vector); ``strategy`` "rank" (top tokens) or "row" (whole grid rows)."""

    def __init__(self, strategy="rank", axis="auto", **params):
        if strategy not in ("rank", "row"):
            raise Error("strategy", str(strategy), "must be rank or row")
        super().__init__("fopru-" + strategy, axis=axis, **params)


def _method_class(class_name: str, method: str, doc: str):
    def __init__(self, **params):
        Pruner.__init__(self, method, **params)

    __init__.__doc__ = "Parameters by keyword; see tokenprune.method_info(%r)." % method
    return type(class_name, (Pruner,), {"__init__": __init__, "__doc__": doc, "__module__": __name__})


# Methods that join the registry later get a class here; constructing one before its method is registered is an
# Error naming the method.
DivPrune = _method_class("DivPrune", "divprune", "DivPrune: greedy max-min diversity over the features.")
ClsAttention = _method_class("ClsAttention", "cls-attention", "[CLS]-attention top-k (FasterVLM): reads cls_attention.")
CDPruner = _method_class("CDPruner", "cdpruner", "CDPruner: conditional DPP over features and image/text relevance.")
VisionZip = _method_class("VisionZip", "visionzip", "VisionZip: dominant tokens by [CLS] attention, contextual merges.")
VisPruner = _method_class("VisPruner", "vispruner", "VisPruner: important tokens by [CLS] attention plus diverse ones.")
EVS = _method_class("EVS", "evs", "EVS: efficient video sampling, drops tokens that repeat the previous frame.")
DART = _method_class("DART", "dart", "DART: duplication-aware pruning around pivot tokens.")
