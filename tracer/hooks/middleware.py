"""Each middleware as one span, its own time split into a "before" and an "after" half.

`BaseHandler.load_middleware` wraps every layer of the chain with
`convert_exception_to_response`; wrapping that function marks exactly where each layer
starts and ends, for every middleware style (MiddlewareMixin, new-style class, function
factory, sync or async). A layer records on its *caller's* span when it was entered and
left: that window splits the caller's self time into before and after.

process_view, process_template_response and process_exception hooks get spans of their
own. The user's middleware classes and instances are never touched.
"""

from __future__ import annotations

import functools
import types
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.core.handlers import base as handler_base
from django.core.handlers.base import BaseHandler

from tracer.model import END, INNER_END, INNER_START, PHASE, Record
from tracer.patching import patch
from tracer.recorder import (
    NOT_ERRORS,
    State,
    async_span_scope,
    clock,
    current,
    mark_error,
    span_scope,
    thread_id,
    tracer_failed,
)


def _dotted(obj: Any) -> str:
    if isinstance(obj, (types.FunctionType, types.MethodType)):
        return f"{obj.__module__}.{obj.__qualname__.split('.<locals>')[0]}"
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _is_handler_core(get_response: Any) -> bool:
    """The innermost layer: the handler's own _get_response, not a middleware."""
    return isinstance(getattr(get_response, "__self__", None), BaseHandler)


def _layer(inner: Any, name: str | None) -> Any:
    """Wrap one layer of the chain; `name` is None for the handler core.

    A middleware's "before" half ends where the layer inside it starts (`inner_start`, the
    first time) and its "after" half begins where that layer returns (`inner_end`): the
    inner layer's own span marks both, and they are read off it when the trace is read. The
    handler core has no span, so it marks the innermost middleware's halves on its record.
    """
    if name is None:
        return _core(inner)
    if iscoroutinefunction(inner):

        @functools.wraps(inner)
        async def async_layer(request: Any) -> Any:
            state = current.get()
            if state is None:
                return await inner(request)
            trace = state.trace
            try:
                # A State of its own: other tasks run while this layer awaits.
                thread = thread_id()
                span = [state.span, "middleware", name, clock(), 0, thread, None, None, 0, 0]
                trace.records.append(span)
                token = current.set(State(trace, span, state.collector, thread))
            except Exception:
                tracer_failed(trace, "middleware start")
                return await inner(request)
            try:
                return await inner(request)
            except BaseException as exc:
                if not isinstance(exc, NOT_ERRORS):
                    mark_error(span, exc)
                raise
            finally:
                span[END] = clock()
                try:
                    current.reset(token)
                except Exception:
                    tracer_failed(trace, "middleware end")

        return async_layer

    @functools.wraps(inner)
    def sync_layer(request: Any) -> Any:
        state = current.get()
        if state is None:
            return inner(request)
        # Spelled out, and the state moved in place (a sync layer does not await): this runs
        # for every layer of every request. Not capped: a request has one span per layer.
        trace, outer = state.trace, state.span
        try:
            thread = thread_id()
            span = [outer, "middleware", name, clock(), 0, thread, None, None, 0, 0]
            trace.records.append(span)
            if thread == state.thread:  # see recorder: moved in place, put back below
                token = None
                state.span = span
            else:
                token = current.set(State(trace, span, state.collector, thread))
        except Exception:
            tracer_failed(trace, "middleware start")
            return inner(request)
        try:
            return inner(request)
        except BaseException as exc:
            if not isinstance(exc, NOT_ERRORS):
                mark_error(span, exc)
            raise
        finally:
            span[END] = clock()
            if token is None:
                state.span = outer
            else:
                try:
                    current.reset(token)
                except Exception:
                    tracer_failed(trace, "middleware end")

    return sync_layer


def _core(inner: Any) -> Any:
    """The handler core, inside the innermost middleware: no span of its own, it marks
    where that middleware called inward and where the call returned."""
    if iscoroutinefunction(inner):

        @functools.wraps(inner)
        async def async_core(request: Any) -> Any:
            outer = _innermost_middleware()
            if outer is None:
                return await inner(request)
            if not outer[INNER_START]:
                outer[INNER_START] = clock()
            try:
                return await inner(request)
            finally:
                outer[INNER_END] = clock()

        return async_core

    @functools.wraps(inner)
    def sync_core(request: Any) -> Any:
        outer = _innermost_middleware()
        if outer is None:
            return inner(request)
        if not outer[INNER_START]:
            outer[INNER_START] = clock()
        try:
            return inner(request)
        finally:
            outer[INNER_END] = clock()

    return sync_core


def _innermost_middleware() -> Record | None:
    state = current.get()
    outer = state.span if state is not None else None
    return outer if outer is not None and outer[PHASE] == "middleware" else None


def _convert(original: Any) -> Any:
    def convert_exception_to_response(get_response: Any) -> Any:
        inner = original(get_response)
        try:
            return _layer(inner, None if _is_handler_core(get_response) else _dotted(get_response))
        except Exception:
            tracer_failed(None, "middleware wrap")
            return inner

    return convert_exception_to_response


def _owner(hook: Any) -> str:
    """The middleware a (possibly sync_to_async-adapted) hook method belongs to."""
    target = getattr(hook, "func", None) or getattr(hook, "awaitable", None) or hook
    owner = getattr(target, "__self__", None)
    return _dotted(owner) if owner is not None else _dotted(target)


def _hook(fn: Any, phase: str) -> Any:
    name = _owner(fn)

    if iscoroutinefunction(fn):

        async def hook(*args: Any, **kwargs: Any) -> Any:
            state = current.get()
            if state is None:
                return await fn(*args, **kwargs)
            with async_span_scope(state, phase, name):
                return await fn(*args, **kwargs)

    else:

        def hook(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            state = current.get()
            if state is None:
                return fn(*args, **kwargs)
            with span_scope(state, phase, name):
                return fn(*args, **kwargs)

    functools.update_wrapper(hook, fn)
    # Django names a misbehaving hook by `method.__self__` (asgiref's adapters keep it too).
    if hasattr(fn, "__self__"):
        hook.__self__ = fn.__self__  # type: ignore[attr-defined]
    return hook


def _load_middleware(original: Any) -> Any:
    def load_middleware(self: BaseHandler, is_async: bool = False) -> None:
        original(self, is_async)
        try:
            self._view_middleware = [
                _hook(f, "middleware.process_view") for f in self._view_middleware
            ]
            self._template_response_middleware = [
                _hook(f, "middleware.process_template_response")
                for f in self._template_response_middleware
            ]
            self._exception_middleware = [
                _hook(f, "middleware.process_exception") for f in self._exception_middleware
            ]
        except Exception:
            tracer_failed(None, "middleware hooks")

    return load_middleware


def install() -> None:
    patch(handler_base, "convert_exception_to_response", _convert)
    patch(BaseHandler, "load_middleware", _load_middleware)
