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
        ("bytecodes.py", ["--requests", "0"], "--requests must be at least 1"),
        ("bytecodes.py", ["--top", "0"], "--top must be at least 1"),
        ("bytecodes.py", ["--paths", ","], "--paths needs at least one path"),
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


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="sys.monitoring is there from 3.12")
def test_bytecodes_before_python_3_12_says_what_it_needs():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bytecodes.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done
    assert "needs Python 3.12+ for sys.monitoring" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


@pytest.mark.skipif(sys.version_info < (3, 12), reason="needs sys.monitoring (Python 3.12+)")
def test_bytecodes_accounts_for_recording_function_by_function():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "bytecodes.py"), "--paths", "/books/", "--requests", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    header = next(line for line in done.stdout.splitlines() if "bytecodes per request" in line)
    untraced, recorded = (int(n.replace(",", "")) for n in header.split()[:3:2])
    assert recorded > untraced
    # Each of the N+1 page's 21 queries asks for its source line once.
    assert " user_source | 21 |" in done.stdout
    assert " _traced.<locals>.execute | 21 |" in done.stdout


def test_overhead_runs_end_to_end_and_says_what_reading_a_trace_costs():
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "overhead.py"), "--rounds", "1", "--requests", "1"]
        + ["--warmup", "1", "--configs", "baseline,control,djtrace"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    rows: dict[str, str] = {}
    for line in done.stdout.splitlines():  # the first table a row's name appears in
        rows.setdefault(line.split(" | ")[0].lstrip("| "), line)
    for config in ("baseline", "control", "djtrace"):  # wall-clock time and the ratio
        assert "µs" in rows[config] and "×" in rows[config]
    assert "µs" in rows["djtrace: its Spans built from the request's records"]
    assert "KiB" in rows["djtrace (tracemalloc, traces held)"]
    assert "- django " in done.stdout
