"""What the tracer records for the concurrency lab (briefs' lab contract; issues 16 and 20):
the root from the handler's entry, the load tag, CPU beside wall time, thread hops, pool
checkouts. Real requests through Django's own WSGI and ASGI handlers (`djtrace request`'s
in-process runner), the test client, and the real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import django
import pytest
from asgiref.sync import sync_to_async
from django.core.signals import request_started
from django.test import Client, override_settings
from djtrace import Trace, trace
from djtrace.cli.inprocess import RequestSpec, run

from tests import lab_trace_site as site
from tests.conftest import run_djtrace
from tests.helpers import ancestors, children, one, only, parent_past_hops

SITE = override_settings(ROOT_URLCONF="tests.lab_trace_site")
SYNC_ONLY = "djtrace.sample_site.lab_middleware.SyncOnlyMiddleware"


def get(path: str, **headers: str) -> Trace:
    with SITE, trace() as t:
        assert Client().get(path, **headers).status_code == 200
    (tr,) = t.requests
    return tr


@pytest.fixture
def slow_request_started() -> Iterator[None]:
    request_started.connect(site.slow_receiver, dispatch_uid="lab-slow-receiver")
    try:
        yield
    finally:
        request_started.disconnect(dispatch_uid="lab-slow-receiver")


# --- the root covers what the server hands Django (issue 16 item 3) -------------------------


@pytest.mark.parametrize("asgi", [False, True], ids=["wsgi", "asgi"])
def test_a_request_started_receiver_is_inside_the_trace(slow_request_started, asgi):
    tr = run(RequestSpec(path="/books/fast/", asgi=asgi))
    root = tr.root
    signal = next(s for s in only(tr, "signal") if s.name == "request_started")
    (receiver,) = [s for s in tr.spans if s.name == "tests.lab_trace_site.slow_receiver"]
    # (Django 4.2's ASGI handler sends it through sync_to_async: a hop between.)
    assert parent_past_hops(tr, signal) == root.id and signal in ancestors(tr, receiver)
    assert receiver.duration >= site.RECEIVER_SLEEP_S * 1e9
    assert signal.end <= only(tr, "middleware")[0].start  # before the middleware chain
    assert tr.duration >= receiver.duration + one(tr, "view").duration
    if asgi:  # the body is read before request_started, and inside the root too
        body = one(tr, "request.body")
        assert body.parent == root.id and body.end <= signal.start
    else:
        assert tr.where["thread_id"] == threading.get_ident()
        assert root.attrs["cpu_ns"] > 0


class Stopped(Exception):
    pass


def _stop_here(**kwargs: Any) -> None:
    raise Stopped("the server stopped this request at request_started")


def test_a_request_stopped_before_get_response_keeps_what_the_server_handed_over():
    """gunicorn's sync worker, stopped by SIGINT inside request_started, answers the client
    with its own 500: the trace has the query, headers, load tag and worker all the same."""
    from wsgiref.util import setup_testing_defaults

    from django.core.handlers.wsgi import WSGIHandler

    environ = {
        "PATH_INFO": "/books/fast/",
        "QUERY_STRING": "page=2&token=s3cret",
        "HTTP_X_DJTRACE_LOAD": f"run=run7;stage=2;seq=41;sent={time.time_ns()}",
        "HTTP_AUTHORIZATION": "Bearer s3cret",
    }
    setup_testing_defaults(environ)
    request_started.connect(_stop_here, dispatch_uid="lab-stop-here")
    try:
        with trace() as t, pytest.raises(Stopped):
            WSGIHandler()(environ, lambda status, headers, exc_info=None: None)
    finally:
        request_started.disconnect(dispatch_uid="lab-stop-here")
    (tr,) = t.requests
    assert tr.closed and tr.root.error["type"].endswith("Stopped")
    assert tr.request["query"] == "page=2&token=[redacted]"
    assert tr.request["headers"]["authorization"] == "[redacted]"
    assert tr.request["load"]["run"] == "run7" and tr.request["load"]["seq"] == 41
    assert tr.where["pid"] > 0 and tr.where["thread_id"] == threading.get_ident()
    assert "s3cret" not in json.dumps(tr.to_dict())


def test_the_root_is_named_by_the_request_django_built():
    tr = run(RequestSpec(path="/books/fast/?page=1"))
    assert tr.root.name == "GET /books/fast/"
    assert tr.request["route"] == "books/fast/" and tr.request["status"] == 200


# --- --json under ASGI sends the body Django reads (issue 16 item 6) -------------------------


@pytest.mark.parametrize("asgi", [False, True], ids=["wsgi", "asgi"])
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_a_json_body_reaches_a_drf_view_byte_for_byte(method, asgi):
    body = b'{"title": "Dune", "pages": 412}'
    site.received.clear()
    spec = RequestSpec(
        method=method,
        path="/echo/",
        headers=[("Content-Type", "application/json")],
        body=body,
        asgi=asgi,
    )
    with SITE:
        tr = run(spec)
    assert site.received == [body]
    assert tr.request["status"] == (201 if method == "POST" else 200)


def test_djtrace_request_posts_json_under_asgi():
    result = run_djtrace(
        "request",
        "POST",
        "/echo/",
        "--json",
        '{"title": "Dune"}',
        "--asgi",
        "--settings",
        "tests.lab_trace_settings",
    )
    assert result.returncode == 0, result.stderr
    assert "POST /echo/  →  201 Created" in result.stdout


# --- the load tag, the clock, where (lab contract 1, 2, 4) -----------------------------------


def test_the_load_tag_becomes_request_load_and_leaves_the_headers():
    before = time.time_ns()
    tr = get("/books/fast/", HTTP_X_DJTRACE_LOAD="run=r-1_a;stage=2;seq=7;sent=1700000000000")
    assert tr.request["load"] == {"run": "r-1_a", "stage": 2, "seq": 7, "sent_ns": 1700000000000}
    assert "x-djtrace-load" not in tr.request["headers"]
    assert before <= tr.start_ns == tr.started_at <= time.time_ns()
    assert tr.where["thread_id"] == threading.get_ident()


@pytest.mark.parametrize(
    "tag", ["run=r;stage=x;seq=1;sent=2", "run=has space;stage=1;seq=1;sent=2", "", "seq=1"]
)
def test_a_malformed_load_tag_is_ignored(tag):
    tr = get("/books/fast/", HTTP_X_DJTRACE_LOAD=tag)
    assert "load" not in tr.request
    assert "x-djtrace-load" not in tr.request["headers"]
    assert tr.request["status"] == 200


# --- CPU beside wall time (lab contract 3) -------------------------------------------------


def test_cpu_ns_tells_a_cpu_bound_view_from_one_waiting_on_io():
    cpu = get("/lab/cpu/?ms=30")
    io = get("/lab/io/?ms=60")
    cpu_view, io_view = one(cpu, "view"), one(io, "view")
    assert cpu_view.attrs["cpu_ns"] >= 30_000_000  # it spins until its thread used 30 ms
    assert io_view.attrs["cpu_ns"] < io_view.duration / 2  # asleep: off the CPU
    for tr in (cpu, io):
        assert tr.root.attrs["cpu_ns"] >= one(tr, "view").attrs["cpu_ns"]


# --- thread hops (lab contract 5) ----------------------------------------------------------


def test_sync_to_async_hops_under_asgi_are_spans_with_their_wait():
    with override_settings(MIDDLEWARE=[*django.conf.settings.MIDDLEWARE, SYNC_ONLY]):
        tr = run(RequestSpec(path="/books/fast/", asgi=True))
    hops = only(tr, "async.hop")
    assert hops and all(h.name.startswith(("sync_to_async ", "async_to_sync ")) for h in hops)
    for hop in (h for h in hops if h.name.startswith("sync_to_async ")):
        assert hop.attrs["wait_ns"] >= 0
        assert hop.attrs["thread"] != tr.where["thread"]  # ran off the event loop's thread
        # Its thread's CPU, but for the response's close(): the trace ends inside that one.
        assert ("cpu_ns" in hop.attrs) is (hop.name != "sync_to_async HttpResponseBase.close")
    (layer,) = [s for s in only(tr, "middleware") if s.name == SYNC_ONLY]
    assert any(a.phase == "async.hop" for a in ancestors(tr, layer))
    assert one(tr, "view").parent is not None
    # close() runs in its hop, so the close phase (request_finished inside) nests in it:
    # counted once, not beside the hop as well.
    close = one(tr, "response.close")
    (close_hop,) = [h for h in hops if h.name == "sync_to_async HttpResponseBase.close"]
    assert close.parent == close_hop.id
    assert any(s.name == "request_finished" for s in children(tr, close))
    # The close() hop ends with the trace; nothing outlives the root.
    root = tr.root
    assert all(s.duration >= 0 and s.end <= root.end for s in tr.spans)
    assert root.attrs["cpu_ns"] > 0  # under ASGI: what its sync hops used


def test_a_cancelled_hop_lets_cancelled_error_through_and_is_not_an_error():
    async def cancel_a_hop() -> None:
        task = asyncio.ensure_future(sync_to_async(time.sleep, thread_sensitive=False)(0.2))
        await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with trace() as t:
        asyncio.run(cancel_a_hop())
    (hop,) = only(t.bare, "async.hop")
    assert hop.name == "sync_to_async sleep" and hop.error is None and hop.duration >= 0


def test_no_hop_span_without_a_trace():
    result = asyncio.run(sync_to_async(lambda: threading.current_thread().name)())
    assert result != threading.current_thread().name  # it hopped, and nothing was recorded


# --- pool checkouts (lab contract 6) -------------------------------------------------------


@contextmanager
def pooled_alias(postgres: dict[str, Any], pool: dict[str, Any]) -> Iterator[None]:
    from django.db import connections

    from tests.services import pg_database

    with pg_database(postgres, "djtrace_test_lab_pool"):
        configured = connections.configure_settings(
            {
                "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
                site.POOLED: {
                    "ENGINE": "django.db.backends.postgresql",
                    "NAME": "djtrace_test_lab_pool",
                    "HOST": postgres["host"],
                    "PORT": str(postgres["port"]),
                    "USER": postgres["user"],
                    "OPTIONS": {"pool": pool},
                },
            }
        )
        connections.settings[site.POOLED] = configured[site.POOLED]
        try:
            yield
        finally:
            connections[site.POOLED].close_pool()
            del connections[site.POOLED]
            del connections.settings[site.POOLED]


def _at_once(requests: int) -> list[Trace]:
    """`requests` traced requests to /hold-pooled/, each on its own thread, all at once,
    through Django's WSGIHandler (whose request_finished returns the connection to the pool;
    the test client's keeps it)."""
    traces: list[Trace] = []
    start = threading.Barrier(requests)

    def one_request() -> None:
        start.wait()
        traces.append(run(RequestSpec(path="/hold-pooled/")))

    with SITE:
        threads = [threading.Thread(target=one_request) for _ in range(requests)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    return traces


needs_pool = pytest.mark.skipif(django.VERSION < (5, 1), reason="Django's pool needs 5.1+")


@pytest.mark.postgres
@needs_pool
def test_six_requests_on_a_pool_of_two_show_their_checkout_waits(postgres):
    with pooled_alias(postgres, {"min_size": 2, "max_size": 2, "timeout": 30}):
        traces = _at_once(6)
    assert [tr.request["status"] for tr in traces] == [200] * 6
    checkouts = []
    for tr in traces:
        (checkout,) = only(tr, "db.pool")
        parent = next(s for s in tr.spans if s.id == checkout.parent)
        assert parent.phase == "db.connect" and checkout.name == f"checkout {site.POOLED}"
        assert checkout.attrs["timeout"] is False
        assert checkout.attrs["wait_ns"] == checkout.duration
        checkouts.append(checkout.attrs["wait_ns"])
    held = min(
        s.duration for tr in traces for s in only(tr, "db.query") if "pg_sleep" in s.attrs["sql"]
    )
    # Two connections for six requests: at least four waited for one to come back.
    waited = [w for w in checkouts if w >= held / 2]
    assert len(waited) >= 4, (checkouts, held)


@pytest.mark.postgres
@needs_pool
def test_a_pool_timeout_is_a_checkout_span_marked_timeout(postgres):
    with pooled_alias(postgres, {"min_size": 1, "max_size": 1, "timeout": 0.05}):
        traces = _at_once(3)
    statuses = sorted(tr.request["status"] for tr in traces)
    assert statuses[0] == 200 and statuses[-1] == 500
    for tr in traces:
        (checkout,) = only(tr, "db.pool")
        failed = tr.request["status"] == 500
        assert checkout.attrs["timeout"] is failed
        if failed:
            assert checkout.error["type"].endswith("PoolTimeout")


def test_a_module_holding_a_lazy_object_that_cannot_set_up_does_not_break_a_send(monkeypatch):
    """Naming a new signal reads loaded modules; a lazy object there (django.contrib.admin's
    `site`, imported with admin not installed) must not be set up by that read."""
    import sys
    import types

    from django.dispatch import Signal
    from django.utils.functional import SimpleLazyObject

    def not_installed() -> None:
        raise LookupError("No installed app with label 'admin'.")

    module = types.ModuleType("tests_lab_lazy_module")
    module.site = SimpleLazyObject(not_installed)
    module.tick = Signal()
    module.tick.connect(lambda sender, **kwargs: "tock", weak=False)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    with trace() as t:
        assert module.tick.send(sender=None)[0][1] == "tock"
    (send,) = only(t.bare, "signal")
    assert send.name == "tick"


def test_replay_under_asgi_sends_the_captured_json_body(tmp_path):
    """A captured POST replayed through the ASGI handler reaches the DRF view with its body."""
    body = '{"title": "Dune"}'
    ran = run_djtrace(
        "request",
        "POST",
        "/echo/",
        "--json",
        body,
        "--settings",
        "tests.lab_trace_settings",
        "--format",
        "json",
    )
    assert ran.returncode == 0, ran.stderr
    captured = json.loads(ran.stdout)
    assert captured["request"]["status"] == 201
    # As `capture --capture-body` records it.
    captured["request"].update(body=body, body_size=len(body))
    saved = tmp_path / "post.json"
    saved.write_text(json.dumps(captured))
    result = run_djtrace("replay", str(saved), "--asgi", "--cold")
    assert result.returncode == 0, result.stderr
    assert "201" in result.stdout and "→ 400" not in result.stdout
    assert "no change in status" in result.stdout


@pytest.mark.parametrize("asgi", [False, True], ids=["wsgi", "asgi"])
def test_each_middleware_keeps_its_before_and_after_halves_across_thread_hops(asgi):
    """A layer that calls the next one through a hop (an async-only layer between sync ones
    under WSGI, a sync-only one under ASGI) is still split where it called inward."""
    stack = [
        *django.conf.settings.MIDDLEWARE,
        "tests.timing_site.middleware.async_only_middleware",
        SYNC_ONLY,
    ]
    with override_settings(MIDDLEWARE=stack):
        tr = run(RequestSpec(path="/books/fast/", asgi=asgi))
    layers = only(tr, "middleware")
    assert [s.name for s in layers] == stack
    assert any(a.phase == "async.hop" for s in layers for a in ancestors(tr, s))
    for layer in layers:
        assert layer.start <= layer.attrs["inner_start"] <= layer.attrs["inner_end"] <= layer.end


def test_the_sampling_benchmark_compares_light_and_full_traces_with_untraced():
    import subprocess
    import sys

    from tests.conftest import ROOT

    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "sampling.py"), "--paths", "/bench/trivial/"]
        + ["--rounds", "20", "--warmup", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    (row,) = [line for line in done.stdout.splitlines() if line.startswith("| /bench/trivial/")]
    untraced, light, full = (cell.strip() for cell in row.strip("|").split("|")[1:])
    assert untraced.endswith("µs") and light.endswith("×") and full.endswith("×")
    assert float(light[:-1]) < float(full[:-1])  # the root only costs less than every span


# --- requests Django lets go of early under ASGI ---------------------------------------------


def _asgi(path: str, receive: Any) -> list[Trace]:
    """One request through Django's real ASGIHandler with the given `receive`."""
    from django.core.handlers.asgi import ASGIHandler

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path.partition("?")[0],
        "raw_path": path.partition("?")[0].encode(),
        "query_string": path.partition("?")[2].encode(),
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "client": ("127.0.0.1", 50000),
        "server": ("localhost", 80),
    }
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    with trace() as t:
        asyncio.run(ASGIHandler()(scope, receive, send))
    assert not any(m["type"] == "http.response.start" for m in sent)  # nothing was answered
    return t.requests


def test_a_client_gone_before_its_body_arrived_is_a_finished_trace():
    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    (tr,) = _asgi("/books/fast/", receive)
    assert tr.closed and tr.duration > 0 and tr.request["status"] is None
    body = one(tr, "request.body")
    assert body.error["type"] == "django.core.exceptions.RequestAborted"
    assert tr.root.error is None  # Django handled it: nothing escaped the handler


@pytest.mark.skipif(django.VERSION < (5, 0), reason="Django 5.0+ cancels a view on disconnect")
def test_a_client_gone_while_an_async_view_waits_ends_the_trace_where_django_let_go():
    calls = 0

    async def receive() -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(0.05)  # then the client hangs up, mid-view
        return {"type": "http.disconnect"}

    (tr,) = _asgi("/lab/async-io/?ms=2000", receive)
    view = one(tr, "view")
    assert tr.closed and tr.request["status"] is None
    assert 0 <= view.duration < 1e9 and view.error is None  # cancelled: not an error
    assert all(s.duration >= 0 and s.end <= tr.root.end for s in tr.spans)
