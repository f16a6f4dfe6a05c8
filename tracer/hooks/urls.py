"""URL resolution: `BaseHandler.resolve_request` serves both the sync and async paths.

The match Django made is read, never recomputed; a miss (Resolver404) is marked on the span.
"""

from __future__ import annotations

from typing import Any

from django.core.handlers.base import BaseHandler
from django.urls import Resolver404, ResolverMatch
from djtrace.model import ATTRS, ERROR, NAME
from djtrace.patching import patch
from djtrace.recorder import current, enter, leave


def _match_attrs(match: ResolverMatch, args: int, kwargs: list[str]) -> dict[str, Any]:
    """A resolved span's attrs, made when the trace is read. The kwargs are named when
    resolved: process_view hooks get the match's own dict and may add to it."""
    return {
        "resolved": True,
        "route": match.route,
        "view": match._func_path,
        "url_name": match.view_name,
        "args": args,
        "kwargs": kwargs,
    }


def _view_path(match: ResolverMatch, request: Any) -> str:
    """The view's dotted path; for a DRF viewset, its action's (`app.views.BookViewSet.list`):
    one viewset serves a route per action, and the action is what the developer knows."""
    actions = getattr(match.func, "actions", None)
    if type(actions) is dict:
        action = actions.get(request.method.lower())
        if action:
            return f"{match._func_path}.{action}"
    return match._func_path


def _resolve_request(original: Any) -> Any:
    def resolve_request(self: BaseHandler, request: Any) -> Any:
        state = current.get()
        if state is None:
            return original(self, request)
        span = enter(state, "url.resolve", request.path_info)
        try:
            match = original(self, request)
        except Resolver404 as exc:
            if span is not None:
                span[ATTRS] = {"resolved": False}
                # str() of a Resolver404 is every pattern tried; say what the user needs.
                span[ERROR] = {
                    "type": "django.urls.exceptions.Resolver404",
                    "message": f"no URL pattern matches {request.path_info!r}",
                }
            leave(state, span, exc)
            raise
        except BaseException as exc:
            leave(state, span, exc)
            raise
        if span is not None:
            route = match.route
            span[NAME] = route or request.path_info
            span[ATTRS] = (_match_attrs, match, len(match.args), list(match.kwargs))
            request_info = state.trace.request
            request_info["route"] = route
            request_info["view"] = _view_path(match, request)
            request_info["url_name"] = match.view_name
        leave(state, span)
        return match

    return resolve_request


def install() -> None:
    patch(BaseHandler, "resolve_request", _resolve_request)
