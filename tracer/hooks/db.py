"""SQL queries at Django's own layer (`CursorWrapper.execute/executemany`).

Works for every backend and driver, on every alias and thread. Per query: two clock
reads, a cached redaction decision, a cached user-frame lookup, one set lookup for whether
the trace has accounted for the connection yet (tracer.hooks.connections); the fingerprint is
computed later, by analysis, never on the request path.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.utils import CursorWrapper

from tracer import redact
from tracer.hooks.connections import note_reused
from tracer.patching import patch
from tracer.recorder import clock, current, mark_error, open_span, tracer_failed
from tracer.source import user_source


def _traced(original: Any, many: bool) -> Any:
    # One wrapper for both methods, with everything inline: this runs for every query, and
    # each extra call is also one more frame for the source-line walk to cross.
    def execute(self: CursorWrapper, sql: Any, params: Any = None) -> Any:
        state = current.get()
        if state is None:
            return original(self, sql, params)
        trace = state.trace
        try:
            db = self.db
            if db.alias not in trace._connections:  # opened before this trace: say so once
                note_reused(state, db)
            attrs: dict[str, Any] = {
                "sql": sql if type(sql) is str else str(sql),
                "alias": db.alias,
                "vendor": db.vendor,
            }
            if many:
                attrs["many"] = True
                if isinstance(params, (list, tuple)):
                    attrs["batch"] = len(params)
            elif params is not None:
                attrs["params"] = redact.sql_params(sql, params)
            source = user_source(2)
            if source is not None:
                attrs["source"] = source
            span = open_span(trace, state.span, "db.query", db.alias, attrs)
        except Exception:
            tracer_failed(trace, "db.query start")
            return original(self, sql, params)
        if span is None:
            return original(self, sql, params)
        try:
            return original(self, sql, params)
        except Exception as exc:
            mark_error(span, exc)
            raise
        finally:
            span.duration = clock() - trace._t0 - span.start
            try:
                rows = self.cursor.rowcount
                if rows is not None and rows >= 0:
                    attrs["rows"] = rows
            except Exception:
                pass

    return execute


def _executemany(original: Any) -> Any:
    run = _traced(original, many=True)

    def executemany(self: CursorWrapper, sql: Any, param_list: Any) -> Any:
        return run(self, sql, param_list)  # Django's own parameter name, for keyword callers

    return executemany


def install() -> None:
    patch(CursorWrapper, "execute", lambda original: _traced(original, many=False))
    patch(CursorWrapper, "executemany", _executemany)
