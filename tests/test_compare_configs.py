"""`djtrace load … --compare`: two gunicorn configurations, two processes or one process with
two threads, swept in turn. On a CPU-bound view the processes are ahead (two threads share
one GIL); on an I/O-waiting view the threads keep up."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from djtrace.exporters.run_store import get_run, list_runs
from djtrace.exporters.store import TraceStore

from tests.conftest import run_djtrace

GUNICORN = f"{sys.executable} -m gunicorn djtrace.sample_site.wsgi"
# Sync workers take a new connection per request, so both processes get work; a gthread
# worker keeps a keep-alive client's connection, and two clients can stick to one process.
PROCESSES = f"{GUNICORN} -k sync -w 2"
THREADS = f"{GUNICORN} -k gthread -w 1 --threads 2"


def _compare(tmp_path: Path, path: str) -> tuple[str, dict[str, dict]]:
    store = tmp_path / "traces.sqlite3"
    result = run_djtrace(
        "load", path, "-c", "1,2,4", "-d", "2", "--warmup", "0.5", "--store", str(store),
        "--compare", PROCESSES, THREADS,
        env={"COLUMNS": "100"},
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with TraceStore.open(store) as opened:
        runs = {}
        for run_id, _, label in list_runs(opened):
            run = get_run(opened, run_id)
            runs["processes" if label == PROCESSES else "threads"] = run
    assert set(runs) == {"processes", "threads"}
    return result.stdout, runs


def _quiet_machine_or_skip() -> None:
    """A CPU-bound comparison measures the cores the servers get: on a machine already
    running more than it has cores, the scheduler's shares decide it, not the GIL (with
    Linux's autogroup, a server's processes share one session's slice: measured here at a
    load average of 8 on 2 cores, `-w 2` served no more than one process with 2 threads,
    under wrk as under djtrace)."""
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0]
    if load > cores:
        pytest.skip(f"load average {load:.1f} on {cores} cores: too busy to compare CPU-bound")


def _peak(run: dict) -> float:
    return max(s["throughput"] for s in run["stages"])


def _at(run: dict, concurrency: int) -> float:
    return next(s["throughput"] for s in run["stages"] if s["concurrency"] == concurrency)


@pytest.mark.parametrize("view", ["cpu", "io"])
def test_compare_sweeps_each_configuration_and_shows_them_side_by_side(
    tmp_path: Path, view: str
) -> None:
    if view == "cpu":
        _quiet_machine_or_skip()
    text, runs = _compare(tmp_path, "/lab/cpu/?ms=20" if view == "cpu" else "/lab/io/?ms=50")

    # One table and one chart over both configurations, each named once.
    assert "A " + PROCESSES in text and "B " + THREADS in text
    assert "req/s · p95 · p99 at each concurrency" in text
    assert "throughput (req/s)" in text and "p99 (ms)" in text
    for level in (1, 2, 4):
        assert f"c {level}" in text
    assert "peaks highest" in text
    processes, threads = runs["processes"], runs["threads"]
    if view == "cpu":
        # Two processes run Python on two cores; two threads of one process share one GIL.
        assert _peak(processes) > _peak(threads), (_peak(processes), _peak(threads))
        assert "A peaks highest" in text
    else:
        # Waiting on I/O releases the GIL: two threads serve as much as two processes.
        assert _at(threads, 2) >= 0.8 * _at(processes, 2), (_at(threads, 2), _at(processes, 2))
        assert _at(threads, 2) >= 1.5 * _at(threads, 1)  # and a second thread helped


def test_compare_needs_two_commands(tmp_path: Path) -> None:
    result = run_djtrace(
        "load", "/lab/io/", "--compare", PROCESSES, "--store", str(tmp_path / "s.sqlite3")
    )
    assert result.returncode == 2
    assert "two server commands or more" in result.stderr
    assert "Traceback" not in result.stderr


def test_compare_keeps_each_configuration_as_a_run_of_its_own(tmp_path: Path) -> None:
    store = tmp_path / "traces.sqlite3"
    result = run_djtrace(
        "load", "/lab/io/?ms=5", "-c", "1", "-d", "0.5", "--warmup", "0.2", "--store", str(store),
        "--compare", PROCESSES, THREADS,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    with TraceStore.open(store) as opened:
        labels = sorted(label for _, _, label in list_runs(opened))
        kept = [get_run(opened, run_id) for run_id, _, _ in list_runs(opened)]
    assert labels == sorted([PROCESSES, THREADS])
    for run in kept:
        assert run["settings"]["compare"] == [PROCESSES, THREADS]
        assert json.dumps(run)  # a whole run document, as `djtrace load --show` reads
