"""The request root and the response phase.

A trace starts as the server hands the request to Django: when `WSGIHandler.__call__` or
`ASGIHandler.__call__` is entered, so the handler's setup, the `request_started` receivers
and, under ASGI, the body read (`request.body`) are inside the root. `BaseHandler.
get_response[_async]` then fills in what the request says (path, headers, route…); a
handler that starts there (the test clients') begins its trace there. A trace ends when
the response is closed: under WSGI the server streams the body after the handler has
returned, so the body iteration and `close()` (with the request_finished receivers) are
phases of the same trace.

With `config.sample_rate` below 1 (capture --sample), a request not drawn gets a light
trace: its root only (`sampled: false`), with no State in the context, so every other hook
stays idle for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.core.handlers.wsgi import WSGIHandler
from django.db import connections
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from djtrace import body, loadtag, redact
from djtrace.hooks.caller_warnings import call_as_caller, first_anext_as_caller
from djtrace.model import (
    ATTRS,
    END,
    NAME,
    PHASE,
    THREAD,
    Record,
    Trace,
    _ids,
    current_thread_name,
)
from djtrace.patching import patch
from djtrace.recorder import (
    NOT_ERRORS,
    Collector,
    State,
    async_span_scope,
    begin_trace,
    clock,
    close_span,
    config,
    current,
    deliver,
    finish_trace,
    mark_error,
    open_span,
    thread_id,
    tracer_failed,
)


class _Entered:
    """A trace begun as the handler was entered, until get_response adopts it."""

    __slots__ = ("trace", "root", "collector", "light", "adopted")

    def __init__(self, trace: Trace, root: Record, collector: Collector | None, light: bool):
        self.trace = trace
        self.root = root
        self.collector = collector
        self.light = light  # sampled out: the root only, no State in the context
        self.adopted = False


# Read once per request by get_response, only while recording: never by the other hooks.
_entered: ContextVar[_Entered | None] = ContextVar("djtrace_entered", default=None)


class _Open:
    """A response whose trace is still open (body not yet sent, not yet closed)."""

    __slots__ = ("trace", "root", "collector", "streaming", "body", "response", "light", "closing")

    def __init__(
        self,
        trace: Trace,
        root: Record,
        collector: Collector | None,
        response: Any,
        light: bool = False,
    ) -> None:
        self.trace = trace
        self.root = root
        self.collector = collector
        self.light = light
        self.streaming = light  # a light trace does not time the body
        self.body: Record | None = None  # the response.stream span, once sending began
        self.closing = False  # close() began; the entry goes once the trace is handed on
        key = id(response)
        # Held weakly: a response that dies unclosed takes its entry with it.
        self.response = weakref.ref(response, lambda _: _died_unclosed(key))


def _end_body(entry: _Open) -> None:
    """The body phase ends once, at the earlier of: last chunk sent, or close() called.

    (Django 4.2's ASGI handler closes the response inside send_response, and a WSGI server
    may close a body it stopped reading.)
    """
    body = entry.body
    if body is not None and not body[END]:
        close_span(body)


# Keyed by the response's id (nothing is stored on the user's response); an entry is its
# response's only while that response lives, which `_entry` checks.
_open: dict[int, _Open] = {}


def _entry(response: Any, pop: bool = False) -> _Open | None:
    entry = _open.pop(id(response), None) if pop else _open.get(id(response))
    return entry if entry is not None and entry.response() is response else None


def _request_info(request: Any) -> dict[str, Any]:
    details = _meta_info(request.META)
    info = {
        "method": request.method,
        "path": request.path,
        "query": details.pop("query"),
        "route": None,
        "view": None,
        "url_name": None,
        "status": None,
        **details,
    }
    if config.capture_body:  # off unless asked for (djtrace capture --capture-body)
        info.update(body.capture(request, config.capture_body))
    return info


def _meta_info(meta: Any) -> dict[str, Any]:
    """The query, headers and load tag of a request's META (or a WSGI environ), redacted."""
    info = {
        "query": redact.query_string(meta.get("QUERY_STRING", "")),
        "headers": redact.headers_from_meta(meta),
    }
    tag = meta.get(loadtag.META_KEY)
    if tag is not None:  # a `djtrace load` request: its tag, not the raw header
        info["headers"].pop(loadtag.HEADER_KEY, None)
        load = loadtag.parse(str(tag))
        if load is not None:
            info["load"] = load
    return info


def _where(meta: Any, mode: str) -> dict[str, Any]:
    server = meta.get("SERVER_SOFTWARE") or ("asgi" if mode == "async" else "wsgi")
    where = {
        "pid": _pid[0],
        "thread": current_thread_name(),
        "thread_id": thread_id(),
        "server": server,
        "mode": mode,
        "settings": _settings[0] if _settings else _settings_module(),
    }
    if "opentelemetry.trace" in sys.modules:
        _note_otel_parent(where)
    return where


_settings: list[str] = []

# The process id, read once (a system call per request otherwise), again in a forked child.
_pid = [os.getpid()]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


def _settings_module() -> str | None:
    """The project's settings module (what replay needs to run the request again)."""
    if not _settings:
        from django.conf import settings

        # Under override_settings the wrapped holder has no SETTINGS_MODULE: don't keep that.
        module = getattr(settings, "SETTINGS_MODULE", None) or os.environ.get(
            "DJANGO_SETTINGS_MODULE"
        )
        if not module:
            return None
        _settings.append(module)
    return _settings[0]


def _note_otel_parent(where: dict[str, Any]) -> None:
    """Record the OpenTelemetry span open right now, if the app runs OpenTelemetry, so an
    exporter can nest this trace under it instead of duplicating the request span.

    OpenTelemetry is never imported here: it is only looked up if the app loaded it.
    """
    otel = sys.modules.get("opentelemetry.trace")
    if otel is None:
        return
    try:
        span = otel.get_current_span()
        context = span.get_span_context()
        if span.is_recording() and context.is_valid:
            where["otel_parent"] = {
                "trace_id": format(context.trace_id, "032x"),
                "span_id": format(context.span_id, "016x"),
            }
    except Exception:
        tracer_failed(None, "otel parent")


def _enter_handler(
    state: State | None, method: str, path: str, mode: str, tag: str | bytes | None
) -> _Entered | None:
    """Begin the trace of a request the server just handed to Django (method and path are
    the server's; get_response fills in the rest)."""
    collector = state.collector if state is not None else None
    try:
        # Sampling applies to capture's record-everything mode only, never inside trace().
        light = (
            state is None
            and config.sample_rate < 1.0
            and not loadtag.wants_full(tag)
            and _ids.random() >= config.sample_rate
        )
        trace, root = begin_trace(
            # What get_response fills in; kept as is for a request Django never got to.
            {"method": method, "path": path, "query": "", "route": None, "view": None}
            | {"url_name": None, "status": None, "headers": {}},
            {},
            collector,
            cpu=mode == "sync",
            attrs={"sampled": False} if light else None,
        )
        return _Entered(trace, root, collector, light)
    except Exception:
        tracer_failed(None, "request start")
        return None


def _unadopted(entered: _Entered, environ: dict[str, Any]) -> None:
    """A request that never reached get_response (a request_started receiver raised, or
    the server stopped it there): its details from what the server handed over."""
    try:
        entered.trace.request.update(_meta_info(environ))
        entered.trace.where.update(_where(environ, "sync"))
    except Exception:
        tracer_failed(entered.trace, "request start")


def _adopt(entered: _Entered, request: Any, mode: str) -> None:
    """get_response has the request: the trace begun at the handler's entry gets its details."""
    trace = entered.trace
    entered.adopted = True
    try:
        info = _request_info(request)
        trace.request.update(info)
        trace.where.update(_where(request.META, mode))
        entered.root[NAME] = f"{info['method']} {info['path']}"
        if entered.light and mode == "sync":
            _count_queries(trace)
    except Exception:
        tracer_failed(trace, "request start")


# A light trace's query totals: id(trace) -> (totals [ns, count], the counter, connections).
_light_db: dict[int, tuple[list[int], Any, list[Any]]] = {}
# This thread's connection objects (Django keeps one per alias per thread for its lifetime).
_thread_connections = threading.local()


def _count_queries(trace: Trace) -> None:
    """Count a light trace's queries and their time (`db_ns`, `db_count` on its root) through
    Django's `execute_wrappers` on this thread's connections, the SQL hook staying idle for
    it: a call per query for the sampled-out requests only. A sync handler's only: under
    ASGI queries run on other threads' connections."""
    totals = [0, 0]

    def counter(execute: Any, sql: Any, params: Any, many: bool, context: Any) -> Any:
        if trace.closed:  # the request ended without its close(): let go of the connection
            with contextlib.suppress(Exception):
                context["connection"].execute_wrappers.remove(counter)
            return execute(sql, params, many, context)
        start = clock()
        try:
            return execute(sql, params, many, context)
        finally:
            totals[0] += clock() - start
            totals[1] += 1

    wrapped = getattr(_thread_connections, "all", None)
    if wrapped is None:  # asking Django costs more than the rest of a light trace: once
        wrapped = _thread_connections.all = connections.all()
    for connection in wrapped:
        connection.execute_wrappers.append(counter)
    _light_db[id(trace)] = (totals, counter, wrapped)


def _end_light(trace: Trace, root: Record) -> None:
    """Take a light trace's counter off the connections; its totals go on the root."""
    counted = _light_db.pop(id(trace), None)
    if counted is None:
        return
    totals, counter, wrapped = counted
    for connection in wrapped:
        with contextlib.suppress(ValueError):
            connection.execute_wrappers.remove(counter)
    attrs = root[ATTRS]
    attrs["db_ns"], attrs["db_count"] = totals


def _start(request: Any, mode: str) -> tuple[Trace, Record, Collector | None, Any, bool] | None:
    """The request's trace: the one begun at the handler's entry, or a new one (the test
    clients' handlers enter get_response directly). Its last item: a light trace."""
    state = current.get()
    if state is None and not config.record_all:
        return None
    entered = _entered.get()
    if entered is not None and not entered.adopted:
        _adopt(entered, request, mode)
        # The handler's State stays the current one (no token): the handler resets it.
        return entered.trace, entered.root, entered.collector, None, entered.light
    collector = state.collector if state is not None else None
    try:
        trace, root = begin_trace(
            _request_info(request), _where(request.META, mode), collector, cpu=mode == "sync"
        )
        token = current.set(State(trace, root, collector, root[THREAD]))
        return trace, root, collector, token, False
    except Exception:
        tracer_failed(None, "request start")
        return None


def _handed_back(
    trace: Trace, root: Record, collector: Collector | None, response: Any, light: Any
) -> None:
    """The handler returned: note the status and wait for the response to be closed.

    `light`: the request of a light trace (else None), whose route is read off Django's match
    here, the URL hook having stayed idle."""
    try:
        trace.request["status"] = response.status_code
        if light is not None:
            match = getattr(light, "resolver_match", None)
            if match is not None:
                trace.request.update(
                    route=match.route, view=match._func_path, url_name=match.view_name
                )
        _open[id(response)] = _Open(trace, root, collector, response, light is not None)
    except Exception:
        tracer_failed(trace, "response")
        finish_trace(trace, root, collector)


def _get_response(original: Any) -> Any:
    def get_response(self: BaseHandler, request: Any) -> Any:
        started = _start(request, "sync")
        if started is None:
            return original(self, request)
        trace, root, collector, token, light = started
        try:
            response = original(self, request)
        except BaseException:
            if token is not None:
                current.reset(token)
                finish_trace(trace, root, collector)
            # else begun by the handler's entry, which ends it: what Django does after this
            # (request_finished for a cancelled request) is still the request's.
            raise
        if token is not None:
            current.reset(token)
        _handed_back(trace, root, collector, response, request if light else None)
        return response

    return get_response


def _get_response_async(original: Any) -> Any:
    async def get_response_async(self: BaseHandler, request: Any) -> Any:
        started = _start(request, "async")
        if started is None:
            return await original(self, request)
        trace, root, collector, token, light = started
        try:
            response = await original(self, request)
        except BaseException:
            if token is not None:
                current.reset(token)
                finish_trace(trace, root, collector)
            # else begun by the handler's entry, which ends it: what Django does after this
            # (request_finished for a cancelled request) is still the request's.
            raise
        if token is not None:
            current.reset(token)
        _handed_back(trace, root, collector, response, request if light else None)
        return response

    return get_response_async


def _wsgi_call(original: Any) -> Any:
    def __call__(self: WSGIHandler, environ: dict[str, Any], start_response: Any) -> Any:
        state = current.get()
        if state is None and not config.record_all:
            return original(self, environ, start_response)
        entered = _enter_handler(
            state,
            environ.get("REQUEST_METHOD", ""),
            environ.get("PATH_INFO", ""),
            "sync",
            environ.get(loadtag.META_KEY),
        )
        if entered is None:
            return original(self, environ, start_response)
        trace, root = entered.trace, entered.root
        mark = _entered.set(entered)
        token = (
            None
            if entered.light
            else current.set(State(trace, root, entered.collector, root[THREAD]))
        )
        try:
            response = original(self, environ, start_response)
        except BaseException as exc:
            mark_error(root, exc)
            if entered.light:
                _end_light(trace, root)
            if not entered.adopted:
                _unadopted(entered, environ)
            finish_trace(trace, root, entered.collector)
            raise
        finally:
            if token is not None:
                current.reset(token)
            _entered.reset(mark)
        if not entered.adopted:  # the request never reached get_response
            _unadopted(entered, environ)
            finish_trace(trace, root, entered.collector)
        return response

    return __call__


def _asgi_tag(scope: dict[str, Any]) -> bytes | None:
    for name, value in scope.get("headers") or ():
        if name == loadtag.ASGI_KEY:
            return value
    return None


def _asgi_call(original: Any) -> Any:
    async def __call__(self: ASGIHandler, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        state = current.get()
        if (state is None and not config.record_all) or scope.get("type") != "http":
            return await original(self, scope, receive, send)
        sampling = state is None and config.sample_rate < 1.0
        entered = _enter_handler(
            state,
            scope.get("method", ""),
            scope.get("path", ""),
            "async",
            _asgi_tag(scope) if sampling else None,
        )
        if entered is None:
            return await original(self, scope, receive, send)
        trace, root = entered.trace, entered.root
        mark = _entered.set(entered)
        token = (
            None
            if entered.light
            else current.set(State(trace, root, entered.collector, root[THREAD]))
        )
        try:
            return await original(self, scope, receive, send)
        except BaseException as exc:
            if not isinstance(exc, NOT_ERRORS):
                mark_error(root, exc)
            raise
        finally:
            if token is not None:
                current.reset(token)
            _entered.reset(mark)
            # The handler closed the response before returning, unless the request was
            # aborted or cancelled: then the trace ends here, where Django let go of it.
            finish_trace(trace, root, entered.collector)

    return __call__


def _read_body(original: Any) -> Any:
    async def read_body(self: ASGIHandler, receive: Any) -> Any:
        state = current.get()
        if state is None:
            return await original(self, receive)
        with async_span_scope(state, "request.body", "body"):
            return await original(self, receive)

    return read_body


def _core(original: Any) -> Any:
    # The handler core runs inside every middleware: DjangoInstrumentor's SERVER span, which
    # its middleware opens after djtrace's root started, is the current span here.
    def _get_response(self: BaseHandler, request: Any) -> Any:
        state = current.get()
        if state is not None and "opentelemetry.trace" in sys.modules:
            _note_otel_parent(state.trace.where)
        return original(self, request)

    return _get_response


def _core_async(original: Any) -> Any:
    async def _get_response_async(self: BaseHandler, request: Any) -> Any:
        state = current.get()
        if state is not None and "opentelemetry.trace" in sys.modules:
            _note_otel_parent(state.trace.where)
        return await original(self, request)

    return _get_response_async


def _close(original: Any) -> Any:
    def close(self: HttpResponseBase) -> None:
        entry = _entry(self) if _open else None
        if entry is None or entry.closing:
            return original(self)
        # The entry stays until the trace is handed on: a server stopped by an exception
        # from its signal handler (gunicorn's sync worker on SIGINT) anywhere in here
        # leaves it for `_died_unclosed` or `finish_unclosed` to hand on.
        entry.closing = True
        trace, root, collector = entry.trace, entry.root, entry.collector
        if entry.light:
            try:
                return original(self)
            finally:
                try:
                    _end_light(trace, root)
                except Exception:
                    tracer_failed(trace, "light totals")
                finish_trace(trace, root, collector)
                _open.pop(id(self), None)
        _end_body(entry)
        hop = _enclosing_hop(trace)
        try:
            # Under ASGI close() runs in a sync_to_async hop: the close phase nests in it.
            span = open_span(trace, root if hop is None else hop, "response.close", "close")
        except Exception:
            tracer_failed(trace, "response.close start")
            span = None
        # One context switch for the close phase: its span is the parent of what close() runs.
        parent = root if span is None else span
        token = current.set(State(trace, parent, collector, parent[THREAD]))
        try:
            return original(self)
        except BaseException as exc:
            if span is not None and not isinstance(exc, NOT_ERRORS):
                mark_error(span, exc)
            raise
        finally:
            if span is not None:
                close_span(span)
            current.reset(token)
            if hop is not None and not hop[END]:
                hop[END] = clock()  # the hop ends with the trace, not after it
            finish_trace(trace, root, collector)
            _open.pop(id(self), None)

    return close


def _enclosing_hop(trace: Trace) -> Record | None:
    """The sync_to_async hop close() runs in (ASGI closes the response through one)."""
    state = current.get()
    span = state.span if state is not None and state.trace is trace else None
    return span if span is not None and span[PHASE] == "async.hop" else None


def _streamed(entry: _Open, chunks: Iterator[Any], runs_code: bool) -> Iterator[Any]:
    """Yield the body while timing it; work the body does (a generator's queries) nests here.

    `runs_code` is False for a plain HttpResponse, whose chunks are bytes already made:
    nothing can run while they are read, so there is no context to switch per chunk.
    """
    trace, root, collector = entry.trace, entry.root, entry.collector
    span = entry.body = open_span(trace, root, "response.stream", "body")
    if span is None:
        yield from chunks
        return
    sent = count = 0
    try:
        if not runs_code:
            for chunk in chunks:
                sent += len(chunk)
                count += 1
                yield chunk
            return
        state = State(trace, span, collector, span[THREAD])
        while True:
            token = current.set(state)
            try:
                chunk = next(chunks)
            except StopIteration:
                return
            finally:
                current.reset(token)
            sent += len(chunk)
            count += 1
            yield chunk
    finally:
        _end_body(entry)
        span[ATTRS] = {"bytes": sent, "chunks": count}


async def _astreamed(
    entry: _Open, chunks: AsyncIterator[Any], warns: bool = False
) -> AsyncIterator[Any]:
    trace, root, collector = entry.trace, entry.root, entry.collector
    span = entry.body = open_span(trace, root, "response.stream", "body")
    parent = span if span is not None else root
    state = State(trace, parent, collector, parent[THREAD])
    sent = count = 0
    try:
        while True:
            token = current.set(state)
            try:
                if warns:  # Django's warning names whoever iterates this, not this
                    warns = False
                    chunk = await first_anext_as_caller(chunks)
                else:
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            finally:
                current.reset(token)
            sent += len(chunk)
            count += 1
            yield chunk
    finally:
        if span is not None:
            _end_body(entry)
            span[ATTRS] = {"bytes": sent, "chunks": count}


def _iter(original: Any) -> Any:
    def __iter__(self: HttpResponseBase) -> Iterator[Any]:
        # An async body served synchronously: Django warns, naming this method's caller.
        async_body = getattr(self, "is_async", False)
        chunks = call_as_caller(original, self) if async_body else original(self)
        entry = _entry(self) if _open else None
        if entry is None or entry.streaming:
            return chunks
        entry.streaming = True
        return _streamed(entry, iter(chunks), self.streaming)

    return __iter__


def _aiter(original: Any) -> Any:
    def __aiter__(self: StreamingHttpResponse) -> AsyncIterator[Any]:
        chunks = original(self)
        entry = _entry(self) if _open else None
        if entry is None or entry.streaming:
            return chunks
        entry.streaming = True
        # A sync body served asynchronously: Django warns at the first chunk.
        return _astreamed(entry, chunks, warns=not self.is_async)

    return __aiter__


def _send_response(original: Any) -> Any:
    # Under ASGI a non-streaming body is sent from `response.content`, not by iterating.
    async def send_response(self: ASGIHandler, response: Any, send: Any) -> Any:
        entry = _entry(response) if _open else None
        if entry is None or response.streaming:
            return await original(self, response, send)
        entry.streaming = True
        trace = entry.trace
        span = entry.body = open_span(trace, entry.root, "response.stream", "body")
        if span is None:
            return await original(self, response, send)
        span[ATTRS] = {"bytes": len(response.content)}
        token = current.set(State(trace, span, entry.collector, span[THREAD]))
        try:
            return await original(self, response, send)
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                mark_error(span, exc)
            raise
        finally:
            current.reset(token)
            _end_body(entry)

    return send_response


def install() -> None:
    patch(WSGIHandler, "__call__", _wsgi_call)
    patch(ASGIHandler, "__call__", _asgi_call)
    patch(ASGIHandler, "read_body", _read_body)
    patch(BaseHandler, "get_response", _get_response)
    patch(BaseHandler, "get_response_async", _get_response_async)
    patch(BaseHandler, "_get_response", _core)
    patch(BaseHandler, "_get_response_async", _core_async)
    patch(HttpResponseBase, "close", _close)
    patch(HttpResponse, "__iter__", _iter)
    patch(StreamingHttpResponse, "__iter__", _iter)
    patch(StreamingHttpResponse, "__aiter__", _aiter)
    patch(ASGIHandler, "send_response", _send_response)


UNCLOSED = (
    "the response was never closed (its server stopped): close() and request_finished did not run"
)


def _died_unclosed(key: int) -> None:
    """A response died without close(). If the server had begun sending its body, the client
    may have it all: the trace is kept (a server stopped in the instant between sending and
    closing, as gunicorn's sync worker is by SystemExit from its SIGINT handler). A response
    never sent (a handler called directly, as with RequestFactory) leaves no trace."""
    entry = _open.pop(key, None)
    if entry is not None and (entry.body is not None or entry.closing):
        try:
            _finish_unclosed(entry)
        except Exception:
            tracer_failed(entry.trace, "unclosed response")


def finish_unclosed() -> int:
    """At exit: keep each trace whose response is still open; how many there were."""
    finished = 0
    for key in list(_open):
        entry = _open.pop(key, None)
        if entry is not None:
            _finish_unclosed(entry)
            finished += 1
    return finished


def _finish_unclosed(entry: _Open) -> None:
    """End the trace where its body ended (else now), saying the close never ran; or, if
    it was stopped while handing the trace on, hand it on again (the store keeps one)."""
    trace = entry.trace
    if trace.closed:
        deliver(trace, entry.collector)
        return
    if entry.closing:  # stopped inside close(): its span and the trace's end are missing
        end = clock()
        finish_trace(trace, entry.root, entry.collector, end)
        return
    trace.where["unclosed"] = UNCLOSED
    if entry.light:
        try:
            _end_light(trace, entry.root)
        except Exception:
            tracer_failed(trace, "light totals")
    _end_body(entry)
    body = entry.body
    # Its CPU time is not known: the thread went on to other things.
    finish_trace(trace, entry.root, entry.collector, body[END] if body is not None else clock())


def open_traces() -> list[Trace]:
    """Traces whose response has not been closed yet (for inline sessions ending early)."""
    return [entry.trace for entry in list(_open.values())]
