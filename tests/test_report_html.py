"""`djtrace load … --timeline --report FILE`: the knee stage's lanes in the terminal, and one
self-contained HTML page that a real headless browser (Debian's chromium) opens offline with
no console errors and every chart drawn."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_djtrace

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
BROWSER_PATIENCE_S = 90  # a hang guard, not a speed limit


def _chromium_or_skip() -> None:
    if not os.path.exists(CHROMIUM):
        reason = "chromium is not installed (apt-get install -y chromium)"
        if os.environ.get("DJTRACE_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)


def _open_headless(page: Path, profile: Path) -> tuple[str, str]:
    """The DOM after the page's scripts ran, and the browser's log (console lines included)."""
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=BROWSER_PATIENCE_S,
    )
    return result.stdout, result.stderr


@pytest.fixture(scope="module")
def load_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    """One small real sweep on the I/O view (gunicorn, 1 process × 2 threads)."""
    tmp = tmp_path_factory.mktemp("report")
    report = tmp / "run.html"
    result = run_djtrace(
        "load", "/lab/io/?ms=20", "-c", "1,2,4", "-d", "1", "--warmup", "0.3",
        "--store", str(tmp / "traces.sqlite3"), "--timeline", "--report", str(report),
        "--", sys.executable, "-m", "gunicorn", "djtrace.sample_site.wsgi",
        "-w", "1", "--threads", "2",
        env={"COLUMNS": "100"},
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result, report


def test_load_timeline_draws_the_knee_stage_lanes_under_the_report(load_run) -> None:
    result, _ = load_run
    text = result.stdout
    assert "timeline · " in text
    lanes = [line for line in text.splitlines() if re.match(r"^\d+/pool-0_\d", line)]
    assert len(lanes) == 2, text  # one process, two threads
    assert "waiting before Django: p50" in text  # four clients on two threads


def test_load_charts_throughput_latency_and_the_growth_of_each_part(load_run) -> None:
    text = load_run[0].stdout
    assert "throughput (req/s)" in text and "p95 ╎ p99 (ms)" in text
    growth = text.split("mean time per request, by part (ms)", 1)[1].splitlines()
    bars = {line[:14].strip(): line[14:] for line in growth[1:4]}
    assert set(bars) == {"1 concurrent", "2 concurrent", "4 concurrent"}, growth
    # Four clients on two threads: the time before Django (w) grew, the view (v) did not.
    assert bars["4 concurrent"].count("w") > bars["1 concurrent"].count("w") + 5, growth
    assert "w before Django" in growth[4] and "v view" in growth[4]


def test_the_html_report_opens_offline_in_a_headless_browser_with_its_charts_drawn(
    load_run, tmp_path: Path
) -> None:
    _chromium_or_skip()
    _, report = load_run
    page = report.read_text()
    # Self-contained: nothing to fetch.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page

    dom, log = _open_headless(report, tmp_path / "profile")
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:2000]
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', body.group(1)))
    assert int(attrs["data-charts"]) >= 4  # throughput, latency, phase growth, timeline
    assert attrs["data-charts-rendered"] == attrs["data-charts"], attrs
    assert attrs["data-errors"] == ""
    console = [line for line in log.splitlines() if ":CONSOLE" in line]
    assert console == [], console

    # What the page says: the run's answer, the stage table, the knee's lanes, slow trees.
    assert 'id="answer"' in dom and "concurrent" in dom
    assert dom.count("<tr>") >= 3  # a row per stage at least
    assert 'data-chart="timeline"' in dom and 'data-rendered="yes"' in dom
    assert "Slowest requests" in dom
    assert '<pre class="tree">' in dom and "lab_views" in dom  # a real trace tree


def test_the_comparison_report_draws_a_line_per_configuration_offline(tmp_path: Path) -> None:
    _chromium_or_skip()
    report = tmp_path / "compare.html"
    gunicorn = f"{sys.executable} -m gunicorn djtrace.sample_site.wsgi -k gthread"
    result = run_djtrace(
        "load", "/lab/io/?ms=10", "-c", "1,2", "-d", "0.6", "--warmup", "0.2",
        "--store", str(tmp_path / "traces.sqlite3"), "--report", str(report), "--timeline",
        "--compare", f"{gunicorn} -w 2 --threads 1", f"{gunicorn} -w 1 --threads 2",
        env={"COLUMNS": "100"},
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("timeline · ") == 2  # each configuration's knee stage

    dom, log = _open_headless(report, tmp_path / "profile")
    attrs = dict(re.findall(r'([\w-]+)="([^"]*)"', re.search(r"<body([^>]*)>", dom).group(1)))
    assert int(attrs["data-charts"]) == 5  # throughput, p95, p99, two timelines
    assert attrs["data-charts-rendered"] == "5" and attrs["data-errors"] == ""
    assert [line for line in log.splitlines() if ":CONSOLE" in line] == []
    throughput = re.search(r'<svg[^>]*data-chart="throughput".*?</svg>', dom, re.S).group(0)
    assert throughput.count("<polyline") == 2  # a line per configuration
    assert "peaks highest" in dom


def test_a_kept_run_gets_its_lanes_and_report_again_with_show(load_run, tmp_path: Path) -> None:
    first, report = load_run
    again = tmp_path / "again.html"
    result = run_djtrace(
        "load", "--show", "last", "--store", str(report.parent / "traces.sqlite3"),
        "--timeline", "--report", str(again),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "timeline · " in result.stdout and again.exists()
    answer = re.search(r'id="answer">([^<]*)<', report.read_text()).group(1)
    assert f'id="answer">{answer}<' in again.read_text()  # the same run, read back
