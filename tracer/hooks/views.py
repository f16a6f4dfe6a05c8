"""The view: `BaseHandler.make_view_atomic` receives the resolved callback on every request.

The wrapper matches the view's own mode, so an async view stays async; a class-based view
is named by its class, with the handler method (get, post…) it dispatches to.
"""

from __future__ import annotations

import functools
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.core.handlers.base import BaseHandler
from djtrace.model import ATTRS, Record
from djtrace.patching import patch
from djtrace.recorder import async_span_scope, cpu_clock, current, enter, leave, tracer_failed


@functools.lru_cache(maxsize=2048)
def _view_name(view: Any) -> tuple[str, type | None]:
    view_class = getattr(view, "view_class", None)
    target = view_class or view
    module = getattr(target, "__module__", "") or ""
    qualname = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{qualname}" if module else qualname, view_class


def _attrs(view_class: type | None, request: Any) -> dict[str, Any] | None:
    if view_class is None:
        return None
    method = request.method.lower()
    handler = (
        method
        if method in view_class.http_method_names and hasattr(view_class, method)
        else "http_method_not_allowed"
    )
    return {"class_based": True, "handler": handler}


def _note_cpu(span: Record, cpu: int) -> None:
    """A sync view's `cpu_ns`: its thread's CPU time while it ran (wall less this is time
    off the CPU: waiting on I/O or for the GIL). An async view's is not knowable cheaply:
    the loop's thread runs other requests' tasks while it awaits."""
    attrs = span[ATTRS]
    if attrs is None:
        span[ATTRS] = {"cpu_ns": cpu}
    else:
        attrs["cpu_ns"] = cpu


def _make_view_atomic(original: Any) -> Any:
    def make_view_atomic(self: BaseHandler, view: Any) -> Any:
        wrapped = original(self, view)
        if current.get() is None:
            return wrapped
        try:
            if wrapped is view:  # no ATOMIC_REQUESTS wrapper: the same callable every time
                try:
                    return _cached_wrapper(view)
                except TypeError:  # an unhashable callable
                    pass
            return _wrapper(wrapped, view)
        except Exception:
            state = current.get()
            tracer_failed(state.trace if state is not None else None, "view wrap")
            return wrapped

    return make_view_atomic


@functools.lru_cache(maxsize=2048)
def _cached_wrapper(view: Any) -> Any:
    # One wrapper per view, built once: nothing in it belongs to a request.
    return _wrapper(view, view)


def _wrapper(wrapped: Any, view: Any) -> Any:
    try:
        name, view_class = _view_name(view)
    except TypeError:  # an unhashable callable
        name, view_class = repr(view)[:200], None

    if iscoroutinefunction(wrapped):

        async def async_view(request: Any, *args: Any, **kwargs: Any) -> Any:
            state = current.get()
            if state is None:
                return await wrapped(request, *args, **kwargs)
            with async_span_scope(state, "view", name, _attrs(view_class, request)):
                return await wrapped(request, *args, **kwargs)

        return async_view

    def sync_view(request: Any, *args: Any, **kwargs: Any) -> Any:
        state = current.get()
        if state is None:
            return wrapped(request, *args, **kwargs)
        span = enter(state, "view", name, _attrs(view_class, request))
        cpu = cpu_clock()
        try:
            response = wrapped(request, *args, **kwargs)
        except BaseException as exc:
            leave(state, span, exc)
            raise
        leave(state, span)
        if span is not None:
            _note_cpu(span, cpu_clock() - cpu)
        return response

    sync_view.__wrapped__ = view  # type: ignore[attr-defined]  # names an ASGI hop to it
    return sync_view


def install() -> None:
    patch(BaseHandler, "make_view_atomic", _make_view_atomic)
