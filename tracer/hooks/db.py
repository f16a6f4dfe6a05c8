"""SQL queries at Django's own layer (`CursorWrapper.execute/executemany`).

Works for every backend and driver, on every alias and thread. Per query: two clock
reads, a cached redaction decision, a cached user-frame lookup; the fingerprint is
computed later, by analysis, never on the request path.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.utils import CursorWrapper

from tracer import redact
from tracer.patching import patch
from tracer.recorder import State, clock, current, mark_error, open_span, tracer_failed
from tracer.source import user_source


def _run(state: State, cursor: CursorWrapper, run: Any, sql: Any, params: Any, many: bool) -> Any:
    trace = state[0]
    try:
        db = cursor.db
        alias = db.alias
        attrs: dict[str, Any] = {
            "sql": sql if isinstance(sql, str) else str(sql),
            "alias": alias,
            "vendor": db.vendor,
        }
        if many:
            attrs["many"] = True
            if isinstance(params, (list, tuple)):
                attrs["batch"] = len(params)
        elif params is not None:
            attrs["params"] = redact.sql_params(sql, params)
        source = user_source(3)
        if source is not None:
            attrs["source"] = source
        span = open_span(trace, state[1], "db.query", alias, attrs)
    except Exception:
        tracer_failed(trace, "db.query start")
        return run(cursor, sql, params)
    if span is None:
        return run(cursor, sql, params)
    try:
        return run(cursor, sql, params)
    except Exception as exc:
        mark_error(span, exc)
        raise
    finally:
        span.duration = clock() - trace._t0 - span.start
        try:
            rows = cursor.cursor.rowcount
            if rows is not None and rows >= 0:
                attrs["rows"] = rows
        except Exception:
            pass


def _execute(original: Any) -> Any:
    def execute(self: CursorWrapper, sql: Any, params: Any = None) -> Any:
        state = current.get()
        if state is None:
            return original(self, sql, params)
        return _run(state, self, original, sql, params, False)

    return execute


def _executemany(original: Any) -> Any:
    def executemany(self: CursorWrapper, sql: Any, param_list: Any) -> Any:
        state = current.get()
        if state is None:
            return original(self, sql, param_list)
        return _run(state, self, original, sql, param_list, True)

    return executemany


def install() -> None:
    patch(CursorWrapper, "execute", _execute)
    patch(CursorWrapper, "executemany", _executemany)
