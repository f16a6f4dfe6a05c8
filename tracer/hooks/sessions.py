"""Session load, save and delete as `session` spans, with the DB or cache work nested inside.

Hooked on Django's session engines (db, cache, cached_db, file, signed_cookies) at class
level, sync and async; a project's own engine that subclasses one of them is covered too.
cached_db calls db's methods through super(): the inner call is part of the outer span.
The span names the engine; the session's contents are never read (only whether a load
found anything).
"""

from __future__ import annotations

import importlib
from typing import Any

from djtrace.model import PHASE
from djtrace.patching import patch
from djtrace.recorder import async_span_scope, current, span_scope

ENGINES = ("db", "cache", "cached_db", "file", "signed_cookies")
OPERATIONS = ("load", "save", "delete")
_PREFIX = "django.contrib.sessions.backends."

_engine_names: dict[type, str] = {}


def engine_name(cls: type) -> str:
    """Returns "db", "cached_db"… for Django's engines; the module path of a project's own."""
    name = _engine_names.get(cls)
    if name is None:
        module = cls.__module__
        name = module[len(_PREFIX) :] if module.startswith(_PREFIX) else module
        _engine_names[cls] = name
    return name


def _inside_session(state: Any) -> bool:
    parent = state.span
    return parent is not None and parent[PHASE] == "session"


def _note(op: str, attrs: dict[str, Any], result: Any) -> None:
    if op == "load":
        attrs["empty"] = not result  # a dict's truth value only: the contents stay unread


def _sync(op: str) -> Any:
    def make(original: Any) -> Any:
        def operation(self: Any, *args: Any, **kwargs: Any) -> Any:
            state = current.get()
            if state is None or _inside_session(state):
                return original(self, *args, **kwargs)
            attrs: dict[str, Any] = {"engine": engine_name(type(self))}
            with span_scope(state, "session", op, attrs):
                result = original(self, *args, **kwargs)
            _note(op, attrs, result)
            return result

        return operation

    return make


def _async(op: str) -> Any:
    def make(original: Any) -> Any:
        async def operation(self: Any, *args: Any, **kwargs: Any) -> Any:
            state = current.get()
            if state is None or _inside_session(state):
                return await original(self, *args, **kwargs)
            attrs: dict[str, Any] = {"engine": engine_name(type(self)), "async": True}
            with async_span_scope(state, "session", op, attrs):
                result = await original(self, *args, **kwargs)
            _note(op, attrs, result)
            return result

        return operation

    return make


def install() -> None:
    for engine in ENGINES:
        try:
            store = importlib.import_module(_PREFIX + engine).SessionStore
        except Exception:  # an engine whose dependencies are missing is simply not traced
            continue
        for op in OPERATIONS:
            if op in store.__dict__:
                patch(store, op, _sync(op))
            if "a" + op in store.__dict__:  # Django 5.1+
                patch(store, "a" + op, _async(op))
