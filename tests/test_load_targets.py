"""What djtrace load sends: the recent captured mix (--from-store), a logged-in user (--user)."""

from __future__ import annotations

import json
from pathlib import Path

from djtrace.sample_site.seed import PASSWORD, USERNAME

from tests.capture_support import capture, fetch, free_port, gunicorn_args, wait_for_traces
from tests.conftest import run_djtrace
from tests.load_support import gunicorn_command, load_run


def test_user_logs_in_once_and_every_request_is_served_as_that_user(tmp_path: Path) -> None:
    run, _ = load_run(
        tmp_path,
        ["/login-required/"],
        gunicorn_command("-w", "1", "--threads", "2"),
        "--user", USERNAME, "--login-url", "/login/", "-c", "2", "--duration", "1",
        "--warmup", "0.2", "--no-overhead-check",
        env={"DJTRACE_LOAD_PASSWORD": PASSWORD},
    )  # fmt: skip
    (stage,) = run["stages"]
    assert run["settings"]["logged_in"] is True
    assert stage["count"] > 5 and stage["errors"] == {}
    assert {row[5] for row in stage["requests"]} == {200}  # not the login redirect (302)


def test_a_wrong_password_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_djtrace(
        "load", "/login-required/", "--user", USERNAME, "--login-url", "/login/", "-c", "1",
        "--store", str(tmp_path / "t.sqlite3"), "--", *gunicorn_command("-w", "1"),
        env={"DJTRACE_LOAD_PASSWORD": "not-the-password"},
    )  # fmt: skip
    assert result.returncode == 2
    assert "logging in at" in result.stderr and "did not work" in result.stderr
    assert "not-the-password" not in result.stderr + result.stdout


def test_from_store_replays_the_captured_mix_weighted_by_how_often_each_was_seen(
    tmp_path: Path,
) -> None:
    port = free_port()
    with capture(tmp_path, gunicorn_args(port, 1, 2), port, "--quiet") as server:
        for path in ["/api/books/"] * 3 + ["/lab/io/?ms=5"]:
            assert fetch(server.base + path)[0] == 200
        assert fetch(server.base + "/form/", data=b"name=x")[0] in (200, 302, 403)  # a POST
        wait_for_traces(server.store, 5)
    store = server.store
    out = tmp_path / "run.json"
    result = run_djtrace(
        "load", "--from-store", "-c", "2", "--duration", "1", "--warmup", "0.2", "--seed", "3",
        "--no-overhead-check", "--store", str(store), "--json", str(out),
        "--", *gunicorn_command("-w", "1", "--threads", "2"),
        timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(out.read_text())
    targets = {t["path"]: t["weight"] for t in run["settings"]["targets"]}
    # GET requests only (a POST is not replayed without its body), weighted by count.
    assert targets == {"/api/books/": 3.0, "/lab/io/?ms=5": 1.0}
    (stage,) = run["stages"]
    assert stage["errors"] == {} and stage["analysis"]["join_share"] > 0.9
