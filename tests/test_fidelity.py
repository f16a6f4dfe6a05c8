"""Every count equal to Django's, every line pointing at the right place (issue 16).

Real third-party packages throughout: a Django REST framework API (tests/drf_site),
django-debug-toolbar's URLs in a project's URLconf (tests/toolbar_site), Jinja2, and Django's
own counters: `CaptureQueriesContext` and the `template_rendered` signal of its test
environment.
"""

from __future__ import annotations

import functools
import json
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import connections
from django.http import StreamingHttpResponse
from django.test import AsyncClient, Client, override_settings
from django.test.signals import template_rendered
from django.test.utils import (
    CaptureQueriesContext,
    setup_test_environment,
    teardown_test_environment,
)
from djtrace import Trace, trace
from djtrace.analysis import findings
from djtrace.sample_site.bookstore.models import Book

from tests import services
from tests.conftest import ROOT, run_djtrace
from tests.helpers import children, only
from tests.services_site.views import TABLE

DRF_TEMPLATES = [
    {**settings.TEMPLATES[0], "DIRS": [str(ROOT / "tests" / "drf_site" / "templates")]},
    *[{**t, "DIRS": [str(ROOT / "tests" / "drf_site" / "jinja2")]} for t in settings.TEMPLATES[1:]],
]
drf_site = override_settings(
    ROOT_URLCONF="tests.drf_site.urls",
    TEMPLATES=DRF_TEMPLATES,
    REST_FRAMEWORK={"DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]},
)

ORDER = "name=Ann&email=a@b.co&book=1&quantity=1&delivery=post"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
NEW_BOOK = {"title": "Counted", "price": "9.50", "published": "2024-01-02", "author": 2}

# (method, path, body, content type): every sample_site page, and what it answers.
SAMPLE_PAGES = [
    ("GET", "/", "", None),
    ("GET", "/books/", "", None),
    ("GET", "/books/fast/", "", None),
    ("GET", "/books/1/", "", None),
    ("GET", "/books/1/reviews/", "", None),
    ("GET", "/books/999999/reviews/", "", None),
    ("GET", "/stream/", "", None),
    ("GET", "/api/books/", "", None),
    ("GET", "/async/", "", None),
    ("GET", "/boom/", "", None),
    ("GET", "/jinja/", "", None),
    ("GET", "/cached/", "", None),
    ("GET", "/session/", "", None),
    ("GET", "/login-required/", "", None),
    ("GET", "/login/", "", None),
    ("POST", "/login/", "username=nobody&password=wrong", FORM),
    ("GET", "/form/", "", None),
    ("POST", "/form/", ORDER, FORM),
    ("POST", "/form/", "name=", FORM),
    ("GET", "/no/such/page/", "", None),
]
DRF_PAGES = [
    ("GET", "/api/books/", "", None),
    ("GET", "/api/books/recent/", "", None),
    ("GET", "/api/books/1/", "", None),
    ("POST", "/api/books/", "new", JSON),
    ("PATCH", "/api/books/1/", json.dumps({"title": "Patched"}), JSON),
    ("PUT", "/api/books/2/", "new", JSON),
    ("POST", "/api/books/", json.dumps({"title": ""}), JSON),
    ("GET", "/authors/", "", None),
]


def _body(body: str) -> str:
    if body != "new":
        return body
    publisher = Book.objects.order_by("id").first().publisher_id  # type: ignore[union-attr]
    return json.dumps({**NEW_BOOK, "publisher": publisher})


def _wsgi(method: str, path: str, body: str, content_type: str | None) -> None:
    client = Client(raise_request_exception=False)
    response = client.generic(method, path, body, content_type or "text/plain")
    if response.streaming:
        b"".join(response)  # as a WSGI server sends it; the body's queries run here


def _asgi(method: str, path: str, body: str, content_type: str | None) -> None:
    async def call() -> None:
        client = AsyncClient(raise_request_exception=False)
        response = await client.generic(method, path, body, content_type or "text/plain")
        if response.streaming:
            with warnings.catch_warnings():  # a sync body served asynchronously
                warnings.simplefilter("ignore")
                [chunk async for chunk in response]  # as ASGIHandler sends it

    # Thread-sensitive work (the ORM, sync middleware) comes back to this thread, so
    # CaptureQueriesContext sees this thread's connection, the one the queries use.
    async_to_sync(call)()


RUNNERS = {"wsgi": _wsgi, "asgi": _asgi}


@pytest.fixture(autouse=True)
def books_as_seeded() -> Iterator[None]:
    """The DRF API writes to the suite's sample database: put the books back after."""
    kept = {b.pk: b for b in Book.objects.all()}
    yield
    Book.objects.exclude(pk__in=kept).delete()
    for book in Book.objects.all():
        if book.title != kept[book.pk].title or book.price != kept[book.pk].price:
            kept[book.pk].save()


@pytest.fixture
def django_test_environment() -> Iterator[None]:
    """Django's test environment, as `manage.py test` and pytest-django set it up: it
    replaces `Template._render` (after djtrace hooked it) to send `template_rendered`."""
    try:
        setup_test_environment()
    except RuntimeError:  # already set up by the test runner (pytest-django)
        yield
        return
    try:
        yield
    finally:
        teardown_test_environment()


def counted(run: Callable[[], Any], alias: str = "default") -> tuple[Trace, list[str], list[str]]:
    """Run `run()` traced; the trace, and what Django counted: queries, templates."""
    rendered: list[str] = []

    def receiver(sender: Any, template: Any, **kwargs: Any) -> None:
        rendered.append(template.name or "<string>")

    template_rendered.connect(receiver, weak=False)
    try:
        with CaptureQueriesContext(connections[alias]) as django, trace() as t:
            run()
    finally:
        template_rendered.disconnect(receiver)
    (request,) = t.requests
    return request, [q["sql"] for q in django.captured_queries], rendered


def verbs(sqls: list[str]) -> list[str]:
    return [sql.split(None, 1)[0].upper() for sql in sqls]


def django_templates(tr: Trace) -> list[str]:
    return sorted(s.name for s in only(tr, "template") if s.attrs.get("engine") == "django")


@pytest.mark.parametrize("mode", ["wsgi", "asgi"])
@pytest.mark.parametrize(
    ("site", "pages"),
    [("sample_site", SAMPLE_PAGES), ("drf_site", DRF_PAGES)],
)
def test_counts_equal_djangos_own_on_every_page(django_test_environment, site, pages, mode):
    runner = RUNNERS[mode]
    with drf_site if site == "drf_site" else override_settings():
        for method, path, body, content_type in pages:
            payload = _body(body)
            tr, queries, templates = counted(
                functools.partial(runner, method, path, payload, content_type)
            )
            where = f"{mode} {method} {path}"
            assert tr.closed, where
            assert verbs([q.attrs["sql"] for q in tr.queries]) == verbs(queries), where
            assert len(tr.queries) == len(queries), where
            assert django_templates(tr) == sorted(templates), where


# --- 2: BEGIN, COMMIT and ROLLBACK are queries, as Django counts them ------------------------


@pytest.fixture(scope="module")
def pg_alias(postgres: dict) -> Iterator[str]:
    with services.pg_alias(postgres, "djtrace_test_fidelity", "fidelitypg") as alias:
        yield alias


@pytest.fixture(params=["default", pytest.param("postgres", marks=pytest.mark.postgres)])
def alias(request: pytest.FixtureRequest) -> Iterator[str]:
    name = request.getfixturevalue("pg_alias") if request.param == "postgres" else "default"
    with connections[name].cursor() as cursor:
        cursor.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (name varchar(100), password text)")
    with override_settings(ROOT_URLCONF="tests.services_site.urls"):
        yield name


@pytest.mark.parametrize("scenario", ["commit", "rollback", "set_rollback", "savepoint", "raise"])
def test_transaction_statements_are_counted_as_django_counts_them(alias, scenario):
    tr, queries, _ = counted(
        functools.partial(_wsgi, "GET", f"/tx/{scenario}/?db={alias}", "", None), alias
    )
    mine = [q.attrs["sql"] for q in tr.queries if q.attrs["alias"] == alias]
    assert verbs(mine) == verbs(queries)
    assert {"COMMIT", "ROLLBACK"} & set(verbs(mine))  # the block's end is there
    # The block's end is a query inside its block, and never a finding.
    assert not [f for f in findings(tr) if f["kind"] in ("n+1", "duplicate")]


def test_drf_create_and_update_count_their_commit(django_test_environment):
    with drf_site:
        for method, path, body in (
            ("POST", "/api/books/", _body("new")),
            ("PATCH", "/api/books/1/", json.dumps({"title": "Again"})),
        ):
            tr, queries, _ = counted(functools.partial(_wsgi, method, path, body, JSON))
            mine = verbs([q.attrs["sql"] for q in tr.queries])
            assert mine == verbs(queries) and len(tr.queries) == len(queries)
            assert "COMMIT" in mine


# --- 1: hooks survive another library patching Django after djtrace -------------------------


def test_templates_stay_traced_when_the_debug_toolbar_replaces_template_render():
    """tests/toolbar_site includes debug_toolbar.urls: importing it (on the first request)
    replaces Template._render with a function that never calls djtrace's hook."""
    plain = run_djtrace("request", "/books/", "--format", "json")
    toolbar = run_djtrace(
        "request", "/books/", "--format", "json", "--settings", "tests.toolbar_site.settings"
    )
    assert plain.returncode == 0 and toolbar.returncode == 0, toolbar.stderr
    expected, seen = json.loads(plain.stdout), json.loads(toolbar.stdout)
    templates = [s["name"] for s in seen["spans"] if s["phase"] == "template"]
    assert templates == [s["name"] for s in expected["spans"] if s["phase"] == "template"]
    assert templates.count("bookstore/_book_row.html") == Book.objects.count()
    # ...and the trace says what happened.
    (note,) = [f["message"] for f in seen["findings"] if f["kind"] == "hook"]
    assert note.startswith("django.template.base.Template._render was replaced by ")


def test_templates_stay_traced_in_djangos_test_environment(django_test_environment):
    from django.template.base import Template
    from djtrace.patching import displacements

    with trace() as t:
        Client().get("/books/")
    (tr,) = t.requests
    page = next(s for s in only(tr, "template") if s.name == "bookstore/book_list.html")
    assert [s.name for s in children(tr, page) if s.phase == "template"] == ["base.html"]
    rows = [s for s in only(tr, "template") if s.name == "bookstore/_book_row.html"]
    assert len(rows) == Book.objects.count()
    assert any("instrumented_test_render" in note for note in displacements())
    assert hasattr(Template._render, "__djtrace_original__")
    # Every pytest-django run has it: hooked again, but no note in each trace.
    assert not tr.where.get("hooks_displaced")


def test_a_replacement_that_calls_djtraces_hook_is_not_hooked_twice():
    from django.template.base import Template

    previous = Template._render

    def timed_render(self: Template, context: Any) -> Any:  # another tool's, calling through
        return previous(self, context)

    Template._render = timed_render
    try:
        with trace() as t:
            Client().get("/books/")
    finally:
        Template._render = previous
    (tr,) = t.requests
    rows = [s for s in only(tr, "template") if s.name == "bookstore/_book_row.html"]
    assert len(rows) == Book.objects.count()  # once each, not twice
    assert not [f for f in findings(tr) if f["kind"] == "hook"]


# --- 4 and 5: lines that point at the right place; one problem, one finding -----------------


def _source_text(source: str) -> str:
    path, line = source.rsplit(":", 1)
    return (ROOT / path).read_text().splitlines()[int(line) - 1].strip()


def test_serializer_method_field_n_plus_one_points_at_the_serializer():
    with drf_site, trace() as t:
        Client().get("/api/books/recent/")
    (tr,) = t.requests
    sources = [q.attrs.get("source") for q in tr.queries]
    assert _source_text(sources[0]) == (
        "return Response(serializer.data)  # the books' query runs in here, the N+1 deeper"
    )
    assert {_source_text(s) for s in sources[1:]} == {
        "return book.author.name  # the N+1: one query per book (the tests look for this line)"
    }
    (n_plus_one,) = [f for f in findings(tr) if f["kind"] == "n+1"]
    assert n_plus_one["source"] == sources[1]


@functools.singledispatch
def _fetch(ids: Any) -> Any:
    raise TypeError(ids)


def _by_callback(ids: tuple[int, ...]) -> Any:
    return Book.objects.in_bulk(list(ids))  # the callback's own line


# A list reaches the ORM through library frames only (singledispatch's wrapper, twice), a
# tuple through the user's callback: both at the same depth, under the same two frames.
_fetch.register(list, functools.singledispatch(Book.objects.in_bulk))
_fetch.register(tuple, _by_callback)


def test_a_callback_between_library_frames_gets_its_own_line():
    with trace() as t:
        for ids in ([1, 2], (3, 4), [5, 6], (7, 8)):
            _fetch(ids)  # the loop's line
    tr = t.bare
    lines = [_source_text(q.attrs["source"]) for q in tr.queries]
    callback = "return Book.objects.in_bulk(list(ids))  # the callback's own line"
    loop = "_fetch(ids)  # the loop's line"
    assert lines == [loop, callback, loop, callback]


def test_queries_a_template_runs_name_the_template_and_its_line():
    with drf_site, trace() as t:
        Client().get("/authors/")
    (tr,) = t.requests
    (n_plus_one,) = [f for f in findings(tr) if f["kind"] == "n+1"]
    assert n_plus_one["template"] == "drf_site/authors.html:3"
    assert _source_text(n_plus_one["source"]).startswith("return render(")
    assert n_plus_one["message"].startswith(
        "6 similar queries from template drf_site/authors.html:3 (rendered from tests/drf_site/"
    )
    assert "one per bookstore_author.id: " in n_plus_one["message"]


def test_jinja2_queries_point_at_the_template_line():
    from django.template import engines

    with drf_site:
        template = engines["jinja2"].get_template("drf_site/authors.jinja")
        with trace() as t:
            template.render({"books": list(Book.objects.order_by("id")[:3])})
    tr = t.bare
    authors = [q for q in tr.queries if "bookstore_author" in q.attrs["sql"]]
    assert len(authors) == 3
    assert {q.attrs["source"] for q in authors} == {
        "tests/drf_site/jinja2/drf_site/authors.jinja:3"
    }


def test_one_n_plus_one_is_one_finding_with_the_values_that_differ():
    def page() -> None:
        for _ in range(3):
            for book in Book.objects.order_by("id")[:4]:
                book.author.name  # noqa: B018

    with trace() as t:
        page()
    tr = t.bare
    found = [f for f in findings(tr) if f["kind"] in ("n+1", "duplicate")]
    # One for the authors, one for the book list run three times; no duplicate per author.
    assert sorted(f["kind"] for f in found) == ["duplicate", "n+1"]
    (n_plus_one,) = [f for f in found if f["kind"] == "n+1"]
    assert n_plus_one["count"] == 12 and n_plus_one["duplicates"] == 8
    assert n_plus_one["values"] == 4 and n_plus_one["differs"] == "bookstore_author.id"
    authors = sorted({b.author_id for b in Book.objects.order_by("id")[:4]})
    assert f"one per bookstore_author.id: {', '.join(map(str, authors))}" in n_plus_one["message"]
    assert "8 of them repeat an earlier one exactly" in n_plus_one["message"]


# --- 7: Django's own warnings stay where Django puts them ----------------------------------


async def _async_chunks() -> Any:
    yield b"streaming "
    yield b"content"


def _sync_chunks() -> Iterator[bytes]:
    yield b"streaming "
    yield b"content"


def test_djangos_streaming_warnings_name_the_caller_while_recording():
    with trace():
        response = StreamingHttpResponse(_async_chunks())
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert b"".join(list(response)) == b"streaming content"
    assert [Path(w.filename).name for w in caught] == [Path(__file__).name]

    async def consume() -> list[warnings.WarningMessage]:
        with trace():
            response = await AsyncClient().get("/stream/")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                assert b"".join([chunk async for chunk in response])
            response.close()
        return caught

    caught = async_to_sync(consume)()
    assert [Path(w.filename).name for w in caught] == [Path(__file__).name]
    assert "must consume synchronous iterators" in str(caught[0].message)


# --- 8: stats groups by what identifies a page --------------------------------------------


def test_stats_tells_drf_actions_apart_and_groups_by_route_when_asked(tmp_path):
    from djtrace.exporters.store import TraceStore

    with drf_site, trace() as t:
        client = Client()
        client.get("/api/books/")
        client.post("/api/books/", _body("new"), content_type=JSON)
        client.get("/api/books/1/")
        client.patch("/api/books/1/", json.dumps({"title": "x"}), content_type=JSON)
    views = [tr.request["view"] for tr in t.requests]
    assert views == [f"tests.drf_site.views.BookViewSet.{a}" for a in ("list", "create")] + [
        f"tests.drf_site.views.BookViewSet.{a}" for a in ("retrieve", "partial_update")
    ]
    store = tmp_path / "traces.sqlite3"
    with TraceStore.open(store, create=True) as opened:
        opened.add(t.requests)
    by_page = run_djtrace("stats", "--store", str(store), "--format", "json")
    by_view = run_djtrace("stats", "--store", str(store), "--format", "json", "--by", "view")
    by_path = run_djtrace("stats", "--store", str(store), "--format", "json", "--by", "path")
    assert by_page.returncode == by_view.returncode == by_path.returncode == 0, by_view.stderr
    pages = {(r["method"], r["route"]) for r in json.loads(by_page.stdout)}
    assert pages == {
        ("GET", "api/books/$"),
        ("POST", "api/books/$"),
        ("GET", "api/books/(?P<pk>[^/.]+)/$"),
        ("PATCH", "api/books/(?P<pk>[^/.]+)/$"),
    }
    assert {r["route"] for r in json.loads(by_view.stdout)} == set(views)
    assert {r["route"] for r in json.loads(by_path.stdout)} == {"/api/books/", "/api/books/1/"}


def test_wagtail_pages_are_named_by_their_page_type(tmp_path):
    """Every Wagtail page is one route and one view: the page type tells them apart."""
    pytest.importorskip("wagtail")
    import subprocess
    import sys

    from djtrace.aggregate import by_group

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.wagtail_site.settings",
        "DJTRACE_WAGTAIL_DB": str(tmp_path / "wagtail.sqlite3"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "tests.wagtail_site.probe"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["statuses"] == [200, 200, 200]
    home, post = (
        "tests.wagtail_site.models.HomePage.serve",
        "tests.wagtail_site.models.BlogPage.serve",
    )
    assert [view for _, view in result["pages"]] == [home, post, home]
    (route,) = {route for route, _ in result["pages"]}
    rows = [("GET", (route, view), 1_000_000, 1, {}) for route, view in result["pages"]]
    groups = {s.route: s.count for s in by_group(rows, "page")}
    assert groups == {f"{route} · HomePage.serve": 2, f"{route} · BlogPage.serve": 1}


def test_stats_splits_a_catch_all_route_by_view():
    from djtrace.aggregate import by_group

    rows = [
        ("GET", ("^((?:[\\w\\-]+/)*)$", "blog.models.BlogPage.serve"), 5, 2, {}),
        ("GET", ("^((?:[\\w\\-]+/)*)$", "home.models.HomePage.serve"), 7, 3, {}),
        ("GET", ("books/", "shop.views.books"), 9, 1, {}),
    ]
    labels = sorted(s.route for s in by_group(rows, "page"))
    assert labels == [
        "^((?:[\\w\\-]+/)*)$ · BlogPage.serve",
        "^((?:[\\w\\-]+/)*)$ · HomePage.serve",
        "books/",
    ]
    assert len(by_group(rows, "route")) == 2
