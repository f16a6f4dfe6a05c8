"""The request root and the response phase.

A trace starts in `BaseHandler.get_response[_async]` (shared by WSGIHandler, ASGIHandler
and the test clients) and ends when the response is closed: under WSGI the server streams
the body after the handler has returned, so the body iteration and `close()` (with the
request_finished receivers) are phases of the same trace.
"""

from __future__ import annotations

import asyncio
import os
import sys
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.base import BaseHandler
from django.http import HttpResponse, HttpResponseBase, StreamingHttpResponse
from djtrace import body, redact
from djtrace.model import ATTRS, END, THREAD, Record, Trace, current_thread_name
from djtrace.patching import patch
from djtrace.recorder import (
    NOT_ERRORS,
    Collector,
    State,
    begin_trace,
    close_span,
    config,
    current,
    finish_trace,
    mark_error,
    open_span,
    tracer_failed,
)


class _Open:
    """A response whose trace is still open (body not yet sent, not yet closed)."""

    __slots__ = ("trace", "root", "collector", "streaming", "body", "response")

    def __init__(
        self, trace: Trace, root: Record, collector: Collector | None, response: Any
    ) -> None:
        self.trace = trace
        self.root = root
        self.collector = collector
        self.streaming = False
        self.body: Record | None = None  # the response.stream span, once sending began
        key = id(response)
        # Held weakly, and its entry dropped if it dies unclosed (a RequestFactory call).
        self.response = weakref.ref(response, lambda _: _open.pop(key, None))


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
    meta = request.META
    info = {
        "method": request.method,
        "path": request.path,
        "query": redact.query_string(meta.get("QUERY_STRING", "")),
        "route": None,
        "view": None,
        "url_name": None,
        "status": None,
        "headers": redact.headers_from_meta(meta),
    }
    if config.capture_body:  # off unless asked for (djtrace capture --capture-body)
        info.update(body.capture(request, config.capture_body))
    return info


def _where(request: Any, mode: str) -> dict[str, Any]:
    server = request.META.get("SERVER_SOFTWARE") or ("asgi" if mode == "async" else "wsgi")
    where = {
        "pid": os.getpid(),
        "thread": current_thread_name(),
        "server": server,
        "mode": mode,
        "settings": _settings[0] if _settings else _settings_module(),
    }
    if "opentelemetry.trace" in sys.modules:
        _note_otel_parent(where)
    return where


_settings: list[str] = []


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


def _start(request: Any, mode: str) -> tuple[Trace, Record, Collector | None, Any] | None:
    state = current.get()
    if state is None and not config.record_all:
        return None
    collector = state.collector if state is not None else None
    try:
        trace, root = begin_trace(_request_info(request), _where(request, mode), collector)
        return trace, root, collector, current.set(State(trace, root, collector, root[THREAD]))
    except Exception:
        tracer_failed(None, "request start")
        return None


def _handed_back(trace: Trace, root: Record, collector: Collector | None, response: Any) -> None:
    """The handler returned: note the status and wait for the response to be closed."""
    try:
        trace.request["status"] = response.status_code
        _open[id(response)] = _Open(trace, root, collector, response)
    except Exception:
        tracer_failed(trace, "response")
        finish_trace(trace, root, collector)


def _get_response(original: Any) -> Any:
    def get_response(self: BaseHandler, request: Any) -> Any:
        started = _start(request, "sync")
        if started is None:
            return original(self, request)
        trace, root, collector, token = started
        try:
            response = original(self, request)
        except BaseException:
            current.reset(token)
            finish_trace(trace, root, collector)
            raise
        current.reset(token)
        _handed_back(trace, root, collector, response)
        return response

    return get_response


def _get_response_async(original: Any) -> Any:
    async def get_response_async(self: BaseHandler, request: Any) -> Any:
        started = _start(request, "async")
        if started is None:
            return await original(self, request)
        trace, root, collector, token = started
        try:
            response = await original(self, request)
        except BaseException:
            current.reset(token)
            finish_trace(trace, root, collector)
            raise
        current.reset(token)
        _handed_back(trace, root, collector, response)
        return response

    return get_response_async


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
        entry = _entry(self, pop=True) if _open else None
        if entry is None:
            return original(self)
        trace, root, collector = entry.trace, entry.root, entry.collector
        _end_body(entry)
        try:
            span = open_span(trace, root, "response.close", "close")
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
            finish_trace(trace, root, collector)

    return close


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


async def _astreamed(entry: _Open, chunks: AsyncIterator[Any]) -> AsyncIterator[Any]:
    trace, root, collector = entry.trace, entry.root, entry.collector
    span = entry.body = open_span(trace, root, "response.stream", "body")
    parent = span if span is not None else root
    state = State(trace, parent, collector, parent[THREAD])
    sent = count = 0
    try:
        while True:
            token = current.set(state)
            try:
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
        chunks = original(self)
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
        return _astreamed(entry, chunks)

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
    patch(BaseHandler, "get_response", _get_response)
    patch(BaseHandler, "get_response_async", _get_response_async)
    patch(BaseHandler, "_get_response", _core)
    patch(BaseHandler, "_get_response_async", _core_async)
    patch(HttpResponseBase, "close", _close)
    patch(HttpResponse, "__iter__", _iter)
    patch(StreamingHttpResponse, "__iter__", _iter)
    patch(StreamingHttpResponse, "__aiter__", _aiter)
    patch(ASGIHandler, "send_response", _send_response)


def open_traces() -> list[Trace]:
    """Traces whose response has not been closed yet (for inline sessions ending early)."""
    return [entry.trace for entry in list(_open.values())]
