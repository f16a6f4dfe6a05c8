"""Template rendering, nested as it happens.

`Template._render` is hooked rather than `Template.render`: `{% extends %}` renders its
parent through `_render` directly, so only there do parents and includes both appear.
`SimpleTemplateResponse.render` is the response phase that renders a TemplateResponse.
"""

from __future__ import annotations

from typing import Any

from django.template.base import Template
from django.template.response import SimpleTemplateResponse
from djtrace.model import END
from djtrace.patching import patch
from djtrace.recorder import (
    NOT_ERRORS,
    State,
    clock,
    config,
    current,
    mark_error,
    span_scope,
    thread_id,
    tracer_failed,
)

_DJANGO = {"engine": "django"}  # copied when the trace is read


def _render(original: Any) -> Any:
    # The hottest hook after SQL (a page renders dozens of includes), so `span_scope` is
    # spelled out inline: same span, same nesting, a fraction of the cost.
    def _render(self: Template, context: Any) -> Any:
        state = current.get()
        if state is None:
            return original(self, context)
        trace, parent = state.trace, state.span
        span = None
        try:
            records = trace.records
            if len(records) < config.max_spans:
                thread = thread_id()
                name = self.name or "<string>"
                span = [parent, "template", name, clock(), 0, thread, _DJANGO, None]
                records.append(span)
                if thread == state.thread:  # see recorder: moved in place, put back below
                    token = None
                    state.span = span
                else:
                    token = current.set(State(trace, span, state.collector, thread))
            else:
                trace.dropped_spans += 1
        except Exception:
            tracer_failed(trace, "template start")
            span = None
        if span is None:
            return original(self, context)
        try:
            return original(self, context)
        except BaseException as exc:
            if not isinstance(exc, NOT_ERRORS):
                mark_error(span, exc)
            raise
        finally:
            span[END] = clock()
            if token is None:
                state.span = parent
            else:
                try:
                    current.reset(token)
                except Exception:
                    tracer_failed(trace, "template end")

    return _render


def _jinja2_render(original: Any) -> Any:
    def render(self: Any, context: Any = None, request: Any = None) -> Any:
        state = current.get()
        if state is None:
            return original(self, context, request)
        name = getattr(self.template, "name", None) or "<string>"
        with span_scope(state, "template", name, {"engine": "jinja2"}):
            return original(self, context, request)

    return render


def _response_render(original: Any) -> Any:
    def render(self: SimpleTemplateResponse) -> Any:
        state = current.get()
        if state is None or self._is_rendered:
            return original(self)
        name = self.template_name
        if not isinstance(name, str):
            name = getattr(name, "name", None) or (
                name[0] if isinstance(name, (list, tuple)) and name else "template"
            )
        with span_scope(state, "response.render", str(name)):
            return original(self)

    return render


def install() -> None:
    patch(Template, "_render", _render)
    patch(SimpleTemplateResponse, "render", _response_render)
    try:
        from django.template.backends.jinja2 import Template as Jinja2Template
    except ImportError:  # jinja2 is optional
        return
    patch(Jinja2Template, "render", _jinja2_render)
