"""A window of stored traces for the timeline and the window analyses: by time (--since,
--until), by load run and stage (the X-Djtrace-Load tag each lab request carries), by path
and process. Read straight from the store's rows, newest first up to a limit, so a window
of a busy store stays bounded."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from djtrace.cli.errors import CliError
from djtrace.cli.store_access import open_store, parse_since
from djtrace.exporters.store import Filters, TraceStore
from djtrace.lab.tag import tag_of
from djtrace.model import SchemaError, Trace

#: Without --since/--until/--run: this much of the newest traffic.
DEFAULT_SPAN_NS = 5_000_000_000
DEFAULT_LIMIT = 5000


@dataclass
class Selection:
    since: int | None = None  # epoch ns
    until: int | None = None
    run: str | None = None
    stage: int | None = None
    path: str | None = None
    pid: int | None = None


@dataclass
class Window:
    traces: list[Trace]  # oldest first
    selection: Selection
    matched: int  # rows that matched before the limit
    unreadable: int  # rows that could not be decoded (left out)
    latest: bool  # the default window: the newest traffic

    def describe(self) -> str:
        sel = self.selection
        parts = []
        if sel.run:
            parts.append(f"run {sel.run}")
        if sel.stage is not None:
            parts.append(f"stage {sel.stage}")
        if self.latest:
            parts.append("the newest traffic (choose with --since, --run; zoom with --from/--to)")
        if self.matched > len(self.traces):
            parts.append(f"newest {len(self.traces)} of {self.matched} (--limit)")
        return " · ".join(parts)


def make_selection(
    since: str | None,
    until: str | None,
    run: str | None,
    stage: int | None,
    path: str | None = None,
    pid: int | None = None,
) -> Selection:
    selection = Selection(
        since=parse_since(since) if since else None,
        until=parse_since(until) if until else None,
        run=run,
        stage=stage,
        path=path,
        pid=pid,
    )
    if selection.since and selection.until and selection.until <= selection.since:
        raise CliError(f"--until {until!r} is not after --since {since!r}")
    if run is not None and not run.replace("-", "").replace("_", "").isalnum():
        raise CliError(f"--run {run!r}: a run id is letters, digits, - and _ (see `djtrace load`)")
    return selection


def _where(selection: Selection) -> tuple[str, list[object]]:
    where, params = Filters(path=selection.path, pid=selection.pid, since=selection.since).where()
    clauses = [where[len(" WHERE ") :]] if where else []
    if selection.until is not None:
        clauses.append("started_at < ?")
        params.append(selection.until)
    if selection.run is not None:
        clauses.append("instr(data, ?) > 0")  # narrowed in SQL, checked exactly once decoded
        params.append(selection.run)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _matches(trace: Trace, selection: Selection) -> bool:
    if selection.run is None and selection.stage is None:
        return True
    load = tag_of(trace.request)
    if load is None:
        return False
    if selection.run is not None and load.get("run") != selection.run:
        return False
    return selection.stage is None or load.get("stage") == selection.stage


def _latest_run(conn: sqlite3.Connection) -> str | None:
    row = conn.execute(
        "SELECT data FROM traces WHERE instr(data, '\"load\":{') > 0 "
        "ORDER BY started_at DESC LIMIT 1"
    ).fetchone()
    if not row:
        return None
    load = tag_of(json.loads(row[0]).get("request") or {})
    return load["run"] if load is not None else None


def read_window(store_file: Path, selection: Selection, limit: int = DEFAULT_LIMIT) -> Window:
    """The traces of the selection, oldest first (the newest `limit` when more match)."""
    store = open_store(store_file)
    try:
        return _read(store, selection, limit)
    except sqlite3.DatabaseError as exc:
        raise CliError(f"cannot read the trace store {store_file}: {exc}", code=1) from None
    finally:
        store.close()


def _read(store: TraceStore, selection: Selection, limit: int) -> Window:
    conn = store.conn
    latest = False
    if selection.stage is not None and selection.run is None:
        selection.run = _latest_run(conn)
        if selection.run is None:
            raise CliError(
                "--stage: no trace in the store carries a load tag; "
                "run `djtrace load` first, or select by --since"
            )
    if selection.since is None and selection.until is None and selection.run is None:
        where, params = _where(selection)
        row = conn.execute(f"SELECT max(started_at + duration) FROM traces{where}", params)
        newest = row.fetchone()[0]
        if newest is not None:
            selection.since = int(newest) - DEFAULT_SPAN_NS
            latest = True
    where, params = _where(selection)
    rows = conn.execute(
        f"SELECT id, data FROM traces{where} ORDER BY started_at DESC, seq DESC", params
    )
    traces: list[Trace] = []
    matched = unreadable = 0
    for _trace_id, data in rows:
        if len(traces) >= limit:  # beyond the limit: counted (roughly, for the note), not read
            matched += 1
            continue
        try:
            trace = Trace.from_dict(json.loads(data))
        except (ValueError, SchemaError):
            unreadable += 1
            continue
        if not _matches(trace, selection):
            continue
        matched += 1
        traces.append(trace)
    traces.reverse()
    return Window(traces, selection, matched, unreadable, latest)
