"""The capacity answer from a sweep's figures (lab.analysis is pure: plain data in, text out)."""

from __future__ import annotations

from typing import Any

from djtrace.lab.analysis import BEFORE, INSIDE, sweep_analysis


def stage(index: int, users: int, throughput: float, p99_ms: float, before_ms: float,
          lanes: int = 4, busy: float = 0.95, **extra: Any) -> dict[str, Any]:  # fmt: skip
    mean = int((before_ms + 50) * 1e6)
    return {
        "index": index, "kind": "closed", "concurrency": users, "rate": 0.0,
        "count": 100, "errors": {}, "throughput": throughput,
        "latency": {"p99": p99_ms * 1e6, "mean": mean},
        "analysis": {
            "split": {
                BEFORE: {"mean": int(before_ms * 1e6)},
                INSIDE: {"mean": 50_000_000},
                "after (body to client)": {"mean": 500_000},
            },
            "phases": {"view": {"mean": 50_000_000}},
            "lanes": [{"pid": 1, "thread_id": t} for t in range(lanes)],
            "busy_mean": busy,
        },
        **extra,
    }  # fmt: skip


def test_a_sweep_that_levels_off_names_the_knee_the_slo_and_the_busy_workers() -> None:
    stages = [
        stage(1, 1, 19.5, 60, 1, busy=0.25),
        stage(2, 2, 39, 62, 1, busy=0.5),
        stage(3, 4, 76, 70, 2),
        stage(4, 8, 79, 150, 50),
        stage(5, 16, 80, 260, 150),
    ]
    summary = sweep_analysis(stages, slo_ms=200)
    assert summary["knee_stage"] == 3 and summary["within_slo_concurrency"] == 8
    assert summary["grew_most"]["component"] == BEFORE
    answer = summary["answer"]
    assert answer.startswith("Up to 8 concurrent requests p99 stays under 200 ms")
    assert "levels off at 80 req/s from 4 concurrent" in answer
    assert "all 4 worker threads were busy" in answer
    assert summary["usl"]["sigma"] >= 0 and summary["usl"]["kappa"] >= 0


def test_a_sweep_still_rising_has_no_knee_and_says_to_go_higher() -> None:
    stages = [stage(1, 1, 20, 60, 1), stage(2, 2, 40, 61, 1), stage(3, 4, 79, 62, 1)]
    summary = sweep_analysis(stages, slo_ms=200)
    assert summary["knee_stage"] is None and summary["still_rising"]
    assert "still rising (sweep higher to find the knee)" in summary["answer"]
    assert "no part of a request grew much" in summary["answer"]


def test_a_collapse_past_the_peak_and_a_worker_that_stopped_serving_are_named() -> None:
    stages = [
        stage(1, 1, 18, 60, 1, busy=0.5),
        stage(2, 4, 72, 80, 1),
        stage(3, 16, 32, 470, 380, lanes=2, busy=0.9),
    ]
    stages[2]["analysis"]["lanes"] = [{"pid": 1, "thread_id": 0}, {"pid": 1, "thread_id": 1}]
    stages[1]["analysis"]["lanes"] += [{"pid": 2, "thread_id": 0}]
    answer = sweep_analysis(stages, slo_ms=200)["answer"]
    assert "peaks at 72 req/s at 4 concurrent and falls to 32 at 16" in answer
    assert "only 2 of the 5 worker threads seen served at the end" in answer
    assert "1 of 2 processes" in answer


def test_nothing_under_the_slo_says_so() -> None:
    stages = [stage(1, 1, 5, 900, 1), stage(2, 2, 6, 1500, 100)]
    answer = sweep_analysis(stages, slo_ms=200)["answer"]
    assert answer.startswith("Even at 1 concurrent p99 is 900 ms, over the 200 ms SLO")


def test_waiting_before_django_on_an_event_loop_is_not_called_waiting_for_a_worker() -> None:
    stages = [stage(1, 1, 40, 30, 1, lanes=1), stage(2, 64, 250, 470, 60, lanes=1)]
    for s in stages:
        s["analysis"]["async_share"] = 1.0
        s["analysis"]["processes"] = 1
    why = sweep_analysis(stages, slo_ms=200)["grew_most"]["why"]
    assert why.startswith("the event loop had more ready work than it could run")
    assert "worker" not in why.split("(")[0]


def test_a_single_stage_is_not_said_to_level_off_and_asks_for_more_levels() -> None:
    summary = sweep_analysis([stage(1, 1, 19, 60, 1)], slo_ms=200)
    answer = summary["answer"]
    assert answer.startswith("Up to 1 concurrent request (all stages) p99 stays under 200 ms")
    assert "throughput 19 req/s at 1 concurrent (one stage: sweep several" in answer
    assert "levels off" not in answer


def test_a_stage_within_the_slo_but_with_failures_is_named_for_its_failures() -> None:
    stages = [
        stage(1, 1, 19.5, 60, 1),
        stage(2, 2, 39, 62, 1),
        stage(3, 4, 70, 70, 2, errors={"status 500": 3}),
    ]
    answer = sweep_analysis(stages, slo_ms=200)["answer"]
    assert answer.startswith(
        "Up to 2 concurrent requests p99 stays under 200 ms and no request fails "
        "(at 4 concurrent 3 of 100 requests failed (status 500 ×3))"
    ), answer


def test_stages_at_one_concurrency_are_not_read_as_growth_under_load() -> None:
    """Another tool's traffic (`load analyze`): two wrk runs at -c2 on different pages make
    two stages at 2 concurrent. What differs between them is the pages, not the load."""
    stages = [stage(1, 2, 90, 30, 1), stage(2, 2, 95, 40, 8)]
    summary = sweep_analysis(stages, slo_ms=200)
    answer = summary["answer"]
    assert "grew most" not in answer and "grew much" not in answer, answer
    assert "still rising" not in answer and not summary["still_rising"]
    assert "growth" not in summary
