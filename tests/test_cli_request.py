"""`djtrace request` as a user runs it: the real command line in a child process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from django.conf import settings
from djtrace import Trace

from tests.conftest import run_djtrace


def test_books_tree_shows_every_phase_of_the_pipeline():
    result = run_djtrace("request", "/books/")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("GET /books/  →  200 OK")
    positions = [out.index(f" {path.rpartition('.')[2]}  before ") for path in settings.MIDDLEWARE]
    assert positions == sorted(positions), "middleware must be listed in settings order"
    assert out.count("before ") >= len(settings.MIDDLEWARE)
    assert "URL resolve 'books/' → djtrace.sample_site.bookstore.views.book_list [book-list]" in out
    assert "view djtrace.sample_site.bookstore.views.book_list" in out
    assert "SQL × 20 similar: SELECT … FROM bookstore_author WHERE" in out
    assert "views.py:" in out
    for template in (
        "bookstore/book_list.html",
        "base.html",
        "_nav.html",
        "bookstore/_book_row.html  × 20",
    ):
        assert f"template {template}" in out
    assert "response close" in out
    assert "n+1: 20 similar queries from sample_site/bookstore/views.py:" in out
    for row in ("middleware (before)", "URL resolve", "SQL", "templates", "unaccounted", "total"):
        assert row in out
    assert "21 queries" in out


def test_json_format_is_the_documented_trace_document():
    result = run_djtrace("request", "/books/2/", "--format", "json")
    assert result.returncode == 0, result.stderr
    trace = Trace.from_dict(json.loads(result.stdout))
    assert trace.request["route"] == "books/<int:pk>/"
    assert trace.request["status"] == 200
    assert {s.phase for s in trace.spans} >= {
        "request",
        "middleware",
        "url.resolve",
        "view",
        "db.query",
        "template",
        "response.close",
    }


def test_repeat_shows_the_median_run_and_the_spread():
    result = run_djtrace("request", "/api/books/", "--repeat", "3")
    assert result.returncode == 0, result.stderr
    assert "3 runs: min " in result.stdout and "median" in result.stdout


def test_post_with_a_form_body_and_a_logged_in_user():
    result = run_djtrace(
        "request",
        "POST",
        "/form/",
        "--data",
        "name=Ann&email=ann@example.com&book=1&quantity=1&delivery=post",
    )
    assert result.returncode == 0, result.stderr
    assert "POST /form/  →  302 Found" in result.stdout  # valid: redirected after the POST
    enforced = run_djtrace("request", "POST", "/form/", "--data", "name=Ann", "--enforce-csrf")
    assert "POST /form/  →  403 Forbidden" in enforced.stdout
    private = run_djtrace("request", "/login-required/", "--user", "alice")
    assert private.returncode == 0, private.stderr
    assert "→  200 OK" in private.stdout


def test_async_view_under_asgi():
    result = run_djtrace("request", "/async/", "--asgi")
    assert result.returncode == 0, result.stderr
    assert "view djtrace.sample_site.bookstore.views.async_books" in result.stdout
    assert " async" in result.stdout


def test_404_and_500_still_show_their_tree():
    missing = run_djtrace("request", "/no/such/page/")
    assert missing.returncode == 0
    assert "→  404 Not Found" in missing.stdout and "no match (404)" in missing.stdout
    boom = run_djtrace("request", "/boom/")
    assert boom.returncode == 0
    assert "→  500 Internal Server Error" in boom.stdout
    assert "✗ RuntimeError: boom: deliberate failure for djtrace" in boom.stdout


def test_a_project_that_is_not_sample_site(tmp_path: Path):
    project = tmp_path / "shop"
    project.mkdir()
    (project / "__init__.py").write_text("")
    (project / "settings.py").write_text(
        textwrap.dedent(
            f"""
            SECRET_KEY = "x"
            ALLOWED_HOSTS = ["shop.example"]
            ROOT_URLCONF = "shop.urls"
            INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth"]
            MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
            DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3",
                                      "NAME": "{tmp_path / "shop.sqlite3"}"}}}}
            """
        )
    )
    (project / "urls.py").write_text(
        textwrap.dedent(
            """
            from django.contrib.auth.models import User
            from django.http import JsonResponse
            from django.urls import path

            def hello(request):
                return JsonResponse({"users": User.objects.count()})

            urlpatterns = [path("hello/", hello)]
            """
        )
    )
    env = {"PYTHONPATH": str(tmp_path), "DJANGO_SETTINGS_MODULE": "shop.settings"}
    migrated = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "-v0"], env={**os.environ, **env}, cwd=tmp_path
    )
    assert migrated.returncode == 0
    result = run_djtrace(
        "request", "/hello/", "--settings", "shop.settings", "--pythonpath", str(tmp_path)
    )
    assert result.returncode == 0, result.stderr
    assert "GET /hello/  →  200 OK" in result.stdout
    assert "├ CommonMiddleware  before " in result.stdout
    assert "view shop.urls.hello" in result.stdout
    assert "1 query (" in result.stdout
    # The same project found through DJANGO_SETTINGS_MODULE, as manage.py users have it set.
    by_env = run_djtrace("request", "/hello/", env=env)
    assert by_env.returncode == 0 and "GET /hello/  →  200 OK" in by_env.stdout


def test_bad_input_is_one_clear_line_and_a_non_zero_exit():
    cases = [
        (
            ("request", "/books/", "--settings", "no_such_project.settings"),
            "cannot import settings",
        ),
        (("request", "books/"), "must start with '/'"),
        (("request", "/books/", "-H", "no colon here"), "malformed header"),
        (("request", "FETCH", "/books/"), "unknown HTTP method"),
        (("request", "/books/", "--json", "{not json"), "--json is not valid JSON"),
        (("request", "/login-required/", "--user", "nobody"), "no user 'nobody'"),
        (("request", "/books/", "--pythonpath", "/no/such/dir"), "is not a directory"),
    ]
    for args, message in cases:
        result = run_djtrace(*args)
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr + result.stdout
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (
            args,
            result.stderr,
        )


def test_help_has_examples():
    result = run_djtrace("request", "--help")
    assert result.returncode == 0
    assert "djtrace request POST /form/" in result.stdout
