"""Transactions: each `atomic` block (ATOMIC_REQUESTS included) is a `db.transaction` span.

The span opens in `Atomic.__enter__` and closes in `Atomic.__exit__`: two calls, possibly
of one shared Atomic instance (a decorator is reused across calls, threads and recursion).
So nothing is kept on the Atomic: each connection gets a stack of open spans, matched on
exit by the depth of `connection.atomic_blocks`. The current span is set with `set` and
restored only if it is still ours, never with a token reset that could fail in another
context.

Attrs: alias, kind ("transaction" for the outermost block, "savepoint", or "nested" for a
block without a savepoint), durable, and on exit outcome ("commit" or "rollback").
`connection.commit()`/`rollback()` are `db.commit`/`db.rollback` spans.

BEGIN, COMMIT and ROLLBACK are also `db.query` spans wherever Django logs them as queries
(its `debug_transaction`, which feeds `connection.queries` and so `CaptureQueriesContext`
and `assertNumQueries`): a trace's query count is Django's own, on every backend. SQLite's
BEGIN is a cursor query Django logs itself, so the SQL hook already has it.
"""

from __future__ import annotations

import weakref
from typing import Any

from django.db import transaction
from django.db.backends import utils as backend_utils
from django.db.backends.base import base as backend_base
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.transaction import Atomic
from djtrace.hooks.db import query_attrs
from djtrace.model import ATTRS, END, NAME, START, THREAD, Record, Trace
from djtrace.patching import patch
from djtrace.recorder import (
    State,
    clock,
    close_span,
    config,
    current,
    mark_error,
    open_span,
    span_scope,
    thread_id,
    tracer_failed,
)
from djtrace.source import user_source


class _Open:
    """One open atomic block: its span, its depth, and the states around it."""

    __slots__ = ("depth", "span", "trace", "outer", "inner")

    def __init__(self, depth: int, span: Record, trace: Trace, outer: State, inner: State) -> None:
        self.depth = depth
        self.span = span
        self.trace = trace
        self.outer = outer
        self.inner = inner


_stacks: weakref.WeakKeyDictionary[BaseDatabaseWrapper, list[_Open]] = weakref.WeakKeyDictionary()


def _enter(original: Any) -> Any:
    def __enter__(self: Atomic) -> Any:
        state = current.get()
        if state is None:
            return original(self)
        return _traced_enter(state, self, original)

    return __enter__


def _traced_enter(state: State, atomic: Atomic, original: Any) -> Any:
    trace, parent, collector = state.trace, state.span, state.collector
    try:
        connection = transaction.get_connection(atomic.using)
        outermost = not connection.in_atomic_block
        attrs: dict[str, Any] = {"alias": connection.alias, "durable": bool(atomic.durable)}
        span = open_span(trace, parent, "db.transaction", "atomic", attrs)
    except Exception:
        tracer_failed(trace, "db.transaction start")
        return original(atomic)
    if span is None:
        return original(atomic)
    inner = State(trace, span, collector, span[THREAD])
    current.set(inner)  # the BEGIN/SAVEPOINT work nests in the block
    try:
        result = original(atomic)
    except BaseException as exc:
        if current.get() is inner:
            current.set(state)
        close_span(span)
        mark_error(span, exc)
        raise
    try:
        if outermost:
            kind = "transaction"
        elif connection.savepoint_ids and connection.savepoint_ids[-1] is not None:
            kind = "savepoint"
        else:
            kind = "nested"
        attrs["kind"] = kind
        span[NAME] = kind
        entry = _Open(len(connection.atomic_blocks), span, trace, state, inner)
        stack = _stacks.get(connection)
        if stack is None:
            _stacks[connection] = [entry]
        else:
            stack.append(entry)
    except Exception:
        tracer_failed(trace, "db.transaction enter")
        if current.get() is inner:
            current.set(state)
        close_span(span)
    return result


def _exit(original: Any) -> Any:
    def __exit__(self: Atomic, exc_type: Any, exc_value: Any, traceback: Any) -> Any:
        if not _stacks:  # no traced block is open anywhere
            return original(self, exc_type, exc_value, traceback)
        entry = connection = None
        try:
            connection = transaction.get_connection(self.using)
            stack = _stacks.get(connection)
            if stack:
                depth = len(connection.atomic_blocks)
                while stack and stack[-1].depth > depth:  # blocks left behind by a reconnect
                    stale = stack.pop()
                    close_span(stale.span)
                if stack and stack[-1].depth == depth:
                    entry = stack.pop()
                if not stack:
                    del _stacks[connection]
        except Exception:
            tracer_failed(None, "db.transaction exit")
        if entry is None:
            return original(self, exc_type, exc_value, traceback)
        return _traced_exit(entry, connection, self, original, exc_type, exc_value, traceback)

    return __exit__


def _traced_exit(
    entry: _Open,
    connection: Any,
    atomic: Atomic,
    original: Any,
    exc_type: Any,
    exc_value: Any,
    traceback: Any,
) -> Any:
    span, attrs = entry.span, entry.span[ATTRS]
    # Decided before Django resets the flags: an exception or set_rollback(True) rolls back.
    rollback = exc_type is not None or bool(connection.needs_rollback)
    failed = False
    try:
        return original(atomic, exc_type, exc_value, traceback)
    except BaseException as exc:  # the commit itself failed: Django rolled back
        failed = True
        mark_error(span, exc)
        raise
    finally:
        attrs["outcome"] = "rollback" if rollback or failed else "commit"
        if exc_value is not None and isinstance(exc_value, Exception):
            mark_error(span, exc_value)
        if current.get() is entry.inner:
            current.set(entry.outer)
        close_span(span)


def _commit(original: Any, phase: str) -> Any:
    def run(self: BaseDatabaseWrapper) -> Any:
        state = current.get()
        if state is None or self.connection is None:
            return original(self)
        with span_scope(state, phase, self.alias, {"alias": self.alias}):
            return original(self)

    return run


class _ControlQuery:
    """Django's `debug_transaction(connection, sql)` context, timed as a `db.query` span."""

    __slots__ = ("inner", "trace", "span")

    def __init__(self, inner: Any, state: State, connection: Any, sql: str) -> None:
        self.inner = inner
        self.trace = trace = state.trace
        self.span: Record | None = None
        try:
            records = trace.records
            if len(records) >= config.max_spans:
                trace.dropped_spans += 1
                return
            parent = state.span
            alias = connection.alias
            source = user_source(3)
            attrs = (query_attrs, sql, None, False, alias, connection.vendor, source, None)
            self.span = [parent, "db.query", alias, 0, 0, thread_id(), attrs, None]
        except Exception:
            tracer_failed(trace, "db.query (transaction) start")

    def __enter__(self) -> Any:
        span = self.span
        if span is not None:
            span[START] = clock()  # after the walk, like the SQL hook
            self.trace.records.append(span)
        return self.inner.__enter__()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return self.inner.__exit__(exc_type, exc, tb)
        finally:
            span = self.span
            if span is not None:
                span[END] = clock()
                if isinstance(exc, Exception):
                    mark_error(span, exc)


def _debug_transaction(original: Any) -> Any:
    def debug_transaction(connection: Any, sql: str) -> Any:
        inner = original(connection, sql)
        state = current.get()
        if state is None:
            return inner
        return _ControlQuery(inner, state, connection, sql)

    return debug_transaction


def install() -> None:
    patch(Atomic, "__enter__", _enter)
    patch(Atomic, "__exit__", _exit)
    patch(BaseDatabaseWrapper, "_commit", lambda original: _commit(original, "db.commit"))
    patch(BaseDatabaseWrapper, "_rollback", lambda original: _commit(original, "db.rollback"))
    # Where Django's backends look it up when they call it: base.py imported it by name;
    # a backend imported later (Oracle, third-party) gets it from utils.
    for module in (backend_base, backend_utils):
        if hasattr(module, "debug_transaction"):  # Django 4.2+ logs BEGIN/COMMIT/ROLLBACK
            patch(module, "debug_transaction", _debug_transaction)
