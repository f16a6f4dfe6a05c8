"""The app's behaviour, exceptions and secrets are exactly what they'd be without djtrace."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.handlers.base import BaseHandler
from django.test import Client
from djtrace import install, installed, trace, uninstall
from djtrace.recorder import add_sink, remove_sink

from tests.helpers import one, only


def test_a_views_exception_reaches_the_caller_unchanged():
    with pytest.raises(RuntimeError) as untraced:
        Client().get("/boom/")
    with trace() as t, pytest.raises(RuntimeError) as traced:
        Client().get("/boom/")
    assert type(traced.value) is type(untraced.value)
    assert str(traced.value) == str(untraced.value) == "boom: deliberate failure for djtrace"
    (tr,) = t.requests
    view = one(tr, "view")
    assert view.error == {
        "type": "builtins.RuntimeError",
        "message": "boom: deliberate failure for djtrace",
    }
    assert tr.request["status"] == 500
    errors = [f for f in tr.to_dict()["findings"] if f["kind"] == "error"]
    assert errors and errors[0]["span"] == view.id


def test_the_500_response_is_the_same_with_and_without_tracing():
    plain = Client(raise_request_exception=False).get("/boom/")
    with trace():
        traced = Client(raise_request_exception=False).get("/boom/")
    assert (traced.status_code, traced.content) == (plain.status_code, plain.content)


def test_authorization_and_cookie_values_never_appear_in_a_trace(client):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username="alice"))
    session_id = client.cookies["sessionid"].value
    with trace() as t:
        response = client.get(
            "/session/?api_token=tok-123-secret&page=2",
            HTTP_AUTHORIZATION="Bearer very-secret-bearer",
            HTTP_X_API_KEY="key-abc-secret",
        )
    assert response.status_code == 200
    (tr,) = t.requests
    document = json.dumps(tr.to_dict())
    for secret in (session_id, "very-secret-bearer", "key-abc-secret", "tok-123-secret"):
        assert secret not in document
    headers = tr.request["headers"]
    assert headers["authorization"] == headers["cookie"] == headers["x-api-key"] == "[redacted]"
    assert tr.request["query"] == "api_token=[redacted]&page=2"
    session_queries = [q for q in only(tr, "db.query") if "django_session" in q.attrs["sql"]]
    assert session_queries
    for query in session_queries:
        assert "[redacted]" in query.attrs["params"]


def test_headers_whose_names_look_sensitive_are_redacted_and_others_kept():
    secret_headers = {
        "HTTP_X_ACCESS_TOKEN": "access-secret-1",
        "HTTP_X_GITLAB_TOKEN": "gitlab-secret-2",
        "HTTP_X_HUB_SIGNATURE_256": "sha256=signature-secret-3",
        "HTTP_API_KEY": "api-secret-4",
        "HTTP_X_SESSION_TOKEN": "session-secret-5",
    }
    with trace() as t:
        Client().get(
            "/books/", HTTP_X_REQUEST_ID="req-7", HTTP_USER_AGENT="curl/8", **secret_headers
        )
    (tr,) = t.requests
    document = json.dumps(tr.to_dict())
    assert not [value for value in secret_headers.values() if value in document]
    headers = tr.request["headers"]
    assert headers["x-hub-signature-256"] == headers["api-key"] == "[redacted]"
    assert headers["x-request-id"] == "req-7" and headers["user-agent"] == "curl/8"


@contextmanager
def _wrapper_installed_before_djtrace(theirs: Callable[..., Any]) -> Iterator[None]:
    """Another tool's `convert_exception_to_response`, in place before djtrace installs."""
    from django.core.handlers import base, exception

    uninstall()
    base.convert_exception_to_response = theirs
    try:
        install()
        yield
    finally:
        uninstall()
        base.convert_exception_to_response = exception.convert_exception_to_response
        install()


def test_another_tools_wrapper_of_every_middleware_layer_still_runs():
    from django.conf import settings
    from django.core.handlers.exception import convert_exception_to_response as djangos

    calls: list[str] = []

    def theirs(get_response):  # type: ignore[no-untyped-def]
        wrapped = djangos(get_response)

        def layer(request):  # type: ignore[no-untyped-def]
            calls.append(request.path)
            return wrapped(request)

        return layer

    with _wrapper_installed_before_djtrace(theirs), trace() as t:
        response = Client().get("/books/fast/")
    assert response.status_code == 200
    assert calls == ["/books/fast/"] * (len(settings.MIDDLEWARE) + 1)  # and the handler core
    assert len(only(t.requests[0], "middleware")) == len(settings.MIDDLEWARE)


def test_another_tools_wrapper_that_lets_exceptions_out_still_does_when_traced():
    def theirs(get_response):  # type: ignore[no-untyped-def]
        return lambda request: get_response(request)  # no exception turned into a response

    with _wrapper_installed_before_djtrace(theirs):
        uninstall()
        with pytest.raises(RuntimeError):
            Client(raise_request_exception=False).get("/boom/")
        install()
        with trace() as t, pytest.raises(RuntimeError):
            Client(raise_request_exception=False).get("/boom/")
    assert one(t.requests[0], "view").error["type"] == "builtins.RuntimeError"


def test_a_failing_sink_is_counted_not_raised():
    def broken(trace):
        raise ValueError("sink is broken")

    add_sink(broken)
    try:
        with trace() as t:
            response = Client().get("/books/fast/")
    finally:
        remove_sink(broken)
    assert response.status_code == 200
    assert t.requests[0].tracer_errors == 1


def test_uninstall_restores_django_and_install_is_idempotent():
    hooked = BaseHandler.get_response
    assert installed() and hasattr(hooked, "__djtrace_original__")
    install()
    assert BaseHandler.get_response is hooked
    uninstall()
    try:
        assert BaseHandler.get_response is hooked.__djtrace_original__
        with trace() as t:
            pass  # trace() installs again
        assert BaseHandler.get_response is not hooked.__djtrace_original__
    finally:
        install()
    with trace() as t:
        Client().get("/books/fast/")
    assert len(t.requests) == 1


def test_ordinary_columns_keep_their_parameters():
    from djtrace.sample_site.bookstore.models import Book

    with trace() as t:
        list(Book.objects.filter(author_id=3, title__startswith="T"))
    (query,) = t.queries
    assert list(query.attrs["params"]) == [3, "T%"]


def _seeded_draws() -> list[float]:
    random.seed(1234)
    Client().get("/books/")
    return [random.random() for _ in range(3)]


def test_a_seeded_random_sequence_is_the_same_traced_or_not():
    untraced = _seeded_draws()
    with trace():
        traced = _seeded_draws()
    assert traced == untraced


def test_an_app_that_reseeds_random_still_gets_a_new_trace_id_per_request():
    with trace() as t:
        for _ in range(3):
            random.seed(42)
            Client().get("/books/")
    assert len({tr.id for tr in t.requests}) == 3
