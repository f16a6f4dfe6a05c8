"""`djtrace load analyze`: wrk (Debian's package) drives a captured gunicorn; the report
built from the stored traces has wrk's stages and wrk's throughput."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.capture_support import capture, fetch, free_port, gunicorn_args, wait_for_traces
from tests.conftest import run_djtrace
from tests.load_support import analyzed

WRK = shutil.which("wrk")
STAGE_GAP_S = 2.0  # a pause between the two wrk runs, longer than analyze's --gap 1s


def _wrk(url: str, connections: int, seconds: int) -> tuple[float, int]:
    """wrk's Requests/sec and request count."""
    result = subprocess.run(
        [WRK, "-t1", f"-c{connections}", f"-d{seconds}s", url],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
    )
    assert result.returncode == 0, result.stderr
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))
    count = int(re.search(r"(\d+) requests in", result.stdout).group(1))
    return rate, count


def test_analyze_over_two_wrk_runs_reports_each_stage_throughput_within_10_percent(
    tmp_path: Path,
) -> None:
    if WRK is None:
        reason = "wrk is not installed (apt-get install -y wrk)"
        if os.environ.get("DJTRACE_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    port = free_port()
    path = "/lab/io/?ms=15"
    with capture(tmp_path, gunicorn_args(port, workers=2, threads=2), port) as captured:
        url = captured.base + path
        for _ in range(4):  # Django loaded in the workers before wrk starts
            fetch(captured.base + "/lab/io/?ms=1")
        time.sleep(STAGE_GAP_S)
        first = _wrk(url, connections=1, seconds=3)
        time.sleep(STAGE_GAP_S)
        second = _wrk(url, connections=4, seconds=3)
        wait_for_traces(captured.store, 4 + first[1] + second[1])
    result = run_djtrace(
        "load", "analyze", "--store", str(captured.store), "--since", "10m",
        "--path", "/lab/io/", "--json", str(tmp_path / "run.json"), "--timeline",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    run = json.loads((tmp_path / "run.json").read_text())
    stages = run["stages"]
    assert len(stages) == 2, [(s["count"], s["throughput"]) for s in stages]
    for stage, (wrk_rate, wrk_count) in zip(stages, (first, second), strict=True):
        assert abs(stage["throughput"] - wrk_rate) <= 0.10 * wrk_rate, (
            stage["throughput"],
            wrk_rate,
        )
        # The server finishes what was in flight when wrk stopped counting.
        assert wrk_count <= stage["count"] <= wrk_count + 8
        assert stage["analysis"]["lanes"]  # which worker threads served it
    assert "observed from stored traces" in result.stdout
    assert "no send times" in result.stdout  # wrk sent no X-Djtrace-Load header
    # The knee stage's lanes, drawn from the very traces analyze read.
    timeline = result.stdout.split("timeline · ", 1)[1]
    assert re.search(r"^\d+/pool-0_\d", timeline, re.M), timeline
    # The run is kept like a `djtrace load` run.
    shown = run_djtrace("load", "--show", run["run_id"], "--store", str(captured.store))
    assert shown.returncode == 0 and run["run_id"] in shown.stdout


def test_analyze_needs_a_window_or_a_tag(tmp_path: Path) -> None:
    result = run_djtrace("load", "analyze", "--store", str(tmp_path / "x.sqlite3"))
    assert result.returncode == 2
    assert "--since 10m" in result.stderr and "Traceback" not in result.stderr


def test_analyze_joins_tagged_requests_by_their_header_and_knows_the_time_before_django(
    client, tmp_path: Path
) -> None:
    """A tool that sends X-Djtrace-Load (a k6 script, a locust hook): stages by its tag."""
    from djtrace import trace
    from djtrace.lab.tag import format_tag

    with trace() as session:
        for stage, waited_ms in ((1, 0), (2, 30)):
            for seq in range(6):
                sent = time.time_ns() - waited_ms * 1_000_000
                tag = format_tag("k6-night", stage, seq, sent)
                client.get("/lab/io/?ms=5", HTTP_X_DJTRACE_LOAD=tag)
        client.get("/books/fast/")  # untagged: not part of the run
    run, out = analyzed(tmp_path, session.traces, "--tag", "k6-night")
    stages = run["stages"]
    assert [(s["run"], s["count"], s["tagged"]) for s in stages] == [
        ("k6-night", 6, 6),
        ("k6-night", 6, 6),
    ]
    assert all(s["latency_from"] == "send" for s in stages)
    before = [s["analysis"]["split"]["before Django"]["mean"] for s in stages]
    assert before[0] < 10_000_000 and before[1] >= 30_000_000  # the second stage waited
    assert re.search(r"time before Django\s+grew most", out), out
