"""Where the current trace lives while a request runs, and how spans are opened and closed.

The active recording is one context variable holding a `State`: the trace, the span new
spans nest under, and the inline session collecting it. With no active trace every hook
costs exactly one `ContextVar.get()`. A span is recorded as a plain list (`model.Record`:
parent, phase, name, start, end, thread, attrs, error) appended to `Trace.records`; the
trace builds its `Span` objects from them when they are read, off the request path.

A span whose body does not await, on the thread that made the `State`, moves `State.span`
in place and puts it back when it ends: code in one thread that does not await nests
strictly, so nothing else sees the state in between, and this costs two attribute stores
instead of a context switch (`ContextVar.set`/`reset`, a third of a span's cost). Any other
span gets a `State` of its own, set and reset around its body: one whose body awaits
(`async_span_scope`), since other tasks run while it waits, and one on another thread (a
context copied by sync_to_async, async_to_sync or an executor), since the owner may be
moving its `State` at the same time. Every set is reset, so a thread hop hands back the
same `State` it was given (asgiref copies changed values back to the caller). The price of
moving in place: another thread's first span nests under the span the owner is in when it
starts, which is the one the context was copied in while the owner waits for that thread.

The tracer's own failures never reach the request: they are caught here, counted on the
trace (`tracer_errors`) and the request goes on untraced from that point.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

from djtrace.model import ATTRS, END, ERROR, PARENT, PHASE, START, THREAD, Record, Trace

logger = logging.getLogger("djtrace")

clock = time.perf_counter_ns
thread_id = threading.get_ident
#: The calling thread's own CPU clock (a system call, not a vDSO read: about 0.3 µs).
cpu_clock = time.thread_time_ns


class Collector(Protocol):
    """Receives each request trace started inside it (the inline `trace()` session)."""

    def started(self, trace: Trace) -> None: ...

    def finished(self, trace: Trace) -> None: ...


class State:
    """The recording a context is in. Moved in place only by the thread in `thread`."""

    __slots__ = ("trace", "span", "collector", "thread", "token")

    def __init__(
        self, trace: Trace, span: Record | None, collector: Collector | None, thread: int
    ) -> None:
        self.trace = trace
        self.span = span  # the parent of the next span
        self.collector = collector
        self.thread = thread
        self.token: Any = None  # set by `enter` for a State of a span's own


#: The one context variable every hook reads.
current: ContextVar[State | None] = ContextVar("djtrace", default=None)


class _Config:
    """Process-wide switches. Read on the request path, so plain attributes."""

    __slots__ = ("record_all", "max_spans", "sinks", "capture_body", "sample_rate")

    def __init__(self) -> None:
        self.record_all = False  # trace every request, not only those inside trace()
        self.max_spans = 5000
        self.capture_body = 0  # record request bodies up to this many bytes (0: never)
        # With record_all, the fraction of requests traced in full; the others get a light
        # trace, the root span only (capture --sample). Requests inside trace() are all full.
        self.sample_rate = 1.0
        self.sinks: list[Callable[[Trace], None]] = []


config = _Config()


def add_sink(sink: Callable[[Trace], None]) -> None:
    """Call `sink(trace)` for every finished request trace (store writer, exporters…)."""
    if sink not in config.sinks:
        config.sinks.append(sink)


def remove_sink(sink: Callable[[Trace], None]) -> None:
    if sink in config.sinks:
        config.sinks.remove(sink)


def open_span(
    trace: Trace, parent: Record | None, phase: str, name: str, attrs: Any = None
) -> Record | None:
    """Start a span (a record: tracer.model), or return None and count it when the trace is
    at its span cap."""
    records = trace.records
    if len(records) >= config.max_spans:
        trace.dropped_spans += 1
        return None
    span = [parent, phase, name, clock(), 0, thread_id(), attrs, None]
    records.append(span)
    return span


def close_span(span: Record) -> None:
    span[END] = clock()


def mark_error(span: Record, exc: BaseException) -> None:
    if span[ERROR] is None:
        cls = type(exc)
        try:
            message = str(exc)[:500]
        except Exception:  # an exception whose __str__ fails must not replace the app's own
            message = f"<{cls.__qualname__}: message unavailable>"
        span[ERROR] = {"type": f"{cls.__module__}.{cls.__qualname__}", "message": message}


def tracer_failed(trace: Trace | None, where: str) -> None:
    """The tracer itself broke: count it, log it once per trace, never raise."""
    if trace is not None:
        trace.tracer_errors += 1
        if trace.tracer_errors > 1:
            return
    logger.warning("djtrace: internal error in %s (request unaffected)", where, exc_info=True)


def enter(
    state: State, phase: str, name: str, attrs: Any = None, awaits: bool = False
) -> Record | None:
    """Open a span that is the current parent until `leave(state, span)`.

    None (and the body runs the same) at the span cap or when the tracer itself fails.
    `awaits` is for a body that awaits: the span gets a State of its own (module docstring).
    """
    trace = state.trace
    try:
        # `open_span` spelled out: a call fewer for every view, resolve, signal and receiver
        # span (112 of the 2,365 bytecodes recording adds to a trivial request, bytecodes.py).
        records = trace.records
        if len(records) >= config.max_spans:
            trace.dropped_spans += 1
            return None
        thread = thread_id()
        span = [state.span, phase, name, clock(), 0, thread, attrs, None]
        records.append(span)
        if awaits or thread != state.thread:
            own = State(trace, span, state.collector, thread)
            own.token = current.set(own)
        else:
            state.span = span
        return span
    except Exception:
        tracer_failed(trace, f"{phase} start")
        return None


def leave(state: State, span: Record | None, exc: BaseException | None = None) -> None:
    """End a span from `enter`; `exc`, unless a cancellation, marks it as failed."""
    if span is None:
        return
    try:
        span[END] = clock()
        if exc is not None and not isinstance(exc, NOT_ERRORS):
            mark_error(span, exc)
        if state.span is span:  # moved in place by `enter`
            state.span = span[PARENT]
        else:
            own = current.get()
            if own is not None and own.span is span:
                current.reset(own.token)
    except Exception:
        tracer_failed(state.trace, f"{span[PHASE]} end")


class span_scope:
    """`with span_scope(state, phase, name) as span:` — `enter` and `leave` around a block,
    for a body that does not await (see `async_span_scope`).

    `span` is None when nothing could be recorded; the body runs the same either way.
    """

    __slots__ = ("state", "span")
    awaits = False

    def __init__(self, state: State, phase: str, name: str, attrs: Any = None) -> None:
        self.state = state
        self.span = enter(state, phase, name, attrs, self.awaits)

    def __enter__(self) -> Record | None:
        return self.span

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        leave(self.state, self.span, exc)
        return False  # the app's exception, if any, passes through untouched


class async_span_scope(span_scope):
    """`span_scope` for a body that awaits: other tasks run while it waits, so the span's
    children find it through a `State` of its own in this task's context."""

    __slots__ = ()
    awaits = True


#: Exceptions that end a span without making it an error (a cancelled task, a closed generator).
NOT_ERRORS = (asyncio.CancelledError, GeneratorExit)


def begin_trace(
    request: dict[str, Any],
    where: dict[str, Any],
    collector: Collector | None,
    cpu: bool = False,
    attrs: dict[str, Any] | None = None,
) -> tuple[Trace, Record]:
    """A new request trace with its root span opened.

    `cpu`: the request runs on this thread until it ends (a sync handler), so the root gets
    `cpu_ns`, this thread's CPU time over the request; otherwise the root's `cpu_ns` is what
    its sync_to_async hops spent on their threads (`Trace._hop_cpu`), if any.
    """
    trace = Trace(request, where)
    name = f"{request.get('method', '')} {request.get('path', '')}"
    root = [None, "request", name, trace._t0, 0, thread_id(), attrs, None]
    trace.records.append(root)
    if cpu:
        trace._cpu0 = cpu_clock()
    if collector is not None:
        collector.started(trace)
    return trace, root


def finish_trace(
    trace: Trace, root: Record, collector: Collector | None, end: int | None = None
) -> None:
    """Close the root span and hand the trace to its collector and every sink.

    `end`: when the request ended, if not now (its CPU time is then unknown).
    """
    if trace.closed:
        return
    if end is None:
        end = clock()
        try:
            _note_cpu(trace, root)
        except Exception:
            tracer_failed(trace, "request cpu")
    root[END] = end
    trace.duration = end - root[START]
    trace.closed = True
    deliver(trace, collector)


def deliver(trace: Trace, collector: Collector | None) -> None:
    """Hand a finished trace to its collector and every sink."""
    if collector is not None:
        collector.finished(trace)
    for sink in config.sinks:
        try:
            sink(trace)
        except Exception:
            tracer_failed(trace, f"sink {sink!r}")


def _note_cpu(trace: Trace, root: Record) -> None:
    if trace._cpu0 >= 0:
        if thread_id() != root[THREAD]:
            return  # ended on another thread: that thread's clock says nothing of the request
        cpu = cpu_clock() - trace._cpu0
    elif trace._hop_cpu:
        cpu = trace._hop_cpu
    else:
        return
    attrs = root[ATTRS]
    if attrs is None:
        root[ATTRS] = {"cpu_ns": cpu}
    else:
        attrs["cpu_ns"] = cpu
