"""`djtrace load` where the requests cannot succeed: the answer says so, never a capacity."""

from __future__ import annotations

from pathlib import Path

from djtrace.cli.load_server import free_port

from tests.conftest import run_djtrace
from tests.load_support import gunicorn_command, load_run


def test_a_url_where_nothing_listens_is_a_one_line_error_not_a_run(tmp_path: Path) -> None:
    port = free_port()  # bound and released: nothing listens there now
    result = run_djtrace(
        "load", f"http://127.0.0.1:{port}/books/", "-c", "1", "-d", "0.5",
        "--store", str(tmp_path / "t.sqlite3"),
    )  # fmt: skip
    assert result.returncode == 2, result.stdout[-2000:]
    assert f"nothing answers at http://127.0.0.1:{port}" in result.stderr
    assert "djtrace capture" in result.stderr
    assert "req/s" not in result.stdout and "Traceback" not in result.stderr


def test_a_path_that_404s_is_answered_as_failed_requests_not_as_over_the_slo(
    tmp_path: Path,
) -> None:
    run, out = load_run(
        tmp_path,
        ["/no-such-page/"],
        gunicorn_command("-w", "1"),
        "-c", "1,2", "-d", "0.5", "--warmup", "0", "--no-overhead-check",
    )  # fmt: skip
    first = run["stages"][0]
    assert first["errors"] == {"status 404": first["count"]}
    answer = run["summary"]["answer"]
    assert answer.startswith(
        f"Even at 1 concurrent {first['count']} of {first['count']} requests failed "
        f"(status 404 ×{first['count']})"
    ), answer
    assert "SLO" not in answer.split(";")[0]
    assert answer.split(";")[0] in " ".join(out.split())


def test_a_server_command_in_a_virtualenv_not_activated_says_where_it_is(
    tmp_path: Path,
) -> None:
    import os
    import sys

    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)
    result = run_djtrace(
        "load", "/books/", "-c", "1", "--store", str(tmp_path / "t.sqlite3"),
        "--", "gunicorn", "djtrace.sample_site.wsgi",
        env={"PATH": path},
    )  # fmt: skip
    assert result.returncode == 127, result.stderr
    assert "command not found: gunicorn" in result.stderr
    assert f"it is in {venv_bin}: activate that virtualenv" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_request_past_its_timeout_is_counted_as_a_timeout_and_the_stage_still_ends(
    tmp_path: Path,
) -> None:
    run, out = load_run(
        tmp_path,
        ["/lab/io/?ms=4000"],
        gunicorn_command("-w", "1", "--threads", "4"),
        "-c", "1", "-d", "1", "--warmup", "0", "--timeout", "0.5", "--no-overhead-check",
    )  # fmt: skip
    (stage,) = run["stages"]
    timeouts = stage["errors"].get("timeout", 0)
    assert timeouts >= 1 and stage["errors"] == {"timeout": timeouts}, stage["errors"]
    assert stage["ok"] == 0
    # Each was given up at its time limit (the watchdog looks four times a second).
    for request in stage["requests"]:
        assert 0.5e9 <= request[4] < 1.5e9, request
    # No answer, so no split (the server's trace of it ran on after the client gave up),
    # and no capacity built of timeouts.
    assert not stage["analysis"].get("split"), stage["analysis"]
    answer = run["summary"]["answer"]
    assert f"failed (timeout ×{timeouts})" in answer and "no capacity to report" in answer
    assert "req/s at" not in answer and run["summary"]["knee_stage"] is None


def test_piped_the_report_keeps_every_column_of_its_tables(tmp_path: Path) -> None:
    """Piped (a CI log, `| less`) without COLUMNS, the report is laid out 200 wide, not cut
    to 80: every column of the stage table is there, none of its cells cut short."""
    _, out = load_run(
        tmp_path,
        ["/no-such-page/"],
        gunicorn_command("-w", "1"),
        "-c", "1,2", "-d", "0.5", "--warmup", "0", "--no-overhead-check",
        env={"COLUMNS": ""},
    )  # fmt: skip
    header = next(line for line in out.splitlines() if line.strip().startswith("load "))
    assert header.split() == [
        "load", "req/s", "p50", "p95", "p99", "max", "err",
        "before", "inside", "after", "busy", "X·W", "gen",
    ]  # fmt: skip
    assert "…" not in out.split("mean time per request")[0]
