"""Error pages are phases of their own, and every error is marked once, readably."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from django.test import Client
from djtrace import analysis, trace

from tests.conftest import ROOT, run_djtrace
from tests.helpers import ancestors, one, only


def get(path: str, **extra: str):
    with trace() as t:
        response = Client(raise_request_exception=False).get(path, **extra)
    return t.requests[0], response


def errors(tr) -> list[dict]:
    return [f for f in analysis.findings(tr) if f["kind"] == "error"]


def test_a_404_page_is_its_own_phase_and_its_message_is_readable():
    tr, response = get("/no/such/page/")
    assert response.status_code == 404
    page = one(tr, "exception")
    assert page.name == "Resolver404" and page.attrs["status"] == 404
    assert page.error is None  # the URL resolve span already holds this error
    (finding,) = errors(tr)
    assert finding["message"] == (
        "django.urls.exceptions.Resolver404: no URL pattern matches '/no/such/page/'"
    )
    own = analysis.self_times(tr)[page.id]
    assert own > 0 and dict(analysis.breakdown(tr))["error response"] == own


def test_an_exception_raised_inside_a_middleware_is_marked_where_it_was_turned_into_a_400():
    tr, response = get("/books/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    page = one(tr, "exception")
    assert page.error["type"] == "django.core.exceptions.DisallowedHost"
    assert "evil.example" in page.error["message"]
    common = next(s for s in only(tr, "middleware") if s.name.endswith("CommonMiddleware"))
    assert common in ancestors(tr, page)
    assert not only(tr, "view")
    assert [f["phase"] for f in errors(tr)] == ["exception"]


def test_a_500_marks_the_view_once_and_times_the_error_page():
    tr, response = get("/boom/")
    assert response.status_code == 500
    assert one(tr, "view").error["type"] == "builtins.RuntimeError"
    page = one(tr, "exception")
    assert page.attrs["status"] == 500 and page.error is None
    assert [f["phase"] for f in errors(tr)] == ["view"]


def test_each_trace_names_the_settings_it_ran_under():
    tr, _ = get("/books/fast/")
    assert tr.where["settings"] == "djtrace.sample_site.settings"


def test_queries_django_makes_on_its_own_are_not_blamed_on_the_launcher():
    result = run_djtrace("request", "/session/", "--format", "json")
    assert result.returncode == 0, result.stderr
    spans = json.loads(result.stdout)["spans"]
    sources = [s["attrs"].get("source") for s in spans if s["phase"] == "db.query"]
    assert sources and all(src is None or "bin/" not in src for src in sources)
    # The session is saved by SessionMiddleware after the view: no user code is on the stack.
    session_save = [
        s for s in spans if s["phase"] == "db.query" and "INSERT" in s["attrs"]["sql"].upper()
    ]
    assert session_save and all("source" not in s["attrs"] for s in session_save)


def test_repeat_reports_the_run_it_shows_as_the_median():
    result = run_djtrace("request", "/api/books/", "--repeat", "4")
    assert result.returncode == 0, result.stderr
    shown = re.search(r"→  200 OK  ([\d.]+ m?s)", result.stdout).group(1)
    median = re.search(r"median ([\d.]+ m?s)", result.stdout).group(1)
    assert shown == median


def test_a_project_that_cannot_load_or_connect_is_one_clear_line():
    cases = [
        ({"DJTRACE_SAMPLE_DB": "mysql"}, "DJTRACE_SAMPLE_DB='mysql': use one of"),
        ({"DJTRACE_SAMPLE_CACHE": "memcached"}, "DJTRACE_SAMPLE_CACHE='memcached'"),
        (
            {"DJTRACE_SAMPLE_SESSION_ENGINE": "no_such.engine"},
            "the project failed before it could answer: ModuleNotFoundError",
        ),
        (
            {"DJTRACE_SAMPLE_DB": "postgres", "DJTRACE_SAMPLE_PG_USER": "no_such_role"},
            "sample_site's database is not usable: OperationalError",
        ),
    ]
    for env, message in cases:
        result = run_djtrace("request", "/session/", env=env)
        assert result.returncode == 2, (env, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (
            env,
            result.stderr,
        )


def test_trace_before_django_is_configured_says_what_to_do():
    code = "from djtrace import trace\nwith trace():\n    pass\n"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1
    assert "ImproperlyConfigured: djtrace's trace() needs Django configured first" in result.stderr
    assert "internal error" not in result.stderr
