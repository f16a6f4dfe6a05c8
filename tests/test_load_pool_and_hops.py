"""What gives first, named: a small PostgreSQL pool under 8 threads, and thread hops under ASGI."""

from __future__ import annotations

import os
from pathlib import Path

import django
import pytest

from tests.conftest import run_djtrace
from tests.load_support import gunicorn_command, load_run, uvicorn_command
from tests.services import pg_database


@pytest.mark.postgres
@pytest.mark.skipif(django.VERSION < (5, 1), reason="Django's connection pool needs 5.1+")
def test_a_pool_of_two_under_eight_threads_names_the_pool_checkout_wait(
    tmp_path: Path, postgres: dict
) -> None:
    name = f"djtrace_load_pool_{os.getpid()}"
    with pg_database(postgres, name):
        env = {
            "DJTRACE_SAMPLE_DB": "postgres",
            "DJTRACE_SAMPLE_PG_NAME": name,
            "DJTRACE_SAMPLE_PG_POOL_MAX": "2",
            "DJTRACE_SAMPLE_PG_POOL_MIN": "2",
        }
        run, out = load_run(
            tmp_path,
            ["/lab/hold-db/?ms=40"],
            gunicorn_command("-w", "1", "--threads", "8"),
            "-c",
            "1,8",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--no-overhead-check",
            env=env,
        )
    one, eight = run["stages"]
    assert one["errors"] == {} and eight["errors"] == {}
    wait = [s["analysis"]["db"]["pool_wait"] for s in (one, eight)]
    # Alone, a request finds a free pooled connection; eight threads share two of them.
    assert wait[1]["p95"] > 10 * max(wait[0]["p95"], 1_000_000)
    # Two connections held 40 ms each: at most 2 / 40 ms = 50 requests a second.
    assert eight["throughput"] < 1.2 * 50
    summary = run["summary"]
    assert summary["grew_most"]["component"] == "pool checkout wait"
    assert "pool" in summary["grew_most"]["why"]
    assert "pool checkout wait" in out


def test_a_sync_middleware_under_uvicorn_shows_its_thread_hops(tmp_path: Path) -> None:
    run, out = load_run(
        tmp_path,
        ["/lab/async-io/?ms=20"],
        uvicorn_command(),
        "-c",
        "1,4",
        "--duration",
        "1.5",
        "--warmup",
        "0.5",
        "--no-overhead-check",
        env={"DJTRACE_SAMPLE_SYNC_MIDDLEWARE": "1"},
    )
    for stage in run["stages"]:
        info = stage["analysis"]
        assert stage["errors"] == {} and info["join_share"] > 0.9
        # Into a thread for the sync middleware, back to the loop for the async view.
        assert info["hops"]["per_request"] >= 2
        assert info["hops"]["wait"]["mean"] > 0
        assert info["phases"]["thread hops"]["mean"] > 0
    assert "thread hops a request" in out
    # Each joined request names its trace, where the hop is a span of its own.
    trace_id = run["stages"][0]["joined"][0]["trace"]
    shown = run_djtrace("show", trace_id, "--store", str(tmp_path / "traces.sqlite3"))
    assert shown.returncode == 0, shown.stderr
    assert "sync_to_async SyncOnlyMiddleware" in shown.stdout
