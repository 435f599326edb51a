"""examples/pytorch_pipeline.py runs end to end at its small (CI) size."""

import subprocess
import sys

import pytest

from conftest import REPO


def test_pytorch_pipeline_small():
    pytest.importorskip("torch")
    pytest.importorskip("torchvision")
    result = subprocess.run([sys.executable, str(REPO / "examples" / "pytorch_pipeline.py"), "--small"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "random weights" in lines[0]
    table = [line.split() for line in lines if line.startswith(("gprune", "fopru-rank"))]
    assert len(table) == 12
    assert [int(r[3]) for r in table[:4]] == [196, 98, 49, 21]
