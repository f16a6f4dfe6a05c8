"""A user's project with its own `cli`, `tracer`, `exporters`, `sample_site` and `djtrace_*`
modules works under djtrace: installed, djtrace adds the one name `djtrace`, and never
shadows a module of the project it traces (issue 15).

The project's /hello/ imports each of those modules and answers 500 unless every one is
the project's own; so a 200 with their words is the proof, under `djtrace request`, a real
gunicorn under `djtrace capture`, and inline `from djtrace import trace`.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import gunicorn.config

from tests.capture_support import (
    Captured,
    exported,
    fetch,
    free_port,
    wait_for_traces,
    wait_until_serving,
)
from tests.user_project import (
    SHADOWING_BODY,
    djtrace_in,
    project_env,
    python_in,
    write_project,
)


def test_request_runs_the_users_modules(tmp_path: Path):
    root = write_project(tmp_path / "site", shadowing=True)
    result = djtrace_in(root, "request", "/hello/", "--format", "json")
    assert result.returncode == 0, result.stderr
    trace = json.loads(result.stdout)
    assert trace["request"]["status"] == 200, result.stdout
    views = [s["name"] for s in trace["spans"] if s["phase"] == "view"]
    assert views == ["shop.views.hello"]
    assert "(from manage.py)" in result.stderr
    tree = djtrace_in(root, "request", "/hello/")
    assert "GET /hello/  →  200 OK" in tree.stdout and "✗" not in tree.stdout


def test_capture_of_a_real_gunicorn_serves_the_users_modules(tmp_path: Path):
    root = write_project(tmp_path / "site", shadowing=True)
    port = free_port()
    server = [sys.executable, "-m", "gunicorn", "shop.wsgi", "-b", f"127.0.0.1:{port}", "-w", "1"]
    if any(s.name == "control_socket_disable" for s in gunicorn.config.KNOWN_SETTINGS):
        server.append("--no-control-socket")
    store = tmp_path / "traces.sqlite3"
    out, err = tmp_path / "capture.out", tmp_path / "capture.err"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "djtrace.cli", "capture", "--store", str(store), "--", *server],
            cwd=root,  # the user runs it from the project's folder
            env=project_env(COLUMNS="200"),
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
        )
    captured = Captured(process, store, port, out, err)
    try:
        wait_until_serving(captured)
        status, body = fetch(f"{captured.base}/hello/")
        assert (status, body.decode()) == (200, SHADOWING_BODY), captured.stderr()
        wait_for_traces(store, 1)
    finally:
        code = captured.stop(signal.SIGTERM)
    assert code == 0, captured.stderr()
    (trace,) = exported(store)
    assert trace["request"]["status"] == 200
    assert [s["name"] for s in trace["spans"] if s["phase"] == "view"] == ["shop.views.hello"]
    assert "is not a package" not in captured.stderr()


INLINE = textwrap.dedent(
    """
    import os

    os.environ["DJANGO_SETTINGS_MODULE"] = "shop.settings"
    import django

    django.setup()
    from django.test import Client
    from djtrace import trace

    import tracer  # the project's own tracer.py, beside djtrace's trace()

    with trace() as t:
        response = Client().get("/hello/")
    print(response.status_code, response.content.decode())
    print(tracer.trace(), len(t.requests), len(t.queries), t.requests[0].request["status"])
    """
)


def test_inline_trace_beside_the_users_tracer_module(tmp_path: Path):
    root = write_project(tmp_path / "site", shadowing=True)
    result = python_in(root, "-c", INLINE)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"200 {SHADOWING_BODY}", "not djtrace 1 1 200"]
