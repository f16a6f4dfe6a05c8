"""`djtrace load --sample RATE`: a share of requests traced in full, every request joined."""

from __future__ import annotations

from pathlib import Path

from tests.load_support import gunicorn_command, load_run


def test_sampled_run_joins_every_request_and_reports_tracings_effect(tmp_path: Path) -> None:
    run, out = load_run(
        tmp_path,
        ["/lab/io/?ms=10"],
        gunicorn_command("-w", "1", "--threads", "2"),
        "-c",
        "1,4",
        "--duration",
        "1.5",
        "--warmup",
        "0.3",
        "--sample",
        "0.2",
    )
    for stage in run["stages"]:
        info = stage["analysis"]
        # Light traces still carry the root's timing: every request splits before/inside/after.
        assert info["join_share"] > 0.9
        # One request in five asked for a full trace: evenly spread, in every stage.
        assert 0.1 * info["joined"] < info["full_traces"] < 0.3 * info["joined"]
        assert info["split"]["inside Django"]["p50"] >= 10_000_000
        light = [r for r in stage["joined"] if not r["sampled"]]
        assert light and all("phases" not in r for r in light)
        # Phases come from the full traces alone: the view's 10 ms wait is there.
        assert info["phases"]["view"]["p50"] >= 10_000_000
    overhead = run["summary"]["overhead"]
    assert overhead["sample"] == 0.2 and overhead["untraced"] > 0
    assert "(--sample 0.2)" in out
