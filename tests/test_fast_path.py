"""What the recording fast path keeps exactly as it was: source lines, nesting, body sizes.

The hot path shares clock reads between a middleware and the layer inside it, caches the
`path:line` text per code line, reuses one view wrapper per view and reads a plain
response's body without switching context per chunk. None of that may show in a trace.
"""

from __future__ import annotations

import sys

from django.test import Client

from cli.inprocess import RequestSpec, run
from sample_site.bookstore.models import Author, Book
from tests.helpers import one, only
from tracer import trace


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


def test_each_request_gets_its_own_view_span_from_the_shared_wrapper():
    client = Client()
    with trace() as t:
        client.get("/books/")
        client.get("/books/")
    assert len(t.requests) == 2
    views = [one(tr, "view") for tr in t.requests]
    for tr, view in zip(t.requests, views, strict=True):
        assert view.name == "sample_site.bookstore.views.book_list"
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
