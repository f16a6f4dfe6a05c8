"""A closed sweep against a real gunicorn (2 workers × 2 threads) on the I/O-waiting view."""

from __future__ import annotations

from pathlib import Path

from djtrace.lab.engine import decode_histogram

from tests.conftest import run_djtrace
from tests.load_support import gunicorn_command, load_run

WAIT_MS = 50
LANES = 4  # 2 workers × 2 threads


def test_sweep_rises_then_flattens_near_lanes_over_wait_with_before_django_growing(
    tmp_path: Path,
) -> None:
    ceiling = LANES / (WAIT_MS / 1000)  # 80 requests a second
    run, out = load_run(
        tmp_path,
        [f"/lab/io/?ms={WAIT_MS}"],
        gunicorn_command("-w", "2", "--threads", "2"),
        "-c",
        "1,4,16,32",
        "--duration",
        "2",
        "--warmup",
        "0.5",
    )
    stages = {s["concurrency"]: s for s in run["stages"]}
    assert sorted(stages) == [1, 4, 16, 32]
    x1, x32 = stages[1]["throughput"], stages[32]["throughput"]
    peak = max(s["throughput"] for s in run["stages"])
    # One user waits 50 ms a request: about 20/s; many users: bounded by 4 lanes / 50 ms.
    # (gunicorn's threaded workers may keep every keep-alive connection in one process, so
    # the last stages can fall below the peak, never above the ceiling.)
    assert x1 < 0.4 * ceiling
    assert peak > 2 * x1
    assert 0.5 * ceiling < peak < 1.15 * ceiling
    before_32 = max(stages[n]["throughput"] for n in (1, 4, 16))
    assert x32 < 1.5 * before_32  # flat: doubling the users no longer doubles throughput
    for stage in run["stages"]:
        assert stage["errors"] == {}
        assert stage["analysis"]["join_share"] > 0.9  # nearly every request found its trace
        # The warm-up ran and was left out: every measured request was sent in the window.
        assert stage["warmup_requests"] > 0
        assert all(row[3] >= stage["window_start_ns"] for row in stage["requests"])
        # The HDR histogram (3 significant digits) holds every measured latency.
        hist = decode_histogram(stage["histogram"])
        exact = sorted(row[4] for row in stage["requests"])
        assert hist.get_total_count() == stage["count"] == len(exact)
        rank = -(-99 * len(exact) // 100) - 1  # nearest rank; HDR may round to a neighbour
        low, high = exact[max(rank - 1, 0)], exact[min(rank + 1, len(exact) - 1)]
        assert 0.998 * low - 1000 <= stage["latency"]["p99"] <= 1.002 * high + 1000
    # What grew: time before Django (requests queue for a free thread), not the view.
    summary = run["summary"]
    assert summary["grew_most"]["component"] == "before Django"
    assert "busy" in summary["grew_most"]["why"]
    before = [stages[n]["analysis"]["split"]["before Django"]["mean"] for n in (1, 32)]
    assert before[1] > 5 * max(before[0], 1_000_000)
    view = [stages[n]["analysis"]["phases"]["view"]["p50"] for n in (1, 32)]
    assert view[1] < 2 * view[0]  # the view itself still takes its 50 ms
    # Little's law: in flight = throughput × mean latency ≈ the users of a closed stage.
    assert 0.7 < stages[16]["analysis"]["littles_law"]["ratio"] < 1.3
    # The report: the answer on top, the stage table, the phase growth.
    first_lines = out.split("\n\n")
    assert any(
        p.strip().startswith("Up to") or p.strip().startswith("Even at") for p in first_lines
    )
    assert "before Django grew most" in " ".join(out.split())
    assert "c 32" in out and "view" in out
    # Tracing's own effect: the knee stage rerun against the server started untraced.
    overhead = summary["overhead"]
    assert overhead["stage"] == (summary["knee_stage"] or summary["peak_stage"])
    assert overhead["untraced"] > 0 and overhead["traced"] > 0
    assert "Tracing's own effect at the knee" in out
    # Kept in the store: shown again, and compared with itself stage by stage.
    shown = run_djtrace(
        "load",
        "--show",
        "last",
        "--store",
        str(tmp_path / "traces.sqlite3"),
        "--against",
        run["run_id"],
    )
    assert shown.returncode == 0, shown.stderr
    assert run["run_id"] in shown.stdout and "1.00×" in shown.stdout
