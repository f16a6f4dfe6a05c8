"""Coordinated omission: a server stalls once; an open model shows it, a closed one hides it."""

from __future__ import annotations

from pathlib import Path

from tests.load_support import gunicorn_command, load_run

STALL_MS = 1500
REQUESTS = 100


def _stage(tmp: Path, *options: str) -> dict:
    # One sync worker: while its one request stalls, the whole server does.
    run, _ = load_run(
        tmp,
        [f"/lab/stall-once/?after=30&ms={STALL_MS}"],
        gunicorn_command("-w", "1"),
        "--warmup",
        "0",
        "--requests",
        str(REQUESTS),
        "--duration",
        "30",
        "--no-overhead-check",
        *options,
    )
    (stage,) = run["stages"]
    assert stage["count"] == REQUESTS and stage["errors"] == {}
    return stage


def test_an_open_stage_reports_a_stall_in_its_p99_where_a_closed_loop_hides_it(
    tmp_path: Path,
) -> None:
    closed = _stage(tmp_path / "closed", "-c", "1")
    opened = _stage(tmp_path / "open", "--rate", "20")
    stall_ns = STALL_MS * 1_000_000
    # Both saw the stalled request itself...
    assert closed["latency"]["max"] >= 0.9 * stall_ns
    assert opened["latency"]["max"] >= 0.9 * stall_ns
    # ...but the closed user waited instead of sending: one slow request of a hundred.
    assert closed["latency"]["p99"] < 0.3 * stall_ns
    # Arrivals kept coming on schedule during the stall, each timed from its intended send.
    assert opened["latency"]["p99"] >= 0.5 * stall_ns
    assert opened["latency"]["p90"] > closed["latency"]["p90"]
    assert opened["skipped"] == 0  # every arrival was sent, none dropped


def test_a_rate_the_generator_cannot_keep_is_said_plainly(tmp_path: Path) -> None:
    # 500 arrivals a second at one worker taking 20 ms each, at most 4 waiting: most are
    # skipped, and the report says the schedule was not kept instead of a tidy p99.
    run, out = load_run(
        tmp_path,
        ["/lab/io/?ms=20"],
        gunicorn_command("-w", "1"),
        "--rate",
        "500",
        "--max-inflight",
        "4",
        "--warmup",
        "0",
        "--duration",
        "1",
        "--no-overhead-check",
    )
    (stage,) = run["stages"]
    assert stage["skipped"] > stage["count"]
    assert stage["arrivals"] == stage["count"] + stage["skipped"]
    assert stage["schedule_kept"] is False
    assert "could not keep its schedule at 500/s" in " ".join(out.split())
