"""Template rendering, nested as it happens.

`Template._render` is hooked rather than `Template.render`: `{% extends %}` renders its
parent through `_render` directly, so only there do parents and includes both appear.
`SimpleTemplateResponse.render` is the response phase that renders a TemplateResponse.

Jinja2 renders a template by iterating its `root_render_func`, and its `{% extends %}` and
`{% include %}` iterate the parent's and the included template's: that function, set on
each template as Jinja2 builds it, is wrapped, so Jinja2 templates nest as Django's do.

Whoever renders a template goes through a backend's `render` or a TemplateResponse first:
there, while recording, a hook another library replaced since (django-debug-toolbar and
Django's test environment replace `Template._render`) is put back (tracer.patching) and the
trace says so, instead of templates silently vanishing.
"""

from __future__ import annotations

from collections.abc import Iterator
from inspect import isasyncgenfunction
from typing import Any

from django.template.backends.django import Template as BackendTemplate
from django.template.base import Template
from django.template.response import SimpleTemplateResponse
from djtrace.model import END
from djtrace.patching import patch, reassert
from djtrace.recorder import (
    NOT_ERRORS,
    State,
    clock,
    config,
    current,
    enter,
    leave,
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


# (owner, attribute) of every template hook, checked before each top-level render.
_kept: list[tuple[Any, str]] = []


def _keep_hooked(state: State) -> None:
    """Put back any template hook another library replaced since; say so in the trace."""
    try:
        for owner, attr in _kept:
            note = reassert(owner, attr)
            if note is not None:
                state.trace.where.setdefault("hooks_displaced", []).append(note)
    except Exception:
        tracer_failed(state.trace, "template hooks check")


def _backend_render(original: Any) -> Any:
    def render(self: Any, context: Any = None, request: Any = None) -> Any:
        state = current.get()
        if state is not None:
            _keep_hooked(state)
        return original(self, context, request)

    return render


def _jinja2_rendered(state: State, events: Iterator[str], name: str) -> Iterator[str]:
    # Iterated by Jinja2's concat in one go, or by an outer template's `yield from`: a
    # template's events come strictly inside its parent's, on one thread.
    span = enter(state, "template", name, {"engine": "jinja2"})
    try:
        yield from events
    except BaseException as exc:
        leave(state, span, exc)
        raise
    leave(state, span)


def _jinja2_root(root: Any, name: str) -> Any:
    def root_render_func(context: Any) -> Any:
        state = current.get()
        if state is None:
            return root(context)
        return _jinja2_rendered(state, root(context), name)

    return root_render_func


def _jinja2_from_namespace(original: Any) -> Any:
    build = original.__func__

    def _from_namespace(cls: Any, environment: Any, namespace: Any, globals: Any) -> Any:
        template = build(cls, environment, namespace, globals)
        try:
            root = template.root_render_func
            if not isasyncgenfunction(root):  # an async environment's: not rendered by Django
                name = template.name or "<string>"
                template.root_render_func = _jinja2_root(root, name)
        except Exception:
            tracer_failed(None, "jinja2 template")
        return template

    return classmethod(_from_namespace)


def _response_render(original: Any) -> Any:
    def render(self: SimpleTemplateResponse) -> Any:
        state = current.get()
        if state is None or self._is_rendered:
            return original(self)
        _keep_hooked(state)
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
    patch(BackendTemplate, "render", _backend_render)
    _kept[:] = [(Template, "_render"), (SimpleTemplateResponse, "render")]
    try:
        from django.template.backends.jinja2 import Template as Jinja2Template
        from jinja2 import Template as JinjaTemplate
    except ImportError:  # jinja2 is optional
        return
    patch(Jinja2Template, "render", _backend_render)
    patch(JinjaTemplate, "_from_namespace", _jinja2_from_namespace)
    _kept.append((JinjaTemplate, "_from_namespace"))
