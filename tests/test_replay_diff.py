"""`djtrace replay` and `djtrace diff` on requests captured from a real gunicorn."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
from djtrace.cli.inprocess import RequestSpec, run
from djtrace.compare import compare

from tests.capture_support import (
    Captured,
    capture,
    exported,
    fetch,
    free_port,
    gunicorn_args,
    wait_for_traces,
)
from tests.conftest import run_djtrace


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[Captured, dict[str, str]]]:
    """gunicorn under capture (--capture-body), with a few requests captured: tag → trace id."""
    from djtrace.sample_site.bookstore.models import Book

    tmp = tmp_path_factory.mktemp("replay")
    port = free_port()
    with capture(tmp, gunicorn_args(port, workers=1, threads=2), port, "--capture-body") as srv:
        fetch(f"{srv.base}/books/?tag=books")
        fetch(f"{srv.base}/books/fast/?tag=fast")
        fetch(f"{srv.base}/api/books/?tag=api")
        fetch(f"{srv.base}/login-required/?tag=private", headers={"Cookie": "sessionid=abc123"})
        book = Book.objects.order_by("id").first()
        order = {"name": "Ada", "email": "a@example.com", "book": book.pk, "quantity": 1}
        order["delivery"] = "post"
        fetch(f"{srv.base}/form/?tag=form", data=urlencode(order).encode())
        wait_for_traces(srv.store, 5)
        ids = {t["request"]["query"][4:]: t["id"] for t in exported(srv.store)}
        yield srv, ids
        srv.stop()


def djtrace(srv: Captured, *args: str):
    return run_djtrace(*args, "--store", str(srv.store))


def test_replay_in_process_reproduces_route_status_and_queries(server):
    srv, ids = server
    result = djtrace(srv, "replay", ids["books"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"replaying {ids['books']}: GET /books/?tag=books")
    assert "GET /books/?tag=books  →  200 OK" in out  # the new tree
    assert "original  GET /books/?tag=books  →  200" in out and "21 queries  route 'books/'" in out
    assert "queries 21 → 21" in out
    assert "no change in status, route or queries; only timings differ" in out


def test_replay_repeat_compares_the_median_run(server):
    srv, ids = server
    result = djtrace(srv, "replay", ids["api"], "--repeat", "3")
    assert result.returncode == 0, result.stderr
    assert "3 runs: min " in result.stdout
    assert "no change in status, route or queries" in result.stdout


def test_replay_against_the_captured_server_uses_its_own_trace(server):
    srv, ids = server
    result = djtrace(srv, "replay", ids["fast"], "--target", srv.base)
    assert result.returncode == 0, result.stderr
    assert "queries 1 → 1" in result.stdout
    assert "no change in status, route or queries" in result.stdout
    replayed = [t for t in exported(srv.store) if "x-djtrace-replay" in t["request"]["headers"]]
    assert len(replayed) == 1
    assert replayed[0]["request"]["path"] == "/books/fast/"
    assert replayed[0]["where"]["server"].startswith("gunicorn")


def test_replay_refuses_a_target_off_this_machine(server):
    srv, ids = server
    result = djtrace(srv, "replay", ids["fast"], "--target", "http://192.0.2.10:8000")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --target 'http://192.0.2.10:8000': only loopback")


def test_replay_of_a_logged_in_request_says_to_log_in(server):
    srv, ids = server
    result = djtrace(srv, "replay", ids["private"])
    assert result.returncode == 0, result.stderr
    assert "cookies are never stored, so this replay is anonymous" in result.stdout
    assert "pass --user USERNAME" in result.stdout
    result = djtrace(srv, "replay", ids["private"], "--user", "alice")
    assert result.returncode == 0, result.stderr
    assert "replay is anonymous" not in result.stdout
    assert "changed: status 302 → 200" in result.stdout


def test_replay_sends_the_captured_body(server):
    srv, ids = server
    result = djtrace(srv, "replay", ids["form"])
    assert result.returncode == 0, result.stderr
    # The server refused the POST (CSRF, no token); in-process checks are off like Django's
    # test client, so the replayed body reaches the view: a valid order redirects.
    assert "changed: status 403 → 302" in result.stdout
    assert "not recorded" not in result.stdout


def test_diff_of_a_trace_with_itself_shows_no_change(server):
    srv, ids = server
    result = djtrace(srv, "diff", ids["books"], ids["books"][:8])
    assert result.returncode == 0, result.stderr
    assert "no change: same status, route, queries and timings" in result.stdout


def test_diff_of_the_n_plus_one_page_against_the_fixed_one(server):
    srv, ids = server
    result = djtrace(srv, "diff", ids["books"], ids["fast"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "queries 21 → 1  (-20)" in out
    assert "− 20 × SELECT … FROM bookstore_author WHERE bookstore_author.id = ? LIMIT ?" in out
    assert "+ 1 × SELECT … FROM bookstore_book INNER JOIN bookstore_author" in out
    assert "gone: n+1: 20 similar queries" in out
    assert "phase by phase" in out and "SQL" in out


def test_diff_reads_saved_json_traces(tmp_path, server):
    srv, ids = server
    saved = tmp_path / "books.json"
    result = run_djtrace("request", "/books/", "--format", "json")
    saved.write_text(result.stdout)
    result = djtrace(srv, "diff", str(saved), ids["fast"])
    assert result.returncode == 0, result.stderr
    assert "queries 21 → 1" in result.stdout
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(saved.read_text()), "schema": 42}))
    result = djtrace(srv, "diff", str(bad), ids["fast"])
    assert result.returncode == 2
    assert "trace schema 42 is not supported" in result.stderr


def test_compare_counts_queries_by_shape():
    slow = run(RequestSpec("GET", "/books/"))
    fast = run(RequestSpec("GET", "/books/fast/"))
    diff = compare(slow, fast)
    assert diff.query_counts == (21, 1)
    (author,) = [q for q in diff.removed if "bookstore_author" in q.fingerprint]
    assert (author.a_count, author.b_count, author.delta) == (20, 0, -20)
    assert len(diff.added) == 1 and not diff.same_shape
    assert compare(slow, slow).identical
    again = compare(slow, run(RequestSpec("GET", "/books/")))
    assert again.same_shape and not again.route_changed


# --- replay runs the project the trace came from, warm -------------------------------------

_SETTINGS = """
SECRET_KEY = "replay-test"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "mysite.urls"
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": %r}}
USE_TZ = True
"""
_URLS = """
from django.db import connection
from django.http import HttpResponse
from django.urls import path

_loaded = []  # a one-time cost per process, like a lazily loaded configuration


def hello(request):
    if not _loaded:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            _loaded.append(cursor.fetchone())
    return HttpResponse("hello")


urlpatterns = [path("hello/", hello)]
"""


@pytest.fixture(scope="module")
def mysite(tmp_path_factory) -> tuple[str, dict]:
    """A second project (not sample_site), and a trace of its /hello/ from `djtrace request`."""
    root = tmp_path_factory.mktemp("project")
    (root / "mysite").mkdir()
    (root / "mysite" / "__init__.py").write_text("")
    (root / "mysite" / "settings.py").write_text(_SETTINGS % str(root / "db.sqlite3"))
    (root / "mysite" / "urls.py").write_text(_URLS)
    result = run_djtrace(
        "request", "/hello/", "--settings", "mysite.settings", "--pythonpath", str(root),
        "--format", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    trace = json.loads(result.stdout)
    assert trace["where"]["settings"] == "mysite.settings"
    assert (
        trace["request"]["status"] == 200
        and len([s for s in trace["spans"] if s["phase"] == "db.query"]) == 1
    )  # a fresh process: the one-time query ran
    return str(root), trace


def test_replay_uses_the_settings_the_trace_was_recorded_with(tmp_path, mysite):
    root, trace = mysite
    saved = tmp_path / "hello.json"
    saved.write_text(json.dumps(trace, indent=2))
    # DJANGO_SETTINGS_MODULE says sample_site (the suite sets it): the trace wins.
    result = run_djtrace("replay", str(saved), "--pythonpath", root, "--cold")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "in-process, with settings mysite.settings (the ones the trace was recorded with)" in out
    assert "status 200 → 404" not in out and "queries 1 → 1" in out
    assert "no change in status, route or queries" in out

    store = tmp_path / "store.sqlite3"  # imported: the store row knows nothing of a capture
    assert run_djtrace("import", str(saved), "--store", str(store)).returncode == 0
    result = run_djtrace("replay", trace["id"][:8], "--store", str(store), "--pythonpath", root)
    assert result.returncode == 0, result.stderr
    assert "with settings mysite.settings" in result.stdout


def test_replay_warms_up_first_unless_cold(tmp_path, mysite):
    root, trace = mysite
    saved = tmp_path / "hello.json"
    saved.write_text(json.dumps(trace))
    warm = run_djtrace("replay", str(saved), "--pythonpath", root)
    assert warm.returncode == 0, warm.stderr
    assert "queries 1 → 0" in warm.stdout  # the warm-up run paid the one-time query
    cold = run_djtrace("replay", str(saved), "--pythonpath", root, "--cold")
    assert "queries 1 → 1" in cold.stdout
    assert "cold run: includes this process's one-time costs" in cold.stdout
    help_text = run_djtrace("replay", "--help").stdout
    assert "--cold" in help_text and "warm-up" in help_text


def test_replay_says_which_settings_it_guessed(tmp_path, mysite):
    _, trace = mysite
    unknown = {**trace, "where": {k: v for k, v in trace["where"].items() if k != "settings"}}
    saved = tmp_path / "unknown.json"
    saved.write_text(json.dumps(unknown))
    result = run_djtrace("replay", str(saved), env={"DJANGO_SETTINGS_MODULE": ""})
    assert result.returncode == 0, result.stderr
    assert (
        "in-process, with settings djtrace.sample_site.settings (the bundled sample_site: "
        "the trace does not say which settings it ran with; pass --settings" in result.stdout
    )
    assert "status 200 → 404" in result.stdout  # honest: another project answered
    result = run_djtrace("replay", str(saved), "--settings", "no_such_project.settings")
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot import settings module 'no_such_project")


def test_diff_shows_no_change_as_plus_minus_zero(tmp_path, server):
    srv, ids = server
    a = json.loads(djtrace(srv, "show", ids["fast"], "--format", "json").stdout)
    b = json.loads(json.dumps(a))
    b["id"] = "f" * 16
    b["duration"] -= 3_000  # 3 µs shorter: no visible change
    (root,) = [s for s in b["spans"] if s["parent"] is None]
    root["duration"] -= 3_000
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    result = run_djtrace("diff", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    total = next(line for line in out.splitlines() if line.startswith("total"))
    assert total.split()[-1] == "±0"
    assert "−0.00" not in out and "+0.00" not in out and "0%" not in out
    assert "only timings differ (±0 total)" in out


def test_replay_of_a_test_client_request_claims_no_cookies(tmp_path):
    """Django's test client sends an empty `Cookie:` header on every request; replaying a
    test's trace (`--djtrace-capture`) said "the original request carried cookies"."""
    from django.test import Client
    from djtrace import trace

    with trace() as t:
        Client().get("/books/fast/")
    (tr,) = t.requests
    assert tr.request["headers"]["cookie"] == ""  # nothing there: nothing to redact
    saved, store = tmp_path / "t.json", tmp_path / "s.sqlite3"
    saved.write_text(json.dumps(tr.to_dict()))
    assert run_djtrace("import", str(saved), "--store", str(store)).returncode == 0
    result = run_djtrace("replay", tr.id, "--store", str(store))
    assert result.returncode == 0, result.stderr
    assert "carried cookies" not in result.stdout
    assert "replay is anonymous" not in result.stdout
