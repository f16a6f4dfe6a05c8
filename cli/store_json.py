"""`djtrace list --format json` and `stats --format json`: the same rows, for scripts (jq, CI).

Times are milliseconds rounded to the microsecond, plus the exact integer nanoseconds of
the trace format where a script may want to join on them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

import typer
from djtrace import aggregate
from djtrace.exporters.store import Summary


def _ms(ns: int | float) -> float:
    return round(ns / 1e6, 3)


def summary_dict(row: Summary) -> dict[str, Any]:
    started = dt.datetime.fromtimestamp(row.started_at / 1e9, dt.timezone.utc)
    return {
        "id": row.id,
        "started_at": started.isoformat(timespec="milliseconds"),
        "started_at_ns": row.started_at,
        "method": row.method,
        "path": row.path,
        "query": row.query,
        "route": row.route,
        "status": row.status,
        "duration_ms": _ms(row.duration),
        "duration_ns": row.duration,
        "queries": row.queries,
        "pid": row.pid,
        "thread": row.thread,
        "server": row.server,
        "mode": row.mode,
    }


def route_dict(stats: aggregate.RouteStats, phase_names: Iterable[str]) -> dict[str, Any]:
    return {
        "method": stats.method,
        "route": stats.route,
        "count": stats.count,
        "p50_ms": _ms(stats.p(50)),
        "p95_ms": _ms(stats.p(95)),
        "p99_ms": _ms(stats.p(99)),
        "mean_queries": round(stats.mean_queries, 2),
        "phases_p95_ms": {name: _ms(stats.phase_p(name)) for name in phase_names},
    }


def echo_json(items: list[dict[str, Any]]) -> None:
    """A JSON array, one element per line: readable, and `jq`/`json.loads` take it whole."""
    if not items:
        typer.echo("[]")
        return
    body = ",\n".join("  " + json.dumps(item, ensure_ascii=False) for item in items)
    typer.echo("[\n" + body + "\n]")
