"""Thread hops: each `sync_to_async` / `async_to_sync` call while a trace is active is an
`async.hop` span, and what ran on the other side nests under it.

Under ASGI every sync view, sync-only middleware and sync signal receiver runs through
`sync_to_async`, which waits for a thread (one per request for thread-sensitive code, so
a busy one queues the next call); under WSGI an async view or middleware runs through
`async_to_sync`. The span's attrs say what the hop cost: `wait_ns`, from the call to the
function starting on its thread (or loop), `thread`, the name of the thread it ran on, and
for `sync_to_async`, `cpu_ns`, that thread's CPU time while the function ran.

asgiref's `SyncToAsync.__call__` / `AsyncToSync.__call__` are wrapped on the class. With no
trace active a hop costs one context-variable lookup more. Traced, the call goes through a
shallow copy of the asgiref object whose function is wrapped to note when it starts: the
user's object (often one module-level `sync_to_async(f)` shared by concurrent requests) is
never changed. Exceptions, `CancelledError` included, pass through untouched.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from asgiref.sync import AsyncToSync, SyncToAsync
from djtrace.model import ATTRS, END, NAME, PARENT, PHASE, START, Record, Trace, current_thread_name
from djtrace.patching import patch
from djtrace.recorder import State, clock, cpu_clock, current, enter, leave, tracer_failed

PHASE_HOP = "async.hop"
_TO_THREAD = "sync_to_async "


def _qualname(func: Any) -> str:
    """The hopped function's name: a bound method's, a partial's, a djtrace hook's original;
    through a wrapper made in a function (Django's and djtrace's middleware and view wrappers
    say what they wrap in `__wrapped__`), what it wraps: a middleware instance by its class."""
    target = getattr(func, "__func__", func)
    for _ in range(4):
        if isinstance(target, functools.partial):
            target = target.func
        target = getattr(target, "__djtrace_original__", target)
        name = getattr(target, "__qualname__", None)
        if not isinstance(name, str):
            return type(target).__qualname__
        inner = getattr(target, "__wrapped__", None)
        if "<locals>" not in name or inner is None:
            return name
        target = inner
    return name


def _inside_a_thread_hop(record: Record | None) -> bool:
    """Whether a sync_to_async hop encloses this span (its thread's CPU clock then already
    counts a nested hop's, which may run on the same thread)."""
    while record is not None:
        if record[PHASE] == PHASE_HOP and record[NAME].startswith(_TO_THREAD):
            return True
        record = record[PARENT]
    return False


def _copy(hop: Any) -> Any:
    """A shallow copy of an asgiref SyncToAsync/AsyncToSync (its __dict__ only)."""
    clone = object.__new__(type(hop))
    clone.__dict__.update(hop.__dict__)
    return clone


def _leave(state: State, span: Record, exc: BaseException | None = None) -> None:
    if not span[END]:
        leave(state, span, exc)
        return
    # Ended already, with its trace (the response's close() ran in it): keep that end.
    try:
        own = current.get()
        if own is not None and own.span is span:
            current.reset(own.token)
    except Exception:
        tracer_failed(state.trace, "async.hop end")


# --- sync_to_async ------------------------------------------------------------------------


def _on_thread(func: Callable[..., Any], span: Record, trace: Trace, top: bool) -> Any:
    attrs = span[ATTRS]  # the dict given to `enter`

    def run(*args: Any, **kwargs: Any) -> Any:
        attrs["wait_ns"] = clock() - span[START]
        attrs["thread"] = current_thread_name()
        cpu = cpu_clock()
        try:
            return func(*args, **kwargs)
        finally:
            spent = cpu_clock() - cpu
            if not trace.closed:  # else the trace has gone to the store already
                attrs["cpu_ns"] = spent
                if top:
                    trace._hop_cpu += spent

    return run


async def _to_thread(state: State, hop: SyncToAsync, original: Any, args: Any, kwargs: Any) -> Any:
    trace = state.trace
    span = None
    try:
        func = hop.func
        top = not _inside_a_thread_hop(state.span)
        span = enter(state, PHASE_HOP, _TO_THREAD + _qualname(func), {}, awaits=True)
        if span is not None:
            clone = _copy(hop)
            clone.func = _on_thread(func, span, trace, top)
            hop = clone
    except Exception:
        tracer_failed(trace, "async.hop start")
        if span is not None:
            _leave(state, span)
            span = None
    if span is None:
        return await original(hop, *args, **kwargs)
    try:
        result = await original(hop, *args, **kwargs)
    except BaseException as exc:
        _leave(state, span, exc)
        raise
    _leave(state, span)
    return result


def _sync_to_async_call(original: Any) -> Any:
    async def __call__(self: SyncToAsync, *args: Any, **kwargs: Any) -> Any:
        state = current.get()
        if state is None or state.trace.closed:
            return await original(self, *args, **kwargs)
        return await _to_thread(state, self, original, args, kwargs)

    return __call__


# --- async_to_sync ------------------------------------------------------------------------


def _on_loop(awaitable: Callable[..., Any], span: Record) -> Any:
    attrs = span[ATTRS]

    async def run(*args: Any, **kwargs: Any) -> Any:
        attrs["wait_ns"] = clock() - span[START]
        attrs["thread"] = current_thread_name()
        return await awaitable(*args, **kwargs)

    return run


def _to_loop(state: State, hop: AsyncToSync, original: Any, args: Any, kwargs: Any) -> Any:
    trace = state.trace
    span = None
    try:
        awaitable = hop.awaitable
        # This thread blocks until the loop is done: an ordinary (non-awaiting) span.
        span = enter(state, PHASE_HOP, "async_to_sync " + _qualname(awaitable), {})
        if span is not None:
            clone = _copy(hop)
            clone.awaitable = _on_loop(awaitable, span)
            hop = clone
    except Exception:
        tracer_failed(trace, "async.hop start")
        if span is not None:
            _leave(state, span)
            span = None
    if span is None:
        return original(hop, *args, **kwargs)
    try:
        result = original(hop, *args, **kwargs)
    except BaseException as exc:
        _leave(state, span, exc)
        raise
    _leave(state, span)
    return result


def _async_to_sync_call(original: Any) -> Any:
    def __call__(self: AsyncToSync, *args: Any, **kwargs: Any) -> Any:
        state = current.get()
        if state is None or state.trace.closed:
            return original(self, *args, **kwargs)
        return _to_loop(state, self, original, args, kwargs)

    return __call__


def install() -> None:
    patch(SyncToAsync, "__call__", _sync_to_async_call)
    patch(AsyncToSync, "__call__", _async_to_sync_call)
