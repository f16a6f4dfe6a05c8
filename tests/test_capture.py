"""`djtrace capture` around real servers: every request of every worker lands in the store once.

gunicorn (2 workers × 4 threads, forked) and uvicorn (2 spawned workers) serve sample_site
on 127.0.0.1 under capture; a few hundred concurrent, uniquely tagged requests go in;
SIGTERM stops the server; each tag must be in the store exactly once, with only its own
spans (the right path, route and query count).
"""

from __future__ import annotations

import json
import signal
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from djtrace.cli.inprocess import RequestSpec, run

from tests.capture_support import (
    capture,
    exported,
    fetch,
    free_port,
    gunicorn_args,
    uvicorn_args,
    wait_for_traces,
)
from tests.conftest import run_djtrace

PAGES = [
    "/books/",
    "/books/fast/",
    "/api/books/",
    "/stream/",
    "/async/",
    "/books/2/reviews/",
    "/boom/",
    "/no-such-page/",
]
REQUESTS = 300
CLIENTS = 16


@pytest.fixture(scope="module")
def expected() -> dict[str, tuple[int, int, str | None]]:
    """(status, queries, route) of each page, from one in-process request through the stack."""
    out = {}
    for page in PAGES:
        trace = run(RequestSpec("GET", page))
        out[page] = (trace.request["status"], len(trace.queries), trace.request["route"])
    assert out["/books/"][1] == 21 and out["/books/fast/"][1] == 1  # the pages we think
    return out


def _load(base: str) -> dict[str, tuple[str, int]]:
    """REQUESTS tagged GETs over PAGES from CLIENTS threads: tag → (page, status)."""
    jobs = {f"tag={i}": PAGES[i % len(PAGES)] for i in range(REQUESTS)}

    def one(item: tuple[str, str]) -> tuple[str, tuple[str, int]]:
        tag, page = item
        status, _ = fetch(f"{base}{page}?{tag}")
        return tag, (page, status)

    with ThreadPoolExecutor(CLIENTS) as pool:
        return dict(pool.map(one, jobs.items()))


def _check_store(
    traces: list[dict[str, Any]],
    sent: dict[str, tuple[str, int]],
    expected: dict[str, tuple[int, int, str | None]],
) -> set[int]:
    tags = Counter(t["request"]["query"] for t in traces)
    assert set(tags) == set(sent), "a request is missing from the store, or one is extra"
    assert all(n == 1 for n in tags.values()), [t for t, n in tags.items() if n > 1]
    for trace in traces:
        page, status = sent[trace["request"]["query"]]
        want_status, want_queries, want_route = expected[page]
        request, spans = trace["request"], trace["spans"]
        assert request["path"] == page
        assert request["status"] == status == want_status, (page, request["status"], status)
        assert request["route"] == want_route
        ids = [s["id"] for s in spans]
        assert len(ids) == len(set(ids))
        assert all(s["parent"] in set(ids) for s in spans if s["parent"] is not None)
        roots = [s for s in spans if s["parent"] is None]
        assert [(r["phase"], r["name"]) for r in roots] == [("request", f"GET {page}")]
        resolves = [s for s in spans if s["phase"] == "url.resolve"]
        assert len(resolves) == 1
        assert resolves[0]["attrs"]["resolved"] is (want_route is not None)
        if want_route is not None:
            assert resolves[0]["name"] == want_route
        queries = [s for s in spans if s["phase"] == "db.query"]
        assert len(queries) == want_queries, (page, len(queries), want_queries)
    return {t["where"]["pid"] for t in traces}


def test_gunicorn_workers_and_threads_every_request_stored_once(tmp_path, expected):
    port = free_port()
    with capture(tmp_path, gunicorn_args(port, workers=2, threads=4), port) as server:
        sent = _load(server.base)
        code = server.stop(signal.SIGTERM)
    out = server.stdout()
    assert code == 0, server.stderr()[-3000:]
    assert f"{REQUESTS} requests recorded into {server.store}" in out
    assert "the server exited with 0" in out
    assert "passing SIGTERM to the server" in out
    lines = out.splitlines()
    final_counts = lines[lines.index(next(x for x in lines if "requests recorded into" in x)) - 1]
    assert final_counts.startswith(f"── {REQUESTS} requests · 2xx ")
    assert lines.count(final_counts) == 1  # the summary is printed once
    # one live line per request: time, worker pid/thread, method, path, status, time, queries
    lines = [line for line in out.splitlines() if "/books/fast/?tag=" in line]
    assert len(lines) == len([p for p, _ in sent.values() if p == "/books/fast/"])
    assert all(" GET " in line and " 200 " in line and line.endswith(" 1 q") for line in lines)
    pids = _check_store(exported(server.store), sent, expected)
    assert len(pids) == 2, f"expected both gunicorn workers to serve requests, got {pids}"
    assert "0 dropped" in out


def test_uvicorn_workers_every_request_stored_once_with_bodies(tmp_path, expected):
    port = free_port()
    with capture(tmp_path, uvicorn_args(port, workers=2), port, "--capture-body") as server:
        sent = _load(server.base)
        form = b"name=Ada&password=hunter2&quantity=1"
        status, _ = fetch(f"{server.base}/form/?tag=form", data=form)
        payload = json.dumps({"title": "Dune", "api_key": "k-123"}).encode()
        fetch(
            f"{server.base}/api/books/?tag=json",
            data=payload,
            headers={"Content-Type": "application/json"},
        )
        code = server.stop(signal.SIGTERM)
    assert code == 0, server.stderr()[-3000:]
    traces = exported(server.store)
    by_tag = {t["request"]["query"]: t for t in traces}
    posted = by_tag.pop("tag=form")["request"]
    assert posted["method"] == "POST" and posted["status"] == status == 403  # CSRF, as usual
    assert posted["body"] == "name=Ada&password=[redacted]&quantity=1"
    assert "hunter2" not in json.dumps(traces) and "k-123" not in json.dumps(traces)
    assert json.loads(by_tag.pop("tag=json")["request"]["body"]) == {
        "title": "Dune",
        "api_key": "[redacted]",
    }
    pids = _check_store(list(by_tag.values()), sent, expected)
    assert len(pids) == 2, f"expected both uvicorn workers to serve requests, got {pids}"
    assert all(t["where"]["mode"] == "async" for t in by_tag.values())
    assert f"{REQUESTS + 2} requests recorded" in server.stdout()


def test_runserver_with_autoreloader_is_traced_in_its_child(tmp_path):
    """runserver re-executes itself (the autoreloader): the child process is the one traced."""
    port = free_port()
    server_cmd = [sys.executable, "sample_site/manage.py", "runserver", f"127.0.0.1:{port}"]
    with capture(tmp_path, server_cmd, port, "--tree-over", "0") as server:
        status, _ = fetch(f"{server.base}/books/?tag=rs")
        # runserver's threads are daemons: a request still closing when Ctrl-C lands is cut
        # short (without djtrace too), so stop once it is stored.
        wait_for_traces(server.store, 1)
        code = server.stop(signal.SIGINT)
    assert status == 200
    assert code == 0, server.stderr()[-3000:]
    out = server.stdout()
    assert "GET /books/?tag=rs  →  200 OK" in out  # --tree-over 0: the tree, live
    assert "SQL × 20 similar" in out
    (trace,) = exported(server.store)
    assert trace["request"]["query"] == "tag=rs"
    assert trace["where"]["pid"] != server.process.pid  # the reloader's child served it


def test_runserver_started_as_python_m_django_is_traced(tmp_path):
    """`python -m django runserver --settings …`: runpy looks `django` up (find_spec) before
    it imports it, and the autoreloader's child is started the same way; both must still
    be armed (they once recorded nothing: "djtrace never became active")."""
    port = free_port()
    server_cmd = [
        sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}",
        "--settings", "djtrace.sample_site.settings",
    ]  # fmt: skip
    with capture(tmp_path, server_cmd, port) as server:
        status, _ = fetch(f"{server.base}/books/fast/?tag=m-django")
        wait_for_traces(server.store, 1)
        code = server.stop(signal.SIGINT)
    assert status == 200
    assert code == 0, server.stderr()[-3000:]
    assert "djtrace capture: 1 request recorded into" in server.stdout()
    (trace,) = exported(server.store)
    assert trace["request"]["query"] == "tag=m-django"
    assert trace["where"]["pid"] != server.process.pid  # the reloader's child served it


def test_capture_stops_on_sigint_when_started_with_sigint_ignored(tmp_path):
    """`djtrace capture -- … &` in a script starts with SIGINT ignored; `kill -INT` must
    still stop the server (which must not inherit the ignored SIGINT)."""
    port = free_port()
    server_cmd = [
        sys.executable, "sample_site/manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"
    ]  # fmt: skip
    with capture(tmp_path, server_cmd, port, sigint_ignored=True) as server:
        status, _ = fetch(f"{server.base}/books/fast/?tag=bg")
        wait_for_traces(server.store, 1)
        code = server.stop(signal.SIGINT)  # hangs (then fails) if the server ignores it
    assert status == 200
    assert code == 0, server.stderr()[-3000:]
    out = server.stdout()
    assert "djtrace: passing SIGINT to the server" in out
    assert "djtrace capture: 1 request recorded into" in out
    assert "the server exited with 0." in out
    assert sum(line.startswith("── 1 request · 2xx 1") for line in out.splitlines()) == 1


def test_capture_says_why_nothing_was_recorded(tmp_path):
    store = str(tmp_path / "s.sqlite3")
    # A Django command: djtrace is active in it, but no request ever arrives.
    result = run_djtrace(
        "capture", "--store", store, "--", sys.executable, "sample_site/manage.py", "check"
    )
    assert result.returncode == 0, result.stderr
    assert "djtrace capture: 0 requests recorded" in result.stdout
    assert "no request arrived: djtrace was tracing the server (pid " in result.stdout
    assert "sets up Django" not in result.stdout
    # Not Django at all, and killed by a signal.
    killed = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    result = run_djtrace("capture", "--store", store, "--", sys.executable, "-c", killed)
    assert result.returncode == 128 + signal.SIGTERM
    assert "the server was killed by SIGTERM." in result.stdout
    assert "djtrace never became active in the command" in result.stdout
    assert "was it a Python command that sets up Django" in result.stdout


def test_capture_passes_the_exit_code_through(tmp_path):
    result = run_djtrace(
        "capture",
        "--store",
        str(tmp_path / "s.sqlite3"),
        "--",
        sys.executable,
        "-c",
        "import sys; sys.exit(3)",
    )
    assert result.returncode == 3
    assert "0 requests recorded" in result.stdout
    assert "no request was recorded" in result.stdout


def test_capture_of_a_missing_command_is_a_clear_error(tmp_path):
    result = run_djtrace("capture", "--store", str(tmp_path / "s.sqlite3"), "--", "no-such-server")
    assert result.returncode == 127
    assert result.stderr.strip() == "error: command not found: no-such-server"


def test_capture_keeps_an_existing_sitecustomize_working(tmp_path):
    """The bootstrap hides the project's own sitecustomize; it must still run, first."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import os\nos.environ['FROM_USER_SITE'] = 'yes'\n")
    script = "import os, sys; print('user site:', os.environ.get('FROM_USER_SITE'))"
    env = {"PYTHONPATH": str(site)}
    result = run_djtrace(
        "capture",
        "--store",
        str(tmp_path / "s.sqlite3"),
        "--",
        sys.executable,
        "-c",
        script,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "user site: yes" in result.stdout


def test_capture_installs_nothing_when_django_is_never_set_up(tmp_path):
    script = (
        "import sys; print('tracing modules:', "
        "sorted(m for m in sys.modules if m.startswith(('djtrace', 'django'))))"
    )
    result = run_djtrace(
        "capture", "--store", str(tmp_path / "s.sqlite3"), "--", sys.executable, "-c", script
    )
    assert result.returncode == 0, result.stderr
    # Only the bootstrap's own module (and the packages it sits in) is imported.
    assert "tracing modules: ['djtrace', 'djtrace.cli', 'djtrace.cli.autotrace']" in result.stdout


def test_store_file_and_directory_are_private(tmp_path):
    store = tmp_path / "private" / "traces.sqlite3"
    result = run_djtrace("capture", "--store", str(store), "--", sys.executable, "-c", "pass")
    assert result.returncode == 0, result.stderr
    assert oct(store.stat().st_mode & 0o777) == oct(0o600)
    assert oct(store.parent.stat().st_mode & 0o777) == oct(0o700)
