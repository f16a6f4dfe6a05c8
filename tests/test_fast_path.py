"""What the recording fast path keeps exactly as it was: source lines, nesting, body sizes.

The hot path shares clock reads between a middleware and the layer inside it, caches the
`path:line` text per call site (by bytecode offset), reuses one view wrapper per view and
reads a plain response's body without switching context per chunk. None of that may show in
a trace.
"""

from __future__ import annotations

import sys
import types

import pytest
from django.test import Client
from djtrace import trace
from djtrace.cli.inprocess import RequestSpec, run
from djtrace.sample_site.bookstore.models import Author, Book

from tests.helpers import one, only


def test_two_query_lines_in_one_function_get_their_own_source_lines():
    with trace() as t:
        first = sys._getframe().f_lineno + 1
        Book.objects.order_by("id").first()
        second = sys._getframe().f_lineno + 1
        Author.objects.order_by("id").first()
        again = sys._getframe().f_lineno + 1
        Book.objects.order_by("id").first()
    sources = [q.attrs["source"] for q in t.queries]
    here = "tests/test_fast_path.py"
    assert sources == [f"{here}:{first}", f"{here}:{second}", f"{here}:{again}"]


def _first_book() -> Book | None:
    return Book.objects.order_by("id").first()


def _first_book_again() -> Book | None:
    return Book.objects.order_by("id").first()


def test_two_functions_querying_from_the_same_bytecode_offset_get_their_own_lines():
    # Same body, so the query's call sits at the same offset in both code objects.
    assert _first_book.__code__.co_code == _first_book_again.__code__.co_code
    with trace() as t:
        for _ in range(2):
            _first_book()
            _first_book_again()
    here = "tests/test_fast_path.py"
    first = f"{here}:{_first_book.__code__.co_firstlineno + 1}"
    again = f"{here}:{_first_book_again.__code__.co_firstlineno + 1}"
    assert [q.attrs["source"] for q in t.queries] == [first, again, first, again]


def test_library_code_carrying_a_user_modules_name_is_walked_past():
    # A library wrapper made with functools.wraps carries the wrapped user function's
    # __module__, so a walk that skipped frames by module name (sys._getframemodulename)
    # would stop there. Frames are told apart by file. Here: Django's QuerySet.first,
    # renamed into this module.
    from django.db.models.query import QuerySet

    first = types.FunctionType(QuerySet.first.__code__, QuerySet.first.__globals__, "first")
    first.__module__ = __name__
    with trace() as t:
        line = sys._getframe().f_lineno + 1
        first(Book.objects.order_by("id"))
    assert [q.attrs["source"] for q in t.queries] == [f"tests/test_fast_path.py:{line}"]


def test_each_request_gets_its_own_view_span_from_the_shared_wrapper():
    client = Client()
    with trace() as t:
        client.get("/books/")
        client.get("/books/")
    assert len(t.requests) == 2
    views = [one(tr, "view") for tr in t.requests]
    for tr, view in zip(t.requests, views, strict=True):
        assert view.name == "djtrace.sample_site.bookstore.views.book_list"
        innermost = only(tr, "middleware")[-1]
        assert view.parent == innermost.id
        assert all(q.parent == view.id for q in tr.queries)
    assert views[0] is not views[1]


def test_a_middleware_hands_over_to_the_next_layer_at_the_same_instant():
    with trace() as t:
        Client().get("/books/")
    middleware = only(t.requests[0], "middleware")
    for outer, inner in zip(middleware, middleware[1:], strict=False):
        assert outer.attrs["inner_start"] == inner.start
        assert outer.attrs["inner_end"] == inner.end


def test_a_plain_response_body_is_measured_in_bytes_and_chunks():
    tr = run(RequestSpec(path="/api/books/"))
    body = one(tr, "response.stream")
    assert body.parent == tr.root.id
    assert body.attrs["chunks"] == 1
    assert body.attrs["bytes"] > 100
    assert body.duration >= 0
    close = one(tr, "response.close")
    assert body.end <= close.start


def test_a_send_without_receivers_returns_and_raises_as_django_does():
    from django.db.models.signals import post_init
    from django.dispatch import Signal

    def outcome(signal: Signal, sender: object) -> object:
        try:
            return signal.send(sender=sender)
        except Exception as exc:  # e.g. a sender the receiver cache cannot weakly reference
            return type(exc)

    lonely = Signal()
    cases = [(lonely, Book), (post_init, Book), (post_init, 1)]
    untraced = [outcome(signal, sender) for signal, sender in cases]
    with trace() as t:
        traced = [outcome(signal, sender) for signal, sender in cases]
    assert traced == untraced
    assert traced[:2] == [[], []]
    assert not only(t.bare, "signal")  # nothing recorded for a send nobody receives


def test_executemany_is_recorded_and_takes_djangos_keyword_argument():
    from django.db import connection

    with trace() as t, connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE fast_path_many (n integer)")
        line = sys._getframe().f_lineno + 1
        cursor.executemany("INSERT INTO fast_path_many (n) VALUES (%s)", param_list=[(1,), (2,)])
        cursor.execute("SELECT count(*) FROM fast_path_many")
        assert cursor.fetchone() == (2,)
    insert = next(q for q in t.queries if q.attrs["sql"].startswith("INSERT"))
    assert insert.attrs["many"] is True and insert.attrs["batch"] == 2
    assert insert.attrs["source"] == f"tests/test_fast_path.py:{line}"


def test_headers_are_read_and_redacted_the_same_on_every_request():
    client = Client()
    with trace() as t:
        for token in ("first", "second"):
            client.get("/books/", HTTP_AUTHORIZATION=f"Bearer {token}", HTTP_X_TRACE_ME=token)
    for tr, token in zip(t.requests, ("first", "second"), strict=True):
        headers = tr.request["headers"]
        assert headers["authorization"] == "[redacted]"
        assert headers["x-trace-me"] == token
        assert "server-name" not in headers and "path-info" not in headers


def test_a_connection_used_again_in_a_request_is_accounted_for_once():
    from django.db import connection

    connection.ensure_connection()  # open before the request: the request reuses it
    with trace() as t:
        Client().get("/books/")  # 21 queries on one connection
    (tr,) = t.requests
    connects = only(tr, "db.connect")
    assert len(connects) == 1, connects
    assert len(tr.queries) >= 21
    # Noticed by the SQL hook at the request's first query, as an instant just before it.
    (reused,) = connects
    assert reused.attrs["action"] == "reused" and reused.duration == 0
    assert reused.start <= min(q.start for q in tr.queries)


def test_a_cursor_used_after_its_connection_closed_records_no_connection():
    from django.db import connection

    cursor = connection.cursor()
    connection.close()
    with trace() as t, pytest.raises(Exception, match="closed"):
        cursor.execute("SELECT 1")  # fails as it does untraced
    assert not only(t.bare, "db.connect")  # no "reused" connection that is not there
    assert len(t.queries) == 1 and t.queries[0].error is not None
