"""Under ASGI the response's close runs after the body went out (on a thread hop, behind
other requests' sync work): the lab's before/inside/after split ends *inside* when the body
was handed to the server, so *after* — the body's way to the client — is never negative."""

from __future__ import annotations

from pathlib import Path

from djtrace.lab.analysis import AFTER, BEFORE, INSIDE

from tests.load_support import load_run, uvicorn_command


def test_under_uvicorn_the_time_after_django_is_not_negative_and_the_split_adds_up(
    tmp_path: Path,
) -> None:
    run, out = load_run(
        tmp_path,
        ["/lab/io/?ms=5"],  # a sync view: every request queues for the one sync thread
        uvicorn_command(),
        "-c", "1,4", "-d", "1", "--warmup", "0.3", "--no-overhead-check",
    )  # fmt: skip
    for stage in run["stages"]:
        split = stage["analysis"]["split"]
        assert split[AFTER]["p50"] >= 0, (stage["concurrency"], split[AFTER])
        assert split[AFTER]["mean"] >= 0, (stage["concurrency"], split[AFTER])
        total = split[BEFORE]["mean"] + split[INSIDE]["mean"] + split[AFTER]["mean"]
        assert abs(total - stage["latency"]["mean"]) < 0.05 * stage["latency"]["mean"]
        for r in stage["joined"]:  # the close is still in the trace, after the answer
            assert 0 < r["answered_ns"] <= r["inside_ns"]
    assert "after" in out
