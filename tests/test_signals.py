"""Signal sends as spans, one child per receiver (sync and async), with their work inside."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator

import django
import pytest
from django.test import Client, override_settings
from djtrace import Trace, trace

from tests.helpers import ancestors, parent_past_hops, rendered
from tests.services import inside, spans_of
from tests.services_site import views

ASYNC_RECEIVERS = django.VERSION >= (5, 0)


@pytest.fixture
def site() -> Iterator[None]:
    from django.db import connections

    with connections["default"].cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {views.TABLE} (name varchar(100), password varchar(200))"
        )
    with override_settings(ROOT_URLCONF="tests.services_site.urls"):
        yield


def get(path: str) -> tuple[Trace, dict]:
    with trace() as t:
        response = Client(raise_request_exception=False).get(path)
    assert response.status_code == 200, response.content[:300]
    (request,) = t.requests
    body = json.loads(response.content) if response["Content-Type"] == "application/json" else {}
    return request, body


def test_a_send_is_named_and_its_receiver_holds_the_query_it_ran():
    tr, _ = get("/books/1/")
    (send,) = spans_of(tr, "signal", signal="djtrace.sample_site.bookstore.signals.book_viewed")
    assert send.name == "book_viewed"
    assert send.attrs["sender"] == "Book" and send.attrs["receivers"] == 1
    assert ancestors(tr, send)[0].phase == "view"
    (receiver,) = [s for s in inside(tr, send) if s.phase == "signal.receiver"]
    assert receiver.name == "djtrace.sample_site.bookstore.signals.count_book_view"
    assert receiver.parent == send.id
    (update,) = [s for s in inside(tr, receiver) if s.phase == "db.query"]
    assert update.attrs["sql"].startswith("UPDATE")


def test_django_signals_are_named_by_their_module_variable():
    tr, _ = get("/books/1/")
    (finished,) = spans_of(tr, "signal", signal="django.core.signals.request_finished")
    assert finished.name == "request_finished"
    assert ancestors(tr, finished)[0].phase == "response.close"


def test_sends_without_receivers_for_their_sender_record_nothing():
    tr, _ = get("/books/")  # 40 model instances: pre_init/post_init with no receivers
    assert not [s for s in spans_of(tr, "signal") if s.name in ("pre_init", "post_init")]


def test_sync_and_async_receivers_each_get_a_span_and_send_returns_the_users_receivers(site):
    tr, body = get("/signals/")
    (send,) = spans_of(tr, "signal", signal="tests.services_site.views.order_placed")
    receivers = [s for s in inside(tr, send) if s.phase == "signal.receiver"]
    names = ["tests.services_site.views.record_order"]
    if ASYNC_RECEIVERS:
        names.append("tests.services_site.views.notify_order")
    assert [r.name for r in receivers] == names
    assert send.attrs["receivers"] == len(names)
    # An async receiver of a sync send runs through async_to_sync: its hop's span between.
    assert all(parent_past_hops(tr, r) == send.id for r in receivers)
    assert [s.phase for s in inside(tr, receivers[0]) if s.phase == "db.query"] == ["db.query"]
    if ASYNC_RECEIVERS:
        assert receivers[1].attrs == {"async": True}
    # What send() returned is exactly what Django returns untraced.
    assert body["identity"] == [True] * len(names)
    assert body["receivers"] == [n.rpartition(".")[2] for n in names]
    assert body == Client().get("/signals/").json()


def test_send_robust_marks_the_failing_receiver_and_goes_on(site):
    tr, body = get("/signals/")
    assert body["robust"] == ["ValueError", "str"]
    (send,) = spans_of(tr, "signal", signal="tests.services_site.views.audit")
    broken, quiet = (s for s in inside(tr, send) if s.phase == "signal.receiver")
    assert broken.error == {"type": "builtins.ValueError", "message": "auditor broke"}
    assert quiet.error is None and send.error is None


@pytest.mark.skipif(not ASYNC_RECEIVERS, reason="Signal.asend is Django 5.0+")
def test_asend_from_an_async_view(site):
    tr, body = get("/signals-async/")
    (send,) = spans_of(tr, "signal", signal="tests.services_site.views.order_placed")
    assert send.attrs["async"] is True
    receivers = [
        s.name.rpartition(".")[2] for s in inside(tr, send) if s.phase == "signal.receiver"
    ]
    assert sorted(receivers) == ["notify_order", "record_order"]
    assert body["identity"] == [True, True]


def test_the_tree_shows_the_signal_and_its_receiver():
    from djtrace.cli.render import render_trace

    tr, _ = get("/books/1/")
    text = rendered(render_trace(tr, hide_under_ms=0))
    assert "signal book_viewed (Book) → 1 receiver" in text
    assert "receiver djtrace.sample_site.bookstore.signals.count_book_view" in text


def test_a_signal_that_is_not_a_module_variable_is_traced_unnamed():
    from django.dispatch import Signal

    class Shop:
        refunded = Signal()  # a class attribute: no module-level name to find

    def on_refund(sender, **kwargs):
        return "refunded"

    Shop.refunded.connect(on_refund, weak=False)
    with trace() as t:
        responses = Shop.refunded.send(sender=Shop)
    assert responses == [(on_refund, "refunded")]
    (send,) = spans_of(t.bare, "signal")
    assert send.name == "signal" and send.attrs == {"sender": "Shop", "receivers": 1}
    (receiver,) = spans_of(t.bare, "signal.receiver")
    assert receiver.name.endswith("on_refund") and receiver.parent == send.id


def _logged(func):  # type: ignore[no-untyped-def]
    """A decorator like many apps have: every receiver it wraps runs the same wrapper code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
        return func(*args, **kwargs)

    return wrapper


@_logged
def send_receipt(sender, **kwargs):  # type: ignore[no-untyped-def]
    return "sent"


@_logged
def update_stock(sender, **kwargs):  # type: ignore[no-untyped-def]
    return "updated"


def test_receivers_made_by_one_decorator_keep_their_own_names():
    from django.dispatch import Signal

    ordered = Signal()
    ordered.connect(send_receipt, weak=False)
    ordered.connect(update_stock, weak=False)
    with trace() as t:
        ordered.send(sender=None)
    receivers = [s.name for s in spans_of(t.bare, "signal.receiver")]
    assert receivers == [f"{__name__}.send_receipt", f"{__name__}.update_stock"]
