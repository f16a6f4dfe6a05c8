"""How spans are recorded on the request path and read afterwards.

A request records plain records and its trace builds Spans from them when first read; a
query's source line is found again without a walk when it repeats a recent one; the span
cap, weakly connected receivers and forked workers behave as they would untraced.
"""

from __future__ import annotations

import gc
import io
import os
import sys
import sysconfig
import threading
import weakref
from collections.abc import Iterator

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.db import connection
from django.db.models.query import QuerySet
from django.dispatch import Signal
from django.template import Context, Template
from django.test import Client
from djtrace import Trace, trace
from djtrace.recorder import config
from djtrace.sample_site.bookstore.models import Book

from tests.helpers import only

HERE = "tests/test_recording.py"


@pytest.fixture
def cap() -> Iterator[None]:
    """A trace holds at most 3 spans while the test runs."""
    before = config.max_spans
    config.max_spans = 3
    try:
        yield
    finally:
        config.max_spans = before


def _executions() -> tuple[list[str], object]:
    """Every statement the database is sent, counted by Django's own execute_wrapper."""
    sent: list[str] = []

    def count(execute, sql, params, many, context):  # type: ignore[no-untyped-def]
        sent.append(sql)
        return execute(sql, params, many, context)

    return sent, count


def test_at_the_span_cap_a_failing_query_runs_once_and_raises_as_untraced(cap):
    sent, count = _executions()
    with trace() as t, connection.execute_wrapper(count), connection.cursor() as cursor:
        for _ in range(4):
            cursor.execute("SELECT 1")
        with pytest.raises(Exception, match="no_such_table"):
            cursor.execute("SELECT * FROM no_such_table")
    assert sent.count("SELECT * FROM no_such_table") == 1
    assert len(t.bare.spans) == 3 and t.bare.dropped_spans >= 2
    assert not [q for q in t.queries if "no_such_table" in q.attrs["sql"]]


class Boom(Exception):
    """Not silenced by the template engine: it reaches the caller."""


class Exploding:
    calls = 0

    @property
    def value(self) -> str:
        Exploding.calls += 1
        raise Boom("rendered")


def test_at_the_span_cap_a_failing_template_renders_once_and_raises_as_untraced(cap):
    template = Template("{{ thing.value }}")
    Exploding.calls = 0
    with trace() as t:
        for _ in range(3):
            Template("ok").render(Context())
        with pytest.raises(Boom):
            template.render(Context({"thing": Exploding()}))
    assert Exploding.calls == 1
    assert t.bare.dropped_spans == 1


def test_a_finished_traces_spans_are_built_once_and_kept():
    with trace() as t:
        Client().get("/books/")
    (tr,) = t.requests
    first = tr.spans
    assert first is tr.spans
    assert [s.id for s in first] == list(range(1, len(first) + 1))
    assert first[0].phase == "request" and first[0].parent is None and first[0].start == 0


def test_threads_reading_a_trace_at_once_get_the_same_spans():
    with trace() as t:
        Client().get("/books/")
    (tr,) = t.requests
    fresh = Trace(tr.request, tr.where)  # the same records, not read yet
    fresh.records, fresh.duration, fresh._t0 = tr.records, tr.duration, tr._t0
    fresh.closed = True
    got: list[object] = []
    readers = [threading.Thread(target=lambda: got.append(fresh.spans)) for _ in range(4)]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    assert all(spans is got[0] for spans in got)
    assert [(s.phase, s.name, s.start) for s in got[0]] == [
        (s.phase, s.name, s.start) for s in tr.spans
    ]


def test_a_trace_read_before_its_response_is_closed_shows_what_ran_so_far():
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/books/",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "HTTP_HOST": "localhost",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
    }
    with trace() as t:
        response = WSGIHandler()(environ, lambda status, headers, exc_info=None: None)
        (tr,) = t.requests
        before = [s.phase for s in tr.spans]
        response.close()
    after = [s.phase for s in tr.spans]
    assert "view" in before and "response.close" not in before
    assert after[: len(before)] == before and "response.close" in after
    assert tr.spans[0].duration == tr.duration > 0


def test_a_trace_read_after_its_block_and_before_its_response_closes_shows_the_close_later():
    with trace() as t:
        response = Client().get("/stream/")
    (tr,) = t.requests
    before = [s.phase for s in tr.spans]  # the block is over; the stream is not read yet
    b"".join(response.streaming_content)
    response.close()
    after = [s.phase for s in tr.spans]
    assert "response.close" not in before
    assert after[: len(before)] == before
    assert "response.close" in after and "signal" in after


def _first_book() -> Book | None:
    return Book.objects.order_by("id").first()


def test_one_call_site_reaching_a_query_directly_or_through_a_helper_gets_each_line():
    fetchers = [Book.objects.order_by("id").first, _first_book] * 3
    with trace() as t:
        for fetch in fetchers:
            here = sys._getframe().f_lineno + 1
            fetch()
    helper = f"{HERE}:{_first_book.__code__.co_firstlineno + 1}"
    assert [q.attrs["source"] for q in t.queries] == [f"{HERE}:{here}", helper] * 3


class OwnIteration(QuerySet):
    """Iterates as QuerySet does, in user code: the same depth of frames, another caller."""

    def __iter__(self):  # type: ignore[no-untyped-def]
        self._fetch_all()
        return iter(self._result_cache)


def test_a_queryset_that_iterates_in_user_code_gets_its_own_line_at_the_same_call_site():
    querysets = [Book.objects.order_by("id"), OwnIteration(model=Book).order_by("id")] * 3
    with trace() as t:
        for queryset in querysets:
            here = sys._getframe().f_lineno + 1
            list(queryset.all())
    own = f"{HERE}:{OwnIteration.__iter__.__code__.co_firstlineno + 1}"
    assert [q.attrs["source"] for q in t.queries] == [f"{HERE}:{here}", own] * 3


def _third_party(source: str, name: str) -> object:
    """A function compiled as if it were installed: its file is under site-packages."""
    filename = os.path.join(sysconfig.get_paths()["purelib"], "thirdparty", "receivers.py")
    namespace: dict[str, object] = {"Book": Book}
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def _users_receiver(sender, **kwargs):  # type: ignore[no-untyped-def]
    return Book.objects.order_by("id").first()


def test_a_third_party_and_a_user_receiver_of_one_signal_get_the_send_and_the_users_line():
    installed = _third_party(
        "def receiver(sender, **kwargs):\n    return Book.objects.order_by('id').first()\n",
        "receiver",
    )
    signal = Signal()
    signal.connect(installed, weak=False)
    signal.connect(_users_receiver, weak=False)
    with trace() as t:
        for _ in range(3):
            here = sys._getframe().f_lineno + 1
            signal.send(sender=None)
    users = f"{HERE}:{_users_receiver.__code__.co_firstlineno + 1}"
    assert [q.attrs["source"] for q in t.queries] == [f"{HERE}:{here}", users] * 3


def test_a_params_list_reused_for_the_next_query_shows_each_querys_own_values():
    with trace() as t, connection.cursor() as cursor:
        params: list[object] = [1]
        cursor.execute("SELECT %s", params)
        params[0] = 2
        cursor.execute("SELECT %s", params)
    assert [s.attrs["params"] for s in t.spans if s.phase == "db.query"] == [[1], [2]]


def test_a_weakly_connected_receiver_is_not_kept_alive_by_tracing():
    signal = Signal()

    def make() -> weakref.ref:
        def receiver(sender: object, **kwargs: object) -> str:
            return "heard"

        signal.connect(receiver)  # weakly, as Django connects by default
        with trace() as t:
            assert signal.send(sender=Book) == [(receiver, "heard")]
        assert [s.name for s in only(t.bare, "signal.receiver")] == [
            f"{__name__}.test_a_weakly_connected_receiver_is_not_kept_alive_by_tracing"
            ".<locals>.make.<locals>.receiver"
        ]
        return weakref.ref(receiver)

    gone = make()
    gc.collect()
    assert gone() is None
    assert not signal.has_listeners(Book)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_worker_does_not_repeat_its_parents_trace_ids():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a gunicorn worker, say
        os.close(read)
        os.write(write, " ".join(Trace().id for _ in range(3)).encode())
        os._exit(0)
    os.close(write)
    parent = {Trace().id for _ in range(3)}
    with os.fdopen(read) as pipe:
        child = set(pipe.read().split())
    os.waitpid(pid, 0)
    assert len(child) == 3 and not parent & child
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in parent | child)


def test_a_sqlite_insert_returning_has_no_made_up_row_count():
    """SQLite's cursor reports the rowcount of an INSERT … RETURNING only once its rows
    are fetched, after execute() returned: the tree said `INSERT … (0 rows)`."""
    from django.db import transaction
    from djtrace.sample_site.bookstore.models import Author

    with trace() as t, transaction.atomic():
        Author.objects.create(name="counted")
        Book.objects.filter(pk=-1).update(title="none")  # a plain UPDATE keeps its count
        transaction.set_rollback(True)
    (insert,) = [q for q in t.queries if q.attrs["sql"].startswith("INSERT")]
    assert "RETURNING" in insert.attrs["sql"]
    assert insert.attrs.get("rows") != 0
    (update,) = [q for q in t.queries if q.attrs["sql"].startswith("UPDATE")]
    assert update.attrs["rows"] == 0
