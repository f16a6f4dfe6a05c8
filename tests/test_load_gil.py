"""The GIL under load: a CPU-bound view in one process with four threads."""

from __future__ import annotations

from pathlib import Path

from tests.load_support import gunicorn_command, load_run


def test_cpu_bound_view_waits_off_cpu_as_threads_are_added_and_the_report_says_so(
    tmp_path: Path,
) -> None:
    run, _ = load_run(
        tmp_path,
        ["/lab/cpu/?ms=20"],
        gunicorn_command("-w", "1", "--threads", "4"),
        "-c", "1,4", "--duration", "2", "--warmup", "0.5", "--no-overhead-check",
    )  # fmt: skip
    one, four = (s["analysis"] for s in run["stages"])
    # Each request burns its 20 ms of its own thread's CPU whatever the load...
    for info in (one, four):
        assert 15_000_000 < info["cpu"]["mean_view_cpu_ns"] < 40_000_000
    # ...but with four threads sharing one interpreter, each takes far longer on the wall:
    # the difference is time off-CPU, waiting for the GIL the other threads hold.
    # (How much longer depends on what else the machine runs: the relations hold anyway.)
    assert four["split"]["inside Django"]["mean"] > one["split"]["inside Django"]["mean"]
    assert four["cpu"]["mean_off_cpu_ns"] > one["cpu"]["mean_off_cpu_ns"]
    assert four["cpu"]["cpu_share"] < one["cpu"]["cpu_share"]
    # Throughput does not follow the threads: one interpreter runs one thread's Python.
    assert run["stages"][1]["throughput"] < 2 * run["stages"][0]["throughput"]
    assert "CPU" in run["summary"]["grew_most"]["why"]
