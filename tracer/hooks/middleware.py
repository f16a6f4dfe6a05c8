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

from tracer.model import Span, Trace
from tracer.patching import patch
from tracer.recorder import (
    NOT_ERRORS,
    State,
    async_span_scope,
    clock,
    current,
    mark_error,
    open_span,
    span_scope,
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

    Entering a layer marks where its caller's "before" half ends (`inner_start`, the first
    time) and leaving it where the "after" half begins (`inner_end`); the same clock reads
    start and end the layer's own span.
    """

    if iscoroutinefunction(inner):

        @functools.wraps(inner)
        async def async_layer(request: Any) -> Any:
            state = current.get()
            if state is None:
                return await inner(request)
            trace, outer, collector = state.trace, state.span, state.collector
            try:
                span, token, split = _enter(trace, outer, collector, name)
            except Exception:
                tracer_failed(trace, "middleware start")
                return await inner(request)
            try:
                return await inner(request)
            except BaseException as exc:
                if span is not None and not isinstance(exc, NOT_ERRORS):
                    mark_error(span, exc)
                raise
            finally:
                _leave(trace, outer, span, token, split)

        return async_layer

    @functools.wraps(inner)
    def sync_layer(request: Any) -> Any:
        state = current.get()
        if state is None:
            return inner(request)
        # Spelled out, and the state moved in place (a sync layer does not await): this runs
        # for every layer of every request.
        trace, outer = state.trace, state.span
        try:
            start = clock() - trace._t0
            split = outer is not None and outer.phase == "middleware"
            if split and "inner_start" not in outer.attrs:
                outer.attrs["inner_start"] = start
            span = (
                None if name is None else open_span(trace, outer, "middleware", name, None, start)
            )
            token = None
            if span is not None:
                if span.thread == state.thread:  # see recorder: moved in place, put back below
                    state.span = span
                else:
                    token = current.set(State(trace, span, state.collector, span.thread))
        except Exception:
            tracer_failed(trace, "middleware start")
            return inner(request)
        try:
            return inner(request)
        except BaseException as exc:
            if span is not None and not isinstance(exc, NOT_ERRORS):
                mark_error(span, exc)
            raise
        finally:
            try:
                end = clock() - trace._t0
                if span is not None:
                    span.duration = end - span.start
                    if token is None:
                        state.span = outer
                    else:
                        current.reset(token)
                if split:
                    outer.attrs["inner_end"] = end
            except Exception:
                tracer_failed(trace, "middleware end")

    return sync_layer


def _enter(
    trace: Trace, outer: Span | None, collector: Any, name: str | None
) -> tuple[Span | None, Any, bool]:
    start = clock() - trace._t0
    split = outer is not None and outer.phase == "middleware"
    if split and "inner_start" not in outer.attrs:  # type: ignore[union-attr]
        outer.attrs["inner_start"] = start  # type: ignore[union-attr]
    if name is None:
        return None, None, split
    span = open_span(trace, outer, "middleware", name, None, start)
    if span is None:
        return None, None, split
    return span, current.set(State(trace, span, collector, span.thread)), split


def _leave(trace: Trace, outer: Span | None, span: Span | None, token: Any, split: bool) -> None:
    try:
        end = clock() - trace._t0
        if span is not None:
            span.duration = end - span.start
            current.reset(token)
        if split:
            outer.attrs["inner_end"] = end  # type: ignore[union-attr]
    except Exception:
        tracer_failed(trace, "middleware end")


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
