"""benchmarks/load_vs_wrk.py runs end to end (a smoke run: one level, one short round)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.skipif(
    shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)"
)
def test_load_vs_wrk_prints_both_generators_figures() -> None:
    result = subprocess.run(
        [sys.executable, "benchmarks/load_vs_wrk.py", "--levels", "2", "--duration", "1",
         "--rounds", "1", "--workers", "1", "--threads", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (row,) = [line for line in result.stdout.splitlines() if line.startswith("| 2 |")]
    cells = [c.strip() for c in row.strip("|").split("|")]
    wrk, engine = float(cells[1]), float(cells[2])
    assert wrk > 0 and engine > 0
    assert float(cells[7]) > 0  # the engine's CPU per request, measured
