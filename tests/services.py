"""Scratch databases on the real PostgreSQL and Redis, and readers for `--format jsonl` output.

Each test module uses its own PostgreSQL database and Redis db number, made empty before
and removed (or flushed) after, so modules never see each other's data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from djtrace import Span, Trace


@contextmanager
def pg_database(conninfo: dict[str, Any], name: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database `name`, dropped afterwards."""
    import psycopg
    from psycopg import sql

    def drop() -> None:
        with psycopg.connect(dbname="postgres", autocommit=True, **conninfo) as conn:
            # FORCE: a pool left behind by a killed child process must not keep it alive.
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    drop()
    with psycopg.connect(dbname="postgres", autocommit=True, **conninfo) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        drop()


@contextmanager
def redis_db(url: str, number: int) -> Iterator[int]:
    """Redis database `number`, flushed before and after."""
    import redis

    client = redis.Redis.from_url(f"{url}/{number}")
    client.flushdb()
    try:
        yield number
    finally:
        client.flushdb()
        client.close()


@contextmanager
def pg_alias(conninfo: dict[str, Any], db_name: str, alias: str) -> Iterator[str]:
    """A PostgreSQL database alias added next to the suite's SQLite default, then removed."""
    from django.db import connections

    with pg_database(conninfo, db_name):
        configured = connections.configure_settings(
            {
                "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
                alias: {
                    "ENGINE": "django.db.backends.postgresql",
                    "NAME": db_name,
                    "HOST": conninfo["host"],
                    "PORT": str(conninfo["port"]),
                    "USER": conninfo["user"],
                },
            }
        )
        connections.settings[alias] = configured[alias]
        try:
            yield alias
        finally:
            connections[alias].close()
            del connections[alias]
            del connections.settings[alias]


def jsonl_traces(stdout: str) -> list[Trace]:
    """The traces `djtrace request --format jsonl` printed, one per line, in run order."""
    return [Trace.from_dict(json.loads(line)) for line in stdout.splitlines() if line.strip()]


def spans_of(trace: Trace, phase: str, **attrs: Any) -> list[Span]:
    """Spans of `phase` whose attrs include every given key=value."""
    return [
        s
        for s in trace.spans
        if s.phase == phase and all(s.attrs.get(k) == v for k, v in attrs.items())
    ]


def inside(trace: Trace, span: Span) -> list[Span]:
    """Every span nested (at any depth) under `span`, in start order."""
    below: dict[int | None, list[Span]] = {}
    for s in trace.spans:
        below.setdefault(s.parent, []).append(s)
    out: list[Span] = []
    todo = list(below.get(span.id, []))
    while todo:
        s = todo.pop()
        out.append(s)
        todo += below.get(s.id, [])
    return sorted(out, key=lambda s: s.start)
