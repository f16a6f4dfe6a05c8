"""The trace store: one SQLite file (WAL mode) shared by every process of a captured server.

Each row is one finished trace: summary columns for listing and aggregating (indexed),
the phase breakdown, and the trace itself in the documented JSON format. Many processes
write at once (a busy timeout and short transactions); readers never block writers. The
store keeps the newest `max_traces` traces. Its own schema version lives in `meta`, next
to the count of traces dropped because a writer's queue was full.

A damaged file (truncated, overwritten) can still be read: `TraceStore.salvage` copies
every row SQLite can still reach into an in-memory store.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from djtrace.analysis import breakdown, is_light, query_totals
from djtrace.model import SchemaError, Trace

#: Version of the table layout below; a store with a higher number is refused.
STORE_SCHEMA = 1
DEFAULT_PATH = Path(".djtrace") / "traces.sqlite3"
DEFAULT_MAX_TRACES = 10_000
BUSY_TIMEOUT_S = 30.0

_INT64_MAX = 2**63 - 1  # SQLite's INTEGER
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE traces (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    started_at INTEGER NOT NULL,
    duration INTEGER NOT NULL,
    method TEXT,
    path TEXT,
    query TEXT,
    route TEXT,
    view TEXT,
    status INTEGER,
    queries INTEGER NOT NULL DEFAULT 0,
    pid INTEGER,
    thread TEXT,
    server TEXT,
    mode TEXT,
    settings TEXT,
    cwd TEXT,
    phases TEXT,
    data TEXT NOT NULL
);
CREATE INDEX traces_started_at ON traces (started_at);
CREATE INDEX traces_route ON traces (route, method);
CREATE INDEX traces_path ON traces (path);
CREATE INDEX traces_status ON traces (status);
CREATE INDEX traces_duration ON traces (duration);
CREATE INDEX traces_pid ON traces (pid);
"""

#: Columns written per trace, in INSERT order (`seq` is assigned by SQLite).
COLUMNS = (
    "id",
    "started_at",
    "duration",
    "method",
    "path",
    "query",
    "route",
    "view",
    "status",
    "queries",
    "pid",
    "thread",
    "server",
    "mode",
    "settings",
    "cwd",
    "phases",
    "data",
)
_SUMMARY = (
    "seq, id, started_at, duration, method, path, query, route, status, queries, pid, thread, "
    "server, mode, settings, cwd"
)


class StoreError(Exception):
    """The store cannot be used; the message says why, in one line."""


class StoreMissing(StoreError):
    pass


class StoreSchemaError(StoreError):
    pass


class StoreDamaged(StoreError):
    pass


class NotAStore(StoreError):
    pass


class TraceNotFound(StoreError):
    pass


class TraceUnreadable(StoreError):
    """One row's trace could not be decoded; the rest of the store is fine."""


def expanded(path: str | os.PathLike[str]) -> Path:
    """`path` with a leading ~ or ~user expanded; as given when there is no such home."""
    try:
        return Path(path).expanduser()
    except RuntimeError:  # "~nobody": no such user
        return Path(path)


def default_path() -> Path:
    return Path(os.environ.get("DJTRACE_STORE") or DEFAULT_PATH)


def default_max_traces() -> int:
    """$DJTRACE_STORE_MAX, else 10,000; StoreError if it is set to something else than a
    whole number of traces (a typo must not silently keep the default)."""
    text = os.environ.get("DJTRACE_STORE_MAX", "").strip()
    if not text:
        return DEFAULT_MAX_TRACES
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if not 1 <= value <= _INT64_MAX:
        raise StoreError(
            f"DJTRACE_STORE_MAX={text[:40]!r}: expected how many traces the store keeps, "
            f"a whole number of at least 1 (default {DEFAULT_MAX_TRACES})"
        )
    return value


@dataclass(frozen=True)
class Summary:
    """A trace's listing columns (no spans)."""

    seq: int
    id: str
    started_at: int
    duration: int
    method: str | None
    path: str | None
    query: str | None
    route: str | None
    status: int | None
    queries: int
    pid: int | None
    thread: str | None
    server: str | None
    mode: str | None
    settings: str | None
    cwd: str | None


@dataclass
class Filters:
    """What `list`, `stats` and `export` select; every field is optional."""

    path: str | None = None  # glob on the path or the route
    status: tuple[int, int] | None = None  # inclusive range
    method: str | None = None
    slower_than: int | None = None  # ns
    since: int | None = None  # ns since the epoch
    pid: int | None = None

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.path:
            clauses.append("(path GLOB ? OR route GLOB ? OR '/' || route GLOB ?)")
            params += [self.path] * 3
        if self.status:
            clauses.append("status BETWEEN ? AND ?")
            params += list(self.status)
        if self.method:
            clauses.append("method = ?")
            params.append(self.method.upper())
        if self.slower_than is not None:
            clauses.append("duration > ?")
            params.append(self.slower_than)
        if self.since is not None:
            clauses.append("started_at >= ?")
            params.append(self.since)
        if self.pid is not None:
            clauses.append("pid = ?")
            params.append(self.pid)
        # SQLite's integers are 64-bit: a bound beyond them is the same as the largest one.
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), [_clamp(p) for p in params]


def _clamp(value: Any) -> Any:
    if isinstance(value, int):
        return min(max(value, -_INT64_MAX - 1), _INT64_MAX)
    return value


SORTS = {
    "time": "started_at DESC, seq DESC",
    "duration": "duration DESC",
    "queries": "queries DESC, duration DESC",
}


def row_for(trace: Trace, settings: str | None = None, cwd: str | None = None) -> tuple:
    """The INSERT values for one trace (done off the request path, by the writer thread)."""
    request = trace.request
    where = trace.where
    if settings is None and isinstance(where.get("settings"), str):
        settings = where["settings"]  # recorded in the trace itself (an import, a request)
    # A light trace has no phases to break down (not 100% unaccounted): null, left out of
    # the phase columns of `stats`.
    phases = None if is_light(trace) else {name: ns for name, ns in breakdown(trace) if ns}
    status = request.get("status")
    pid = where.get("pid")
    return (
        trace.id,
        trace.started_at,
        trace.duration,
        request.get("method"),
        request.get("path"),
        request.get("query") or None,
        request.get("route"),
        request.get("view"),
        status if isinstance(status, int) else None,
        query_totals(trace)[0],
        pid if isinstance(pid, int) else None,
        where.get("thread"),
        where.get("server"),
        where.get("mode"),
        settings,
        cwd,
        json.dumps(phases),
        json.dumps(trace.to_dict(), separators=(",", ":")),
    )


def _classify(exc: sqlite3.DatabaseError, path: Path, doing: str = "cannot use") -> StoreError:
    """SQLite's error as one of ours: not a store, damaged, or some other failure."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    text = str(exc)
    if (code is not None and code & 0xFF == _SQLITE_NOTADB) or "not a database" in text:
        return NotAStore(f"{path} is not a djtrace trace store ({text})")
    if (code is not None and code & 0xFF == _SQLITE_CORRUPT) or "malformed" in text:
        return StoreDamaged(f"the trace store {path} is damaged ({text})")
    return StoreError(f"{doing} the trace store {path}: {text}")


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.executemany(
        "INSERT INTO meta (key, value) VALUES (?, ?)",
        [("schema", str(STORE_SCHEMA)), ("dropped", "0")],
    )


def _memory_store() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    _create_schema(conn)
    return conn


def _decode(trace_id: str, data: Any) -> Trace:
    try:
        if not isinstance(data, str):
            raise SchemaError(f"its data is {type(data).__name__}, not JSON text")
        return Trace.from_dict(json.loads(data))
    except (ValueError, SchemaError, RecursionError) as exc:
        raise TraceUnreadable(f"trace {trace_id} in the store is unreadable: {exc}") from None


def _text(data: bytes) -> str:
    """SQLite TEXT as str; bytes that are not UTF-8 (a damaged or edited file) as U+FFFD."""
    return data.decode("utf-8", "replace")


# A store's columns hold what djtrace wrote, unless the file was edited or damaged: rows are
# read with the types every command expects (a wrong type reads as unknown, never a crash).


def _int_or(value: Any, default: Any) -> Any:
    return value if type(value) is int else default


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _summary(row: Sequence[Any]) -> Summary:
    seq, trace_id, started_at, duration, *text_and_ints = row
    method, path, query, route, status, queries, pid, *rest = text_and_ints
    return Summary(
        _int_or(seq, 0),
        str(trace_id),
        _int_or(started_at, 0),
        _int_or(duration, -1),
        _str_or_none(method),
        _str_or_none(path),
        _str_or_none(query),
        _str_or_none(route),
        _int_or(status, None),
        _int_or(queries, 0),
        _int_or(pid, None),
        *[_str_or_none(v) for v in rest],
    )


def _phases(text: Any) -> dict[str, int] | None:
    """A row's phase breakdown ({phase: ns}); None for a light trace (JSON null), empty when
    it is not one."""
    try:
        decoded = json.loads(text) if isinstance(text, str) and text else {}
    except (ValueError, RecursionError):
        return {}
    if decoded is None:
        return None
    if not isinstance(decoded, dict):
        return {}
    return {k: v for k, v in decoded.items() if type(v) is int}


class TraceStore:
    """An open store. Not shared between threads: each thread or process opens its own."""

    def __init__(self, conn: sqlite3.Connection, path: Path, lost: int | None = None) -> None:
        self.conn = conn
        self.path = path
        #: None for a healthy store; for a salvaged copy, the rows that could not be read.
        self.lost = lost

    # --- opening --------------------------------------------------------------------------

    @classmethod
    def open(
        cls, path: str | os.PathLike[str], *, create: bool = False, check: bool = False
    ) -> TraceStore:
        """Open the store at `path`; with `create`, make it (0600, in a 0700 directory).

        With `check`, SQLite's quick integrity check runs first (a fraction of a second even
        for a full store), so damage is found whatever the command reads afterwards.
        """
        path = expanded(path)
        if create:
            default_max_traces()  # a bad $DJTRACE_STORE_MAX is refused before anything is written
            _create_file(path)
        elif not path.exists():
            raise StoreMissing(f"no trace store at {path}")
        elif path.is_dir():
            raise NotAStore(f"{path} is a directory, not a trace store")
        try:
            conn = sqlite3.connect(
                path.absolute().as_uri() + "?mode=rw",
                uri=True,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,  # explicit BEGIN/COMMIT keeps transactions short
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the trace store {path}: {exc}") from None
        conn.text_factory = _text
        store = cls(conn, path)
        try:
            store._prepare(create)
            if check:
                store._quick_check()
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise _classify(exc, path) from None
        except UnicodeDecodeError:  # a table name that is not text: bytes overwritten
            conn.close()
            raise StoreDamaged(f"the trace store {path} is damaged (unreadable names)") from None
        except StoreError:
            conn.close()
            raise
        return store

    def _prepare(self, create: bool) -> None:
        conn = self.conn
        conn.execute("PRAGMA synchronous=NORMAL")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "meta" in tables:
            self._check_schema()
            return
        if tables - {"sqlite_sequence"}:
            raise NotAStore(f"{self.path} is an SQLite database but not a djtrace trace store")
        if not create:  # an empty file: a store nobody has written to yet
            self._use_empty_memory()
            return
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN IMMEDIATE")  # another process may be creating it right now
        try:
            if not conn.execute("SELECT 1 FROM sqlite_master WHERE name='meta'").fetchone():
                _create_schema(conn)  # statement by statement: executescript would COMMIT
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._check_schema()

    def _quick_check(self) -> None:
        rows = self.conn.execute("PRAGMA quick_check(1)").fetchall()
        problem = str(rows[0][0]) if rows else "no answer"
        if problem != "ok":
            first = " ".join(line for line in problem.splitlines() if not line.startswith("***"))
            raise StoreDamaged(f"the trace store {self.path} is damaged ({first.strip()})")

    def _use_empty_memory(self) -> None:
        # Reading an empty file: answer from an empty in-memory store instead of writing.
        self.conn.close()
        self.conn = _memory_store()

    def _check_schema(self) -> None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        try:
            version = int(row[0]) if row else None
        except ValueError:
            version = None
        if version is None:
            raise NotAStore(f"{self.path} has no djtrace schema version; not a trace store")
        if version > STORE_SCHEMA:
            raise StoreSchemaError(
                f"the trace store {self.path} was written by a newer djtrace (store schema "
                f"{version}; this djtrace reads schema {STORE_SCHEMA}): upgrade djtrace, "
                "or point --store at another file"
            )

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    def __enter__(self) -> TraceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- queries, with damage reported as StoreDamaged -------------------------------------

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise _classify(exc, self.path) from None

    # --- writing ----------------------------------------------------------------------------

    def add_rows(self, rows: Sequence[tuple], max_traces: int | None = None) -> int:
        """Insert rows made by `row_for` in one short transaction; return how many were new.

        Traces already in the store (same id) are left as they are. Beyond `max_traces`
        the oldest traces are deleted.
        """
        cap = max_traces if max_traces is not None else default_max_traces()
        conn = self.conn
        placeholders = ", ".join("?" * len(COLUMNS))
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                before = conn.total_changes
                conn.executemany(
                    f"INSERT OR IGNORE INTO traces ({', '.join(COLUMNS)}) VALUES ({placeholders})",
                    rows,
                )
                added = conn.total_changes - before
                (count,) = conn.execute("SELECT count(*) FROM traces").fetchone()
                if count > cap:
                    conn.execute(
                        "DELETE FROM traces WHERE seq IN "
                        "(SELECT seq FROM traces ORDER BY started_at, seq LIMIT ?)",
                        (count - cap,),
                    )
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise _classify(exc, self.path, "cannot write to") from None
        return added

    def add(self, traces: Sequence[Trace], max_traces: int | None = None) -> int:
        return self.add_rows([row_for(t) for t in traces], max_traces)

    def prune(self, before: int | None = None, keep: int | None = None) -> int:
        """Delete traces started before `before` (epoch ns) and all but the newest `keep`;
        return how many went."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                start = conn.total_changes
                if before is not None:
                    conn.execute("DELETE FROM traces WHERE started_at < ?", (before,))
                if keep is not None:
                    conn.execute(
                        "DELETE FROM traces WHERE seq NOT IN (SELECT seq FROM traces "
                        "ORDER BY started_at DESC, seq DESC LIMIT ?)",
                        (keep,),
                    )
                removed = conn.total_changes - start
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise _classify(exc, self.path, "cannot write to") from None
        return removed

    def count_dropped(self, n: int) -> None:
        """Add `n` to the store's count of traces dropped on a full queue."""
        try:
            self.conn.execute(
                "UPDATE meta SET value = CAST(value AS INTEGER) + ? WHERE key = 'dropped'", (n,)
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the trace store {self.path}: {exc}") from None

    # --- reading ----------------------------------------------------------------------------

    def dropped(self) -> int:
        rows = self._all("SELECT value FROM meta WHERE key = 'dropped'")
        try:
            return int(rows[0][0]) if rows else 0
        except ValueError:
            return 0

    def count(self, filters: Filters | None = None) -> int:
        where, params = (filters or Filters()).where()
        return int(self._all(f"SELECT count(*) FROM traces{where}", params)[0][0])

    def summaries(
        self, filters: Filters | None = None, sort: str = "time", limit: int | None = None
    ) -> list[Summary]:
        where, params = (filters or Filters()).where()
        sql = f"SELECT {_SUMMARY} FROM traces{where} ORDER BY {SORTS[sort]}"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(_clamp(limit))
        return [_summary(row) for row in self._all(sql, params)]

    def after(self, seq: int, limit: int = 500) -> list[Summary]:
        """Traces stored after `seq`, oldest first (for a live view)."""
        rows = self._all(
            f"SELECT {_SUMMARY} FROM traces WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        )
        return [_summary(row) for row in rows]

    def existing(self, ids: Sequence[str]) -> set[str]:
        """Which of `ids` the store holds."""
        found: set[str] = set()
        ids = list(ids)
        for i in range(0, len(ids), 500):  # under SQLite's limit on ? parameters
            chunk = ids[i : i + 500]
            marks = ", ".join("?" * len(chunk))
            found.update(
                r[0] for r in self._all(f"SELECT id FROM traces WHERE id IN ({marks})", chunk)
            )
        return found

    def last_seq(self) -> int:
        return int(self._all("SELECT coalesce(max(seq), 0) FROM traces")[0][0])

    def summary(self, trace_id: str) -> Summary | None:
        rows = self._all(f"SELECT {_SUMMARY} FROM traces WHERE id = ?", (trace_id,))
        return _summary(rows[0]) if rows else None

    def resolve(self, ref: str) -> str:
        """The full id for an id or a unique prefix of one."""
        ref = ref.strip().lower()
        if not ref or any(c not in "0123456789abcdef" for c in ref):
            shown = ref if len(ref) <= 40 else ref[:37] + "…"
            raise TraceNotFound(
                f"{shown!r} is not a trace id (ids are hex, e.g. from `djtrace list`)"
            )
        rows = self._all(
            "SELECT id FROM traces WHERE id >= ? AND id < ? ORDER BY id LIMIT 6",
            (ref, ref + "g"),  # 'g' sorts after every hex digit
        )
        ids = [r[0] for r in rows]
        if ref in ids:
            return ref
        if not ids:
            raise TraceNotFound(f"no trace {ref!r} in {self.path}")
        if len(ids) > 1:
            more = "+" if len(ids) > 5 else ""
            raise TraceNotFound(
                f"{ref!r} matches {min(len(ids), 5)}{more} traces "
                f"({', '.join(i[:12] for i in ids[:5])}{', …' if more else ''}); "
                "give more characters"
            )
        return ids[0]

    def get(self, ref: str) -> Trace:
        trace_id = self.resolve(ref)
        rows = self._all("SELECT data FROM traces WHERE id = ?", (trace_id,))
        if not rows:
            raise TraceNotFound(f"no trace {ref!r} in {self.path}")
        return _decode(trace_id, rows[0][0])

    def find_tagged(self, header: str, value: str, since: int) -> Trace | None:
        """The trace since `since` whose request carried `header: value` (a replay's nonce)."""
        rows = self._all(
            "SELECT id, data FROM traces WHERE started_at >= ? AND instr(data, ?) > 0",
            (since, value),
        )
        for trace_id, data in rows:
            trace = _decode(trace_id, data)
            if (trace.request.get("headers") or {}).get(header) == value:
                return trace
        return None

    def first(self, filters: Filters | None = None, sort: str = "time") -> Trace | None:
        """The first trace in `sort` order (latest, slowest…), or None when there is none."""
        found = self.summaries(filters, sort, limit=1)
        return self.get(found[0].id) if found else None

    def phase_rows(
        self, filters: Filters | None = None
    ) -> list[tuple[str | None, str | None, int, int, dict[str, int] | None]]:
        """(method, route, duration, queries, phases) of each matching trace, for stats."""
        where, params = (filters or Filters()).where()
        out = []
        for method, route, duration, queries, phases in self._all(
            f"SELECT method, route, duration, queries, phases FROM traces{where}", params
        ):
            out.append(
                (
                    _str_or_none(method),
                    _str_or_none(route),
                    _int_or(duration, 0),
                    _int_or(queries, 0),
                    _phases(phases),
                )
            )
        return out

    #: What `stats --by` groups on: the columns that make each group's key.
    GROUPINGS = {"page": "route, view", "route": "route", "view": "view", "path": "path"}

    def group_rows(
        self, filters: Filters | None = None, by: str = "page"
    ) -> list[tuple[str | None, tuple[str | None, ...], int, int, dict[str, int] | None]]:
        """(method, key, duration, queries, phases) of each matching trace, for stats: the
        key is (route, view) for "page", else the one column `by` names (GROUPINGS)."""
        columns = self.GROUPINGS[by]
        where, params = (filters or Filters()).where()
        out = []
        for method, duration, queries, phases, *key in self._all(
            f"SELECT method, duration, queries, phases, {columns} FROM traces{where}", params
        ):
            out.append(
                (
                    method if isinstance(method, str) else None,
                    tuple(k if isinstance(k, str) else None for k in key),
                    duration if type(duration) is int else 0,
                    queries if type(queries) is int else 0,
                    _phases(phases),
                )
            )
        return out

    # --- reading a damaged file ---------------------------------------------------------------

    @classmethod
    def salvage(cls, path: str | os.PathLike[str]) -> TraceStore:
        """Every row SQLite can still read from a damaged store, in an in-memory store.

        Works on a copy (never the user's file): the header's page count is cleared so a
        truncated file is read as far as it goes, then each row is fetched on its own.
        """
        path = expanded(path)
        memory = _memory_store()
        lost = 0
        with tempfile.TemporaryDirectory(prefix="djtrace-salvage-") as tmp:
            copy = Path(tmp) / "store.sqlite3"
            shutil.copyfile(path, copy)
            wal = Path(str(path) + "-wal")
            if wal.exists():
                shutil.copyfile(wal, Path(str(copy) + "-wal"))
            with open(copy, "r+b") as f:
                header = f.read(100)
                if len(header) == 100 and header.startswith(b"SQLite format 3\0"):
                    f.seek(92)
                    f.write(b"\0\0\0\0")  # "header page count not valid": use the file size
            source = sqlite3.connect(copy)
            source.text_factory = _text
            try:
                kept, lost = _copy_rows(source, memory)
            finally:
                source.close()
        if kept == 0 and lost == 0:
            memory.close()
            raise StoreDamaged(f"the trace store {path} is damaged and no trace could be read")
        return cls(memory, path, lost=lost)


def _copy_rows(source: sqlite3.Connection, target: sqlite3.Connection) -> tuple[int, int]:
    try:
        source.execute("SELECT 1 FROM sqlite_master WHERE name = 'traces'").fetchall()
    except sqlite3.DatabaseError:
        return 0, 0  # not even the list of tables can be read: nothing can be found
    seqs, lost = _reachable_seqs(source)
    kept = 0
    select = f"SELECT seq, {', '.join(COLUMNS)} FROM traces WHERE seq = ?"
    insert = (
        f"INSERT OR IGNORE INTO traces (seq, {', '.join(COLUMNS)}) "
        f"VALUES ({', '.join('?' * (len(COLUMNS) + 1))})"
    )
    for seq in seqs:
        try:
            row = source.execute(select, (seq,)).fetchone()
        except sqlite3.DatabaseError:
            lost += 1
            continue
        if row is None:
            continue
        try:
            _decode(str(row[1]), row[-1])
            target.execute(insert, row)
        except (TraceUnreadable, sqlite3.Error, OverflowError):
            lost += 1
            continue
        kept += 1
    return kept, lost


#: How far the walk over a damaged table steps past rows it cannot read before it stops.
_GIVE_UP_AFTER = 2000


def _reachable_seqs(source: sqlite3.Connection) -> tuple[list[int], int]:
    """Row numbers to try (from whichever index still reads, else by walking the table),
    and how many rows between them could not be read."""
    for index in (
        "traces_started_at",
        "traces_duration",
        "traces_pid",
        "sqlite_autoindex_traces_1",
    ):
        try:
            rows = source.execute(f"SELECT seq FROM traces INDEXED BY {index}").fetchall()
        except sqlite3.DatabaseError:
            continue
        return sorted(r[0] for r in rows if type(r[0]) is int), 0
    # No index is whole: walk the table in row order, each step a seek to the next row;
    # where a seek fails, step over one row number and try again. Every step moves forward
    # and a long run of failures ends the walk, so a file of garbage ends it quickly.
    seqs: list[int] = []
    failed: list[int] = []
    seq = failures = 0
    while failures < _GIVE_UP_AFTER and seq < _INT64_MAX:
        try:
            row = source.execute(
                "SELECT seq FROM traces WHERE seq > ? ORDER BY seq LIMIT 1", (seq,)
            ).fetchone()
        except sqlite3.DatabaseError:
            row = ()
        if row is None:
            break
        if not row or type(row[0]) is not int or row[0] <= seq:
            seq += 1
            failed.append(seq)
            failures += 1
            continue
        seq = row[0]
        seqs.append(seq)
        failures = 0
    # A failed step between two rows that were read was (probably) a row; past them, not.
    lost = sum(1 for s in failed if seqs and seqs[0] < s < seqs[-1])
    return seqs, lost


def _create_file(path: Path) -> None:
    """The store file, readable only by its owner, in a directory only its owner can list."""
    if path.is_dir():
        raise NotAStore(f"{path} is a directory, not a trace store")
    parent = path.parent
    if not parent.exists():
        try:
            parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {parent} for the trace store: {exc}") from None
        if parent.name == DEFAULT_PATH.parent.name:
            # Traces hold paths, SQL and headers: never committed by accident (like .venv/).
            with contextlib.suppress(OSError):
                (parent / ".gitignore").write_text("# created by djtrace\n*\n")
    if path.exists():
        return
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError as exc:
        raise StoreError(f"cannot create the trace store {path}: {exc}") from None
    os.close(fd)


def benchmark_sink() -> Callable[[Trace], None]:
    """The real sink (bounded queue + writer thread) into a throwaway store, for
    benchmarks/overhead.py."""
    import atexit

    from djtrace.exporters.writer import StoreWriter

    directory = tempfile.mkdtemp(prefix="djtrace-bench-")
    # Registered first, so it runs after the writer's own atexit flush (LIFO).
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return StoreWriter(Path(directory) / "traces.sqlite3")
