"""The benchmark scripts refuse bad options with one line and exit 2, before measuring."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.mark.parametrize(
    ("script", "args", "message"),
    [
        ("overhead.py", ["--rounds", "0"], "--rounds must be at least 1"),
        ("overhead.py", ["--requests", "0"], "--requests must be at least 1"),
        ("overhead.py", ["--configs", "baseline,jaeger"], "unknown configuration(s) jaeger"),
        ("instructions.py", ["--requests", "5"], "--requests takes two counts, N1,N2"),
        ("instructions.py", ["--requests", "40,10"], "needs 0 <= N1 < N2"),
        ("instructions.py", ["--configs", "sentry"], "unknown config sentry"),
        ("paired.py", ["--pairs", "0"], "--pairs must be at least 1"),
        ("paired.py", ["--leave-out", "jaeger"], "unknown hook jaeger"),
        ("paired.py", ["--paths", ","], "--paths needs at least one path"),
    ],
)
def test_a_bad_option_is_one_line_and_exit_2(script: str, args: list[str], message: str):
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
