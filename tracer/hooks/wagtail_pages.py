"""Wagtail pages: Wagtail serves every page with one view through one catch-all route, so
the route and the view say nothing about which page ran. Wagtail's own `before_serve_page`
hook gets the page: the request's `view` becomes its type's `serve`
(`blog.models.BlogPage.serve`), which `djtrace stats` groups by. One call per page served.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from djtrace.recorder import current, tracer_failed


def _name_page(page: Any, request: Any, args: Any, kwargs: Any) -> None:
    state = current.get()
    if state is None:
        return None
    try:
        cls = type(page)
        state.trace.request["view"] = f"{cls.__module__}.{cls.__qualname__}.serve"
    except Exception:
        tracer_failed(state.trace, "wagtail page")
    return None  # not a response: Wagtail serves the page as it would


def install() -> None:
    if importlib.util.find_spec("wagtail") is None:
        return
    try:
        from django.apps import apps

        if not apps.is_installed("wagtail"):
            return
        from wagtail import hooks
    except Exception:  # apps not ready, or a Wagtail that cannot load: no page names
        return
    if _name_page not in [fn for fn in hooks.get_hooks("before_serve_page")]:
        hooks.register("before_serve_page", _name_page)
