"""Turning an exception into a response (the 404 page, the 500 page, a 400 for a bad host).

`convert_exception_to_response` catches what a view or a middleware raised and calls
`response_for_exception`; that work gets a span of its own, so an error page's cost is not
charged to whichever middleware happened to be around it. An exception no other span saw
(raised in a middleware, caught by the layer around it) is marked here.
"""

from __future__ import annotations

from typing import Any

from django.core.handlers import exception as exception_module
from djtrace.model import ERROR, Record
from djtrace.patching import patch
from djtrace.recorder import current, mark_error, span_scope


def _already_marked(records: list[Record], exc: BaseException) -> bool:
    name = f"{type(exc).__module__}.{type(exc).__qualname__}"
    return any(r[ERROR] is not None and r[ERROR]["type"] == name for r in records)


def _response_for_exception(original: Any) -> Any:
    def response_for_exception(request: Any, exc: Exception) -> Any:
        state = current.get()
        if state is None:
            return original(request, exc)
        attrs: dict[str, Any] = {}
        with span_scope(state, "exception", type(exc).__qualname__, attrs) as span:
            if span is not None and not _already_marked(state.trace.records, exc):
                mark_error(span, exc)
            response = original(request, exc)
            attrs["status"] = response.status_code
            return response

    return response_for_exception


def install() -> None:
    patch(exception_module, "response_for_exception", _response_for_exception)
