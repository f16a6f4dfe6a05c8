"""SQL queries at Django's own layer (`CursorWrapper.execute/executemany`).

Works for every backend and driver, on every alias and thread. Per query: a record, two
clock reads, a cached user-frame lookup, one set lookup for whether the trace has accounted
for the connection yet (tracer.hooks.connections) and the driver's row count. The attrs,
with the parameters redacted, are made when the trace is read; the fingerprint later still,
by analysis. Until then the record holds the parameters the app passed, as Django does.
"""

from __future__ import annotations

from typing import Any

from django.db.backends.utils import CursorWrapper
from djtrace import redact
from djtrace.hooks.connections import note_reused
from djtrace.model import ATTRS, END, PHASE
from djtrace.patching import patch
from djtrace.recorder import clock, config, current, mark_error, thread_id, tracer_failed
from djtrace.source import template_source, user_source


def query_attrs(
    sql: Any,
    params: Any,
    many: bool,
    alias: str,
    vendor: str,
    source: str | None,
    rows: Any,
    template: str | None = None,
) -> dict[str, Any]:
    """A query span's attrs, made when the trace is read (for executemany, `params` is the
    batch size, if known: the batch itself is not kept). `template` is the template and
    line whose rendering ran the query (an attribute lookup in a template)."""
    attrs: dict[str, Any] = {
        "sql": sql if type(sql) is str else str(sql),
        "alias": alias,
        "vendor": vendor,
    }
    if many:
        attrs["many"] = True
        if params is not None:
            attrs["batch"] = params
    elif params is not None:
        attrs["params"] = redact.sql_params(sql, params)
    if source is not None:
        attrs["source"] = source
    if template is not None:
        attrs["template"] = template
    if rows is not None and rows >= 0 and not (vendor == "sqlite" and _returning(attrs["sql"])):
        attrs["rows"] = rows  # SQLite counts a RETURNING statement's rows only as they are read
    return attrs


def _returning(sql: str) -> bool:
    return "RETURNING" in sql.upper()


# Parameter containers a caller can change after the query; the ORM passes tuples.
_REUSABLE = frozenset((list, dict))


def _traced(original: Any, many: bool) -> Any:
    # One wrapper for both methods, with everything inline: this runs for every query, and
    # each extra call is also one more frame for the source-line walk to cross.
    def execute(self: CursorWrapper, sql: Any, params: Any = None) -> Any:
        state = current.get()
        if state is None:
            return original(self, sql, params)
        trace = state.trace
        span = None
        try:
            records = trace.records
            if len(records) < config.max_spans:
                db = self.db
                alias = db.alias
                if alias not in trace._connections:  # opened before this trace: say so once
                    note_reused(state, db)
                parent = state.span
                # Before the clock: the walks are not the query's time.
                source = user_source()
                template = (
                    template_source()
                    if parent is not None and parent[PHASE] == "template"
                    else None
                )
                span = [parent, "db.query", alias, clock(), 0, thread_id(), None, None]
                records.append(span)
            else:
                trace.dropped_spans += 1
        except Exception:
            tracer_failed(trace, "db.query start")
        if span is None:
            return original(self, sql, params)
        try:
            return original(self, sql, params)
        except Exception as exc:
            mark_error(span, exc)
            raise
        finally:
            span[END] = clock()
            try:
                rows = self.cursor.rowcount
            except Exception:
                rows = None
            if many:
                params = len(params) if isinstance(params, (list, tuple)) else None
            elif type(params) in _REUSABLE:
                params = params.copy()  # read later, and the caller may reuse it meanwhile
            span[ATTRS] = (query_attrs, sql, params, many, alias, db.vendor, source, rows, template)

    return execute


def _executemany(original: Any) -> Any:
    run = _traced(original, many=True)

    def executemany(self: CursorWrapper, sql: Any, param_list: Any) -> Any:
        return run(self, sql, param_list)  # Django's own parameter name, for keyword callers

    return executemany


def install() -> None:
    patch(CursorWrapper, "execute", lambda original: _traced(original, many=False))
    patch(CursorWrapper, "executemany", _executemany)
