"""Shared helpers for the Python tests: where the reference fixtures are, and which of them the registry runs."""

import json
import os
from pathlib import Path

import pytest

import tokenprune

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "tests" / "data" / "reference"
SHARED = Path(os.environ.get("TOKENPRUNE_SHARED_FIXTURES", REPO.parent / "shared" / "fixtures" / "reference"))


def fixture_roots():
    roots = [("bundled", BUNDLED)]
    if SHARED.is_dir():
        roots.append(("shared", SHARED))
    return roots


def all_cases():
    """(id, folder, case.json) for every case folder, sorted by root and name."""
    cases = []
    for label, root in fixture_roots():
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            spec_path = folder / "case.json"
            if spec_path.is_file():
                spec = json.loads(spec_path.read_text())
                if not isinstance(spec.get("method"), str) or not spec["method"]:
                    raise ValueError(f"{spec_path}: no method")
                cases.append((f"{label}/{folder.name}", folder, spec))
    return cases


CASES = all_cases()
REGISTERED = set(tokenprune.methods())
RUN = [c for c in CASES if c[2]["method"] in REGISTERED]
NOT_REGISTERED = {}
for _, _, spec in CASES:
    if spec["method"] not in REGISTERED:
        NOT_REGISTERED[spec["method"]] = NOT_REGISTERED.get(spec["method"], 0) + 1


def pytest_report_header(config):
    roots = ", ".join(f"{label}={root}" for label, root in fixture_roots())
    return [f"tokenprune {tokenprune.__version__} ({tokenprune.__file__}), isa {tokenprune.active_isa()}",
            f"methods: {', '.join(tokenprune.methods())}", f"fixture roots: {roots}"]


def pytest_terminal_summary(terminalreporter):
    skipped = sum(NOT_REGISTERED.values())
    detail = ", ".join(f"{m} {n}" for m, n in sorted(NOT_REGISTERED.items()))
    terminalreporter.write_line(
        f"reference fixtures through Python: {len(RUN)} cases of registered methods run, "
        f"{skipped} of methods not in the registry counted, not run" + (f" ({detail})" if detail else ""))


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(20260512)
