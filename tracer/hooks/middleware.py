"""Each middleware as one span, its own time split into a "before" and an "after" half.

`BaseHandler.load_middleware` wraps every layer of the chain with
`convert_exception_to_response`; replacing that function marks exactly where each layer
starts and ends, for every middleware style (MiddlewareMixin, new-style class, function
factory, sync or async). A sync layer gets Django's wrapper rewritten with the timing in
the same frame (one call per layer, as untraced); an async one keeps Django's wrapper inside
a timing coroutine. A layer's span start and end are also its caller's `inner_start` and
`inner_end`: that window splits the caller's self time into before and after.

process_view, process_template_response and process_exception hooks get spans of their
own. The user's middleware classes and instances are never touched.
"""

from __future__ import annotations

import functools
import types
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.core.handlers import base as handler_base
from django.core.handlers import exception as exception_module
from django.core.handlers.base import BaseHandler
from djtrace.model import END, INNER_END, INNER_START, PARENT, PHASE, Record
from djtrace.patching import patch
from djtrace.recorder import (
    NOT_ERRORS,
    State,
    async_span_scope,
    clock,
    current,
    enter,
    leave,
    mark_error,
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


def _convert(original: Any) -> Any:
    # Django's own is done in place below; another tool's wrapper, installed first, is kept.
    djangos = original is exception_module.convert_exception_to_response

    def convert_exception_to_response(get_response: Any) -> Any:
        try:
            name = None if _is_handler_core(get_response) else _dotted(get_response)
            if iscoroutinefunction(get_response):
                return _async_layer(original(get_response), name)
            if djangos:
                return _sync_layer(get_response, name, converts=True)
            return _sync_layer(original(get_response), name, converts=False)
        except Exception:
            tracer_failed(None, "middleware wrap")
            return original(get_response)

    return convert_exception_to_response


# A middleware's "before" half ends where the layer inside it starts (`inner_start`, the
# first time) and its "after" half begins where that layer returns (`inner_end`): the inner
# layer's own span marks both, and they are read off it when the trace is read. The handler
# core (`name` None) has no span: it marks the innermost middleware's halves on its record.


def _sync_layer(get_response: Any, name: str | None, converts: bool) -> Any:
    """Django's own sync `convert_exception_to_response` (the same in 4.2 to 6.0: call the
    layer, turn an exception into a response), timing the layer: one call per layer, where
    wrapping Django's wrapper would make two, traced or not. Around another tool's wrapper
    (`converts` false) it only times: what that wrapper lets through goes on up."""
    if name is None:
        return _sync_core(get_response, converts)

    @functools.wraps(get_response)
    def inner(request: Any) -> Any:
        state = current.get()
        span = None
        if state is not None:
            # Spelled out, and the state moved in place (a sync layer does not await): this
            # runs for every layer of every request. Not capped: one span per layer.
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
                span = None
        try:
            try:
                return get_response(request)
            except Exception as exc:
                if not converts:
                    raise
                return exception_module.response_for_exception(request, exc)
        except BaseException as exc:  # not an Exception, or another tool's wrapper let it out
            if span is not None and not isinstance(exc, NOT_ERRORS):
                mark_error(span, exc)
            raise
        finally:
            if span is not None:
                span[END] = clock()
                if token is None:
                    state.span = outer
                else:
                    try:
                        current.reset(token)
                    except Exception:
                        tracer_failed(trace, "middleware end")

    return inner


def _sync_core(get_response: Any, converts: bool) -> Any:
    @functools.wraps(get_response)
    def inner(request: Any) -> Any:
        outer = _innermost_middleware()
        if outer is not None and not outer[INNER_START]:
            outer[INNER_START] = clock()
        try:
            try:
                return get_response(request)
            except Exception as exc:
                if not converts:
                    raise
                return exception_module.response_for_exception(request, exc)
        finally:
            if outer is not None:
                outer[INNER_END] = clock()

    return inner


def _async_layer(inner: Any, name: str | None) -> Any:
    """Around Django's own async wrapper, `inner`: rarer, and it must stay a coroutine."""
    if name is None:

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


def _innermost_middleware() -> Record | None:
    state = current.get()
    outer = state.span if state is not None else None
    if outer is not None and outer[PHASE] == "async.hop":  # a sync layer over an async core
        outer = outer[PARENT]
    return outer if outer is not None and outer[PHASE] == "middleware" else None


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
            span = enter(state, phase, name)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                leave(state, span, exc)
                raise
            leave(state, span)
            return result

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
