"""Every phase of the pipeline, on real requests through sample_site's real stack."""

from __future__ import annotations

import asyncio

import pytest
from django.conf import settings
from django.test import AsyncClient, Client, override_settings
from djtrace import analysis, trace
from djtrace.cli.inprocess import RequestSpec, run

from tests.helpers import ancestors, children, one, only


def get(path: str, **extra: str):
    with trace() as t:
        response = Client(raise_request_exception=False).get(path, **extra)
    assert len(t.requests) == 1
    return t.requests[0], response


def test_middleware_spans_nest_in_settings_order():
    tr, _ = get("/books/")
    middleware = only(tr, "middleware")
    assert [s.name for s in middleware] == list(settings.MIDDLEWARE)
    assert middleware[0].parent == tr.root.id
    for outer, inner in zip(middleware, middleware[1:], strict=False):
        assert inner.parent == outer.id
        assert outer.start <= inner.start and inner.end <= outer.end


def test_middleware_self_time_is_split_into_before_and_after_halves():
    tr, _ = get("/books/")
    kids = analysis.children_of(tr)
    own = analysis.self_times(tr, kids)
    for span in only(tr, "middleware"):
        assert span.start <= span.attrs["inner_start"] <= span.attrs["inner_end"] <= span.end
        before, after = analysis.middleware_halves(span, kids[span.id])
        # The halves cover the middleware's own time except the innermost handler gap.
        assert before + after <= own[span.id]
        assert before > 0 and after > 0


def test_process_view_hooks_are_their_own_spans_before_the_view():
    tr, _ = get("/books/")
    hooks = only(tr, "middleware.process_view")
    assert {h.name for h in hooks} == {
        "django.middleware.csrf.CsrfViewMiddleware",
        "djtrace.sample_site.middleware.ServerTimingMiddleware",
    }
    view = one(tr, "view")
    assert all(h.end <= view.start for h in hooks)


def test_url_resolve_records_route_view_and_url_name():
    tr, _ = get("/books/3/")
    resolve = one(tr, "url.resolve")
    assert resolve.attrs["route"] == "books/<int:pk>/"
    assert resolve.attrs["view"] == "djtrace.sample_site.bookstore.views.BookDetailView"
    assert resolve.attrs["url_name"] == "book-detail"
    assert resolve.attrs["kwargs"] == ["pk"]
    assert tr.request["route"] == "books/<int:pk>/"
    assert tr.request["url_name"] == "book-detail"


class InjectsAViewKwarg:
    def __init__(self, get_response):  # type: ignore[no-untyped-def]
        self.get_response = get_response

    def __call__(self, request):  # type: ignore[no-untyped-def]
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):  # type: ignore[no-untyped-def]
        view_kwargs["injected"] = True  # the resolver match's own dict


def test_url_resolve_shows_the_routes_kwargs_when_process_view_adds_one():
    injecting = [*settings.MIDDLEWARE, f"{__name__}.InjectsAViewKwarg"]
    with override_settings(MIDDLEWARE=injecting):
        tr, response = get("/books/3/")
    assert response.status_code == 200
    assert one(tr, "url.resolve").attrs["kwargs"] == ["pk"]


def test_a_url_miss_is_marked_and_the_404_still_traced():
    tr, response = get("/no/such/page/")
    assert response.status_code == 404
    resolve = one(tr, "url.resolve")
    assert resolve.attrs["resolved"] is False
    assert resolve.error["type"] == "django.urls.exceptions.Resolver404"
    assert tr.request["status"] == 404
    assert not only(tr, "view")


def test_class_based_view_is_named_by_class_and_handler_method():
    tr, _ = get("/books/2/")
    view = one(tr, "view")
    assert view.name == "djtrace.sample_site.bookstore.views.BookDetailView"
    assert view.attrs.items() >= {"class_based": True, "handler": "get"}.items()
    assert view.attrs["cpu_ns"] > 0


def test_queries_nest_under_the_view_with_their_source_line():
    tr, _ = get("/books/")
    view = one(tr, "view")
    queries = only(tr, "db.query")
    assert len(queries) == 21
    for query in queries:
        assert view in ancestors(tr, query)
        assert query.attrs["alias"] == "default"
        assert query.attrs["source"].startswith("sample_site/bookstore/views.py:")
    author_lookups = [q for q in queries if "bookstore_author" in q.attrs["sql"]]
    assert len(author_lookups) == 20
    assert len({q.attrs["source"] for q in author_lookups}) == 1


def test_n_plus_one_is_folded_and_reported_with_its_source():
    tr, _ = get("/books/")
    view_node = next(n for n in _walk(analysis.fold(tr)) if n.phase == "view")
    folded = [n for n in view_node.children if n.phase == "db.query" and n.count == 20]
    assert len(folded) == 1
    n_plus_one = [f for f in analysis.findings(tr) if f["kind"] == "n+1"]
    assert len(n_plus_one) == 1
    assert n_plus_one[0]["count"] == 20
    assert n_plus_one[0]["source"].startswith("sample_site/bookstore/views.py:")
    fast, _ = get("/books/fast/")
    assert not [f for f in analysis.findings(fast) if f["kind"] == "n+1"]


def test_templates_nest_extends_parents_and_includes():
    tr, _ = get("/books/")
    page = next(s for s in only(tr, "template") if s.name == "bookstore/book_list.html")
    base = children(tr, page)
    assert [s.name for s in base] == ["base.html"]
    inside_base = [s.name for s in children(tr, base[0])]
    assert inside_base[0] == "_nav.html"
    assert inside_base.count("bookstore/_book_row.html") == 20
    assert inside_base[-1] == "_footer.html"


def test_jinja2_templates_nest_extends_parents_and_includes_as_django_does():
    tr, response = get("/jinja/")
    assert response.status_code == 200
    jinja = [s for s in only(tr, "template") if s.attrs.get("engine") == "jinja2"]
    assert jinja[0].name == "bookstore/books.jinja"
    (base,) = children(tr, jinja[0])
    assert base.name == "bookstore/base.jinja"
    items = children(tr, base)
    assert [s.name for s in items] == ["bookstore/_book_item.jinja"] * 20
    assert len(jinja) == 22


def test_template_response_is_rendered_in_the_response_render_phase():
    tr, _ = get("/books/1/reviews/")
    render = one(tr, "response.render")
    assert render.name == "bookstore/reviews.html"
    assert one(tr, "view").end <= render.start
    assert [s.name for s in children(tr, render)] == ["bookstore/reviews.html"]


def test_trace_ends_when_the_response_is_closed():
    tr, _ = get("/books/fast/")
    close = one(tr, "response.close")
    assert close.parent == tr.root.id
    assert children(tr, tr.root)[-1] is close
    assert tr.closed and tr.duration == tr.root.duration
    assert close.end <= tr.root.end


def test_streaming_body_is_timed_and_its_queries_nest_inside_it():
    tr = run(RequestSpec(path="/stream/"))
    stream = one(tr, "response.stream")
    assert stream.attrs["bytes"] > 100 and stream.attrs["chunks"] == 21
    queries = only(tr, "db.query")
    assert queries and all(q.parent == stream.id for q in queries)
    assert one(tr, "view").end <= stream.start
    assert stream.end <= one(tr, "response.close").start


def test_the_phase_table_adds_up_to_the_wall_time():
    tr, _ = get("/books/")
    rows = dict(analysis.breakdown(tr))
    assert sum(rows.values()) == tr.duration
    assert rows["SQL"] > 0 and rows["templates"] > 0 and rows["view"] > 0
    assert rows["unaccounted"] >= 0


def test_async_view_stays_async_under_asgi():
    async def request():
        with trace() as t:
            return t, await AsyncClient().get("/async/")

    t, response = asyncio.run(request())
    assert response.status_code == 200
    (tr,) = t.requests
    assert tr.where["mode"] == "async"
    view = one(tr, "view")
    assert view.name == "djtrace.sample_site.bookstore.views.async_books"
    assert len(only(tr, "db.query")) == 2
    assert tr.closed


def test_async_view_through_the_real_asgi_handler():
    tr = run(RequestSpec(path="/async/", asgi=True))
    assert tr.request["status"] == 200
    assert tr.where["mode"] == "async"
    assert [s.name for s in only(tr, "middleware")] == list(settings.MIDDLEWARE)
    body = one(tr, "response.stream")
    assert body.attrs["bytes"] > 0
    assert tr.closed
    # Every phase ends inside the request, whichever Django closes the response where.
    assert all(s.start >= 0 and s.end <= tr.root.end for s in tr.spans)


def test_bare_orm_work_inside_trace_is_kept():
    from djtrace.sample_site.bookstore.models import Book

    with trace() as t:
        assert Book.objects.count() == 20
    assert not t.requests
    assert len(t.queries) == 1
    assert t.queries[0].attrs["source"].startswith("tests/test_pipeline_phases.py:")


def test_requests_outside_trace_are_not_recorded():
    from djtrace.recorder import add_sink, remove_sink

    seen = []
    add_sink(seen.append)
    try:
        assert Client().get("/books/fast/").status_code == 200
    finally:
        remove_sink(seen.append)
    assert seen == []


@pytest.mark.parametrize("path", ["/api/books/", "/books/", "/stream/"])
def test_tracing_does_not_change_the_response(path: str):
    plain = Client().get(path)
    with trace():
        traced = Client().get(path)
    assert traced.status_code == plain.status_code
    content = b"".join(traced.streaming_content) if traced.streaming else traced.content
    expected = b"".join(plain.streaming_content) if plain.streaming else plain.content
    assert content == expected


def _walk(nodes):
    for node in nodes:
        yield node
        yield from _walk(node.children)
