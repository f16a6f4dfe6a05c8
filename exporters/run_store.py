"""Load runs kept in the trace store, beside the traces they joined (table `load_runs`).

One row per run: its id, when it started, a one-line label and the run document
(docs/load-format.md) as JSON. The table is made on first use, so a store written by an
older djtrace reads as having no runs.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from typing import Any

from djtrace.exporters.store import StoreError, TraceStore
from djtrace.model import SchemaError, Trace

_TABLE = """
CREATE TABLE IF NOT EXISTS load_runs (
    run_id TEXT PRIMARY KEY,
    started_at INTEGER NOT NULL,
    label TEXT NOT NULL,
    data TEXT NOT NULL
)
"""


class RunNotFound(StoreError):
    pass


def _has_table(store: TraceStore) -> bool:
    rows = store.conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='load_runs'"
    ).fetchall()
    return bool(rows)


def save_run(store: TraceStore, doc: dict[str, Any], label: str) -> None:
    """Keep (or replace) the run `doc` in the store."""
    try:
        store.conn.execute(_TABLE)
        store.conn.execute(
            "INSERT OR REPLACE INTO load_runs (run_id, started_at, label, data) "
            "VALUES (?, ?, ?, ?)",
            (doc["run_id"], doc["started_at"], label, json.dumps(doc, separators=(",", ":"))),
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot keep the load run in {store.path}: {exc}") from None


def list_runs(store: TraceStore, limit: int = 20) -> list[tuple[str, int, str]]:
    """(run_id, started_at, label) of the newest runs, newest first."""
    try:
        if not _has_table(store):
            return []
        rows = store.conn.execute(
            "SELECT run_id, started_at, label FROM load_runs ORDER BY started_at DESC LIMIT ?",
            (limit,),
        ).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read load runs from {store.path}: {exc}") from None
    return [(str(r[0]), int(r[1]), str(r[2])) for r in rows]


def get_run(store: TraceStore, ref: str) -> dict[str, Any]:
    """The run whose id is `ref` or starts with it; `last` is the newest run."""
    try:
        if not _has_table(store):
            raise RunNotFound(f"no load runs in {store.path}: run `djtrace load` first")
        if ref in ("last", "latest"):
            rows = store.conn.execute(
                "SELECT run_id, data FROM load_runs ORDER BY started_at DESC LIMIT 1"
            ).fetchall()
        else:
            rows = store.conn.execute(
                "SELECT run_id, data FROM load_runs WHERE run_id = ? OR run_id LIKE ? "
                "ORDER BY run_id = ? DESC LIMIT 2",
                (ref, ref.replace("%", "").replace("_", "\\_") + "%", ref),
            ).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read load runs from {store.path}: {exc}") from None
    if not rows:
        raise RunNotFound(f"no load run {ref!r} in {store.path} (see `djtrace load --runs`)")
    if len(rows) > 1 and rows[0][0] != ref:
        raise RunNotFound(f"{ref!r} matches several load runs; give more characters")
    try:
        return json.loads(rows[0][1])
    except ValueError as exc:
        raise StoreError(f"load run {rows[0][0]} in {store.path} is unreadable: {exc}") from None


def traces_of_run(store: TraceStore, run_id: str, since_ns: int) -> Iterator[Trace]:
    """Traces started since `since_ns` that mention `run_id` (the join checks the tag)."""
    try:
        rows = store.conn.execute(
            "SELECT data FROM traces WHERE started_at >= ? AND instr(data, ?) > 0",
            (since_ns, run_id),
        ).fetchall()
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read traces from {store.path}: {exc}") from None
    for (data,) in rows:
        try:
            yield Trace.from_dict(json.loads(data))
        except (ValueError, TypeError, SchemaError):
            continue  # one unreadable row: that request stays unjoined


def count_run_traces(store: TraceStore, run_id: str, since_ns: int) -> int:
    try:
        return int(
            store.conn.execute(
                "SELECT count(*) FROM traces WHERE started_at >= ? AND instr(data, ?) > 0",
                (since_ns, run_id),
            ).fetchone()[0]
        )
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read traces from {store.path}: {exc}") from None
