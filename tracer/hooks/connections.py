"""Database connections: opened, checked out of a pool, reused, closed.

`BaseDatabaseWrapper.connect` is a `db.connect` span (name: the alias) whose attrs say how
the request got its connection: `action` is "opened" (a new connection), "checkout" (taken
from Django 5.1+'s psycopg pool) or "reused" (a persistent connection, CONN_MAX_AGE, that
was already open when the request first used it). "reused" is an instant span where the
trace's first query on that alias runs (through `CursorWrapper.execute`/`executemany`): a
request that only opens a cursor or a transaction on an open connection, with no query,
gets none. `close` is a `db.close` span: "closed" or "returned" to the pool.

Inside a pooled `db.connect`, the pool's own checkout (`psycopg_pool.ConnectionPool.getconn`,
hooked on the class once a traced request first checks out) is a `db.pool` span named
"checkout <alias>", attrs `wait_ns` (how long getconn took: waiting for a free connection
when the pool is exhausted) and `timeout` (True when the pool gave up: PoolTimeout).

Nothing here reads connection parameters: `get_connection_params()` is never called.
"""

from __future__ import annotations

import sys
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from djtrace.model import END, NAME, PHASE, START
from djtrace.patching import patch
from djtrace.recorder import State, current, enter, leave, open_span, span_scope, tracer_failed


def _pooled(db: BaseDatabaseWrapper) -> bool:
    """Django 5.1+ PostgreSQL with OPTIONS={"pool": ...}; read from settings, never computed."""
    options = db.settings_dict.get("OPTIONS") or {}
    return bool(options.get("pool")) and db.vendor == "postgresql"


def _pool_stats(db: BaseDatabaseWrapper, attrs: dict[str, Any]) -> None:
    """Pool size and free connections right after the checkout (psycopg_pool's own counters)."""
    pools = getattr(type(db), "_connection_pools", None)
    pool = pools.get(db.alias) if isinstance(pools, dict) else None
    if pool is None:
        return
    stats = pool.get_stats()
    for key in ("pool_size", "pool_available", "pool_max", "requests_waiting"):
        if key in stats:
            attrs[key] = stats[key]


def _attrs(db: BaseDatabaseWrapper, pooled: bool, action: str) -> dict[str, Any]:
    return {"alias": db.alias, "vendor": db.vendor, "pooled": pooled, "action": action}


def _connect(original: Any) -> Any:
    def connect(self: BaseDatabaseWrapper) -> Any:
        state = current.get()
        if state is None:
            return original(self)
        return _traced_connect(state, self, original)

    return connect


def _traced_connect(state: State, db: BaseDatabaseWrapper, original: Any) -> Any:
    trace = state.trace
    try:
        pooled = _pooled(db)
        attrs = _attrs(db, pooled, "checkout" if pooled else "opened")
        attrs["reused"] = False
        trace._connections.add(db.alias)
        if pooled:
            _hook_pool()
    except Exception:
        tracer_failed(trace, "db.connect start")
        return original(db)
    # Work done while connecting (init queries, connection_created receivers) nests here.
    with span_scope(state, "db.connect", db.alias, attrs) as span:
        connection = original(db)
    if pooled and span is not None:
        try:
            _pool_stats(db, attrs)
        except Exception:
            tracer_failed(trace, "db.connect pool stats")
    return connection


def note_reused(state: State, db: BaseDatabaseWrapper) -> None:
    """The trace's first query on `db` found it open: an instant `db.connect` span, "reused".

    Called by the SQL hook (tracer.hooks.db), which checks `trace._connections` inline: a
    hook of its own on `ensure_connection` would cost a call on every query, traced or not.
    """
    if db.connection is None:  # a cursor outliving its connection: the query will fail
        return
    trace = state.trace
    try:
        trace._connections.add(db.alias)
        attrs = _attrs(db, False, "reused")
        attrs["reused"] = True
        span = open_span(trace, state.span, "db.connect", db.alias, attrs)
        if span is not None:
            span[END] = span[START]  # an instant: nothing was done to get it
    except Exception:
        tracer_failed(trace, "db.connect reused")


def _close(original: Any) -> Any:
    def close(self: BaseDatabaseWrapper) -> Any:
        state = current.get()
        # Nothing to close (or closing is deferred to the end of an atomic block).
        if state is None or self.connection is None or self.closed_in_transaction:
            return original(self)
        trace = state.trace
        try:
            pooled = _pooled(self)
            attrs = _attrs(self, pooled, "returned" if pooled else "closed")
        except Exception:
            tracer_failed(trace, "db.close start")
            return original(self)
        try:
            with span_scope(state, "db.close", self.alias, attrs):
                return original(self)
        finally:
            # A later use in this trace opens a new connection, so it is not "reused".
            trace._connections.discard(self.alias)

    return close


def _getconn(original: Any) -> Any:
    def getconn(self: Any, *args: Any, **kwargs: Any) -> Any:
        state = current.get()
        if state is None:
            return original(self, *args, **kwargs)
        parent = state.span
        alias = parent[NAME] if parent is not None and parent[PHASE] == "db.connect" else self.name
        attrs: dict[str, Any] = {"wait_ns": 0, "timeout": False}
        span = enter(state, "db.pool", f"checkout {alias}", attrs)
        try:
            connection = original(self, *args, **kwargs)
        except BaseException as exc:
            attrs["timeout"] = type(exc).__name__ == "PoolTimeout"
            leave(state, span, exc)
            if span is not None:
                attrs["wait_ns"] = span[END] - span[START]
            raise
        leave(state, span)
        if span is not None:
            attrs["wait_ns"] = span[END] - span[START]
        return connection

    return getconn


def _hook_pool() -> None:
    """Hook psycopg_pool's checkout unless it is hooked (after `uninstall()` it is not):
    imported here only by a project whose database uses the pool, which imports it anyway."""
    module = sys.modules.get("psycopg_pool")
    if module is None:
        try:
            import psycopg_pool as module
        except ImportError:
            return
    pool = module.ConnectionPool
    if not hasattr(pool.__dict__.get("getconn"), "__djtrace_original__"):
        patch(pool, "getconn", _getconn)


def install() -> None:
    patch(BaseDatabaseWrapper, "connect", _connect)
    patch(BaseDatabaseWrapper, "close", _close)
