"""Every middleware style is one span, in onion order, in its own mode (sync or async)."""

from __future__ import annotations

import asyncio

from django.conf import settings
from django.test import AsyncClient, Client, override_settings
from djtrace import trace

from tests.helpers import one, only, parent_past_hops

STYLES = [
    "tests.timing_site.middleware.DualModeMiddleware",
    "tests.timing_site.middleware.async_only_middleware",
    "tests.timing_site.middleware.HooksMiddleware",
]
STACK = [*settings.MIDDLEWARE, *STYLES]
with_styles = override_settings(ROOT_URLCONF="tests.timing_site.urls", MIDDLEWARE=STACK)


def _names(tr) -> list[str]:
    return [s.name for s in only(tr, "middleware")]


@with_styles
def test_every_style_nests_in_settings_order_under_wsgi():
    with trace() as t:
        response = Client().get("/hello/")
    assert response.status_code == 200 and response["X-Async-Only"] == "yes"
    (tr,) = t.requests
    assert _names(tr) == STACK
    spans = only(tr, "middleware")
    # Between an async-only layer and its sync neighbours, the async_to_sync hop's span.
    assert all(
        parent_past_hops(tr, inner) == outer.id
        for outer, inner in zip(spans, spans[1:], strict=False)
    )


@with_styles
def test_every_style_nests_in_settings_order_under_asgi():
    async def request():
        with trace() as t:
            return t, await AsyncClient().get("/hello/")

    t, response = asyncio.run(request())
    assert response.status_code == 200 and response["X-Async-Only"] == "yes"
    (tr,) = t.requests
    assert _names(tr) == STACK
    assert tr.where["mode"] == "async"


@with_styles
def test_process_template_response_hook_is_its_own_span_after_the_view():
    with trace() as t:
        response = Client().get("/books/1/reviews/")
    assert response.status_code == 200 and response.context_data["hooked"] is True
    (tr,) = t.requests
    hook = one(tr, "middleware.process_template_response")
    assert hook.name == "tests.timing_site.middleware.HooksMiddleware"
    assert one(tr, "view").end <= hook.start <= one(tr, "response.render").start


@with_styles
def test_process_exception_hook_is_its_own_span_and_its_response_is_kept():
    with trace() as t:
        response = Client(raise_request_exception=False).get("/missing-key/")
    assert response.status_code == 418
    assert response.content == b"handled by HooksMiddleware"
    (tr,) = t.requests
    view = one(tr, "view")
    assert view.error["type"] == "builtins.KeyError"
    hook = one(tr, "middleware.process_exception")
    assert hook.name == "tests.timing_site.middleware.HooksMiddleware"
    assert view.end <= hook.start
    assert tr.request["status"] == 418


@with_styles
def test_template_response_hook_under_asgi_keeps_django_happy():
    async def request():
        with trace() as t:
            return t, await AsyncClient().get("/books/1/reviews/")

    t, response = asyncio.run(request())
    assert response.status_code == 200
    (tr,) = t.requests
    assert one(tr, "middleware.process_template_response").parent is not None
