"""The trace store and its writer: many processes at once, a full queue, exit, retention, and
what the browsing commands say about a damaged, foreign or newer store."""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from djtrace import Trace, aggregate
from djtrace.cli.inprocess import RequestSpec, run
from djtrace.cli.render import ms
from djtrace.exporters.store import STORE_SCHEMA, Filters, TraceStore
from djtrace.exporters.writer import StoreWriter

from tests.conftest import ROOT, run_djtrace

PAGES = ["/books/", "/books/fast/", "/api/books/", "/boom/", "/no-such-page/"]


@pytest.fixture(scope="module")
def real_traces() -> list[Trace]:
    """One real trace per page, from requests through sample_site's full stack."""
    return [run(RequestSpec("GET", page)) for page in PAGES]


def copies(traces: list[Trace], n: int, tag: str = "") -> list[Trace]:
    """`n` distinct traces (new ids, later starts) cycling through the real ones."""
    out = []
    for i in range(n):
        data = traces[i % len(traces)].to_dict()
        data["id"] = os.urandom(8).hex()
        data["started_at"] += i * 1000
        data["request"]["query"] = f"{tag}n={i}"
        out.append(Trace.from_dict(data))
    return out


def write_jsonl(path: Path, traces: list[Trace]) -> Path:
    path.write_text("".join(json.dumps(t.to_dict()) + "\n" for t in traces))
    return path


def stored_ids(store: Path) -> list[str]:
    with TraceStore.open(store) as opened:
        return [s.id for s in opened.summaries(limit=None)]


# --- the writer ---------------------------------------------------------------------------


def _child_writes(writer: StoreWriter, traces: list[Trace]) -> None:
    for trace in traces:
        writer(trace)
    # multiprocessing's forked child leaves through os._exit: its finalizers must flush


def test_forked_processes_write_at_once_and_lose_nothing(tmp_path, real_traces):
    store = tmp_path / "traces.sqlite3"
    writer = StoreWriter(store)
    mine = copies(real_traces, 10, "parent-")
    for trace in mine:
        writer(trace)  # the parent's writer thread is running when the children fork
    fork = multiprocessing.get_context("fork")
    batches = [copies(real_traces, 60, f"child{c}-") for c in range(4)]
    children = [fork.Process(target=_child_writes, args=(writer, b)) for b in batches]
    for child in children:
        child.start()
    for child in children:
        child.join(120)
        assert child.exitcode == 0
    assert writer.flush()
    expected = {t.id for t in mine} | {t.id for b in batches for t in b}
    ids = stored_ids(store)
    assert len(ids) == len(expected) == 250
    assert set(ids) == expected


def test_a_full_queue_drops_and_counts_and_never_waits(tmp_path, real_traces):
    store = tmp_path / "traces.sqlite3"
    TraceStore.open(store, create=True).close()
    blocker = sqlite3.connect(store, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer thread now waits for this lock
    writer = StoreWriter(store, queue_size=5)
    traces = copies(real_traces, 40)
    for trace in traces:
        writer(trace)  # returns at once: the store is locked and the queue is full
    assert writer.written == 0, "the sink returned only after the store was written"
    assert writer.dropped >= 40 - 6  # 5 queued, perhaps 1 taken by the blocked thread
    blocker.execute("COMMIT")
    blocker.close()
    assert writer.flush()
    with TraceStore.open(store) as opened:
        kept = opened.count()
        assert kept + opened.dropped() == 40
        assert opened.dropped() == writer.dropped
    assert kept == writer.written


_EXIT_SCRIPT = """
import json, os, sys
sys.path.insert(0, {root!r})
from djtrace.exporters.writer import StoreWriter
from djtrace import Trace
writer = StoreWriter({store!r})
data = json.loads(open({source!r}).read())
for i in range(500):
    data["id"] = os.urandom(8).hex()
    writer(Trace.from_dict(data))
sys.exit(0)  # what gunicorn and uvicorn workers do on SIGTERM: atexit drains the queue
"""


def test_everything_queued_is_written_when_the_process_exits(tmp_path, real_traces):
    store = tmp_path / "traces.sqlite3"
    source = tmp_path / "trace.json"
    source.write_text(json.dumps(real_traces[0].to_dict()))
    script = _EXIT_SCRIPT.format(root=str(ROOT), store=str(store), source=str(source))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert len(stored_ids(store)) == 500


def test_a_store_from_a_newer_djtrace_never_breaks_the_server(tmp_path, real_traces, capfd):
    store = tmp_path / "traces.sqlite3"
    TraceStore.open(store, create=True).close()
    with sqlite3.connect(store) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema'")
    writer = StoreWriter(store)
    writer(real_traces[0])  # no exception into the request
    assert writer.flush()
    assert writer.failed == 1 and writer.written == 0
    err = capfd.readouterr().err
    assert "djtrace: traces not stored:" in err and "newer djtrace (store schema 99" in err


# --- the store ------------------------------------------------------------------------------


def test_retention_keeps_the_newest(tmp_path, real_traces):
    traces = copies(real_traces, 25)
    with TraceStore.open(tmp_path / "s.sqlite3", create=True) as store:
        assert store.add(traces, max_traces=10) == 25
        kept = store.summaries(limit=None)
    assert len(kept) == 10
    assert {s.id for s in kept} == {t.id for t in sorted(traces, key=lambda t: t.started_at)[-10:]}


def test_store_max_env_caps_an_import(tmp_path, real_traces):
    source = write_jsonl(tmp_path / "t.jsonl", copies(real_traces, 12))
    store = tmp_path / "s.sqlite3"
    result = run_djtrace(
        "import", str(source), "--store", str(store), env={"DJTRACE_STORE_MAX": "5"}
    )
    assert result.returncode == 0, result.stderr
    assert len(stored_ids(store)) == 5


def test_store_is_wal_private_and_versioned(tmp_path, real_traces):
    path = tmp_path / "new" / "traces.sqlite3"
    with TraceStore.open(path, create=True) as store:
        store.add(real_traces[:1])
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)
    assert oct(path.parent.stat().st_mode & 0o777) == oct(0o700)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0] == str(
            STORE_SCHEMA
        )
        indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"traces_started_at", "traces_route", "traces_status", "traces_duration"} <= indexes


def test_filters_select_what_list_asks_for(tmp_path, real_traces):
    with TraceStore.open(tmp_path / "s.sqlite3", create=True) as store:
        store.add(real_traces)
        assert [s.path for s in store.summaries(Filters(status=(500, 599)))] == ["/boom/"]
        assert {s.path for s in store.summaries(Filters(path="/books/*"))} == {
            "/books/",
            "/books/fast/",
        }
        assert [s.path for s in store.summaries(Filters(path="api/books/"))] == ["/api/books/"]
        assert store.summaries(Filters(pid=os.getpid() + 1)) == []
        by_queries = store.summaries(sort="queries")
        assert by_queries[0].path == "/books/" and by_queries[0].queries == 21


# --- the commands, as a user runs them --------------------------------------------------------


@pytest.fixture
def filled(tmp_path, real_traces) -> Path:
    store = tmp_path / "traces.sqlite3"
    with TraceStore.open(store, create=True) as opened:
        opened.add(real_traces)
    return store


def test_list_filters_and_sorts(filled):
    result = run_djtrace("list", "--store", str(filled), "--sort", "duration", "--since", "1h")
    assert result.returncode == 0, result.stderr
    assert "5 traces in" in result.stdout
    result = run_djtrace("list", "--store", str(filled), "--status", "5xx", "--method", "get")
    assert result.returncode == 0, result.stderr
    assert "GET /boom/" in result.stdout and "/books/" not in result.stdout
    assert "1 trace in" in result.stdout
    result = run_djtrace("list", "--store", str(filled), "--path", "/books/*", "--limit", "1")
    assert "1 of 2 traces" in result.stdout
    result = run_djtrace("list", "--store", str(filled), "--slower-than", "100000")
    assert result.returncode == 0, result.stderr  # a query that matches nothing is no error
    assert result.stdout.startswith("no traces match") and result.stderr == ""


def test_list_rejects_bad_filters(filled):
    result = run_djtrace("list", "--store", str(filled), "--since", "yesterday-ish")
    assert result.returncode == 2
    assert result.stderr.startswith("error: --since 'yesterday-ish': use a duration like 30s")
    result = run_djtrace("list", "--store", str(filled), "--status", "oops")
    assert result.returncode == 2 and "error: --status 'oops'" in result.stderr


def test_show_latest_slowest_and_prefix(filled, real_traces):
    slowest = max(real_traces, key=lambda t: t.duration)
    result = run_djtrace("show", "slowest", "--store", str(filled))
    assert result.returncode == 0, result.stderr
    assert f"trace {slowest.id}" in result.stdout
    first = real_traces[2]
    result = run_djtrace("show", first.id[:8], "--store", str(filled))
    assert result.returncode == 0, result.stderr
    assert "GET /api/books/  →  200 OK" in result.stdout
    assert "where the time went" in result.stdout
    result = run_djtrace("show", "latest", "--store", str(filled), "--format", "json")
    assert json.loads(result.stdout)["id"] == real_traces[-1].id


def test_stats_per_route_percentiles_and_phases(filled):
    result = run_djtrace("stats", "--store", str(filled))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "5 requests · per route" in out
    for column in ("p50", "p95", "p99", "queries", "view"):
        assert column in out
    books = next(line for line in out.splitlines() if line.startswith("GET books/ "))
    assert " 21.0 " in books
    assert "GET (no route)" in out


def test_unknown_or_ambiguous_ids_are_clear(filled):
    result = run_djtrace("show", "abcdef0123", "--store", str(filled))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: no trace 'abcdef0123' in {filled}"
    result = run_djtrace("show", "not-an-id", "--store", str(filled))
    assert result.returncode == 2  # malformed input, not an id that happens to be missing
    assert "'not-an-id' is neither a file nor a trace id" in result.stderr
    result = run_djtrace("diff", "latest", "nope.json", "--store", str(filled))
    assert result.returncode == 2 and "error: cannot read nope.json" in result.stderr
    result = run_djtrace("show", "", "--store", str(filled))  # an empty $ID in a script
    assert result.returncode == 2
    assert result.stderr == "error: give a trace: an id (or a prefix), latest, slowest, or a file\n"


def test_missing_empty_and_foreign_stores(tmp_path):
    missing = tmp_path / "none.sqlite3"
    result = run_djtrace("list", "--store", str(missing))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: no trace store at {missing}")
    empty = tmp_path / "empty.sqlite3"
    empty.touch()
    result = run_djtrace("list", "--store", str(empty))
    assert result.returncode == 0 and "no traces in" in result.stdout
    garbage = tmp_path / "garbage.sqlite3"
    garbage.write_bytes(b"this is not SQLite at all " * 200)
    result = run_djtrace("list", "--store", str(garbage))
    assert result.returncode == 2
    assert "is not a djtrace trace store (file is not a database)" in result.stderr
    other = tmp_path / "other.sqlite3"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE users (id INTEGER)")
    result = run_djtrace("capture", "--store", str(other), "--", sys.executable, "-c", "pass")
    assert result.returncode == 2
    assert "is an SQLite database but not a djtrace trace store" in result.stderr


def test_a_store_from_a_newer_djtrace_is_refused_clearly(filled):
    with sqlite3.connect(filled) as db:
        db.execute("UPDATE meta SET value = '7' WHERE key = 'schema'")
    store = ["--store", str(filled)]
    for args in (
        ["list", *store],
        ["stats", *store],
        ["show", "latest", *store],
        ["capture", *store, "--", sys.executable, "-c", "pass"],
    ):
        result = run_djtrace(*args)
        assert result.returncode == 2, args
        assert "was written by a newer djtrace (store schema 7; this djtrace reads schema 1)" in (
            result.stderr
        )
        assert "Traceback" not in result.stderr


def test_a_truncated_store_still_gives_every_readable_trace(tmp_path, real_traces):
    store = tmp_path / "traces.sqlite3"
    traces = copies(real_traces, 200)
    with TraceStore.open(store, create=True) as opened:
        opened.add(traces)
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = store.stat().st_size
    with open(store, "r+b") as f:
        f.truncate(size * 6 // 10)

    result = run_djtrace("export", "--store", str(store))
    assert result.returncode == 1  # incomplete: some traces are gone
    assert "is damaged (database disk image is malformed)" in result.stderr
    saved = [json.loads(line) for line in result.stdout.splitlines()]
    assert 0 < len(saved) < 200
    known = {t.id: t for t in traces}
    for data in saved:  # each one whole, and one of ours
        assert Trace.from_dict(data).to_dict()["spans"] == known[data["id"]].to_dict()["spans"]

    result = run_djtrace("list", "--store", str(store), "--limit", "500")
    assert result.returncode == 1
    assert f"{len(saved)} traces could still be read" in result.stderr
    assert f"{len(saved)} traces in" in result.stdout
    result = run_djtrace("show", saved[0]["id"], "--store", str(store))
    assert result.returncode == 1  # shown, and the store is still damaged
    assert "where the time went" in result.stdout
    assert "could still be read" in result.stderr
    result = run_djtrace("capture", "--store", str(store), "--", sys.executable, "-c", "pass")
    assert result.returncode == 2 and "move it away" in result.stderr


def test_one_unreadable_row_spoils_only_itself(filled, real_traces):
    bad = real_traces[1].id
    with sqlite3.connect(filled) as db:
        db.execute('UPDATE traces SET data = \'{"schema": 1, "id"\' WHERE id = ?', (bad,))
    result = run_djtrace("export", "--store", str(filled))
    assert result.returncode == 1
    assert f"trace {bad} in the store is unreadable" in result.stderr
    assert len(result.stdout.splitlines()) == len(real_traces) - 1
    result = run_djtrace("show", bad, "--store", str(filled))
    assert result.returncode == 1 and "unreadable" in result.stderr


def test_export_import_round_trip_and_bad_lines(tmp_path, filled, real_traces):
    result = run_djtrace("export", "--store", str(filled), "-o", str(tmp_path / "all.jsonl"))
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "all.jsonl").read_text().splitlines()
    assert [json.loads(line)["id"] for line in lines] == [t.id for t in real_traces]
    newer = json.dumps({**json.loads(lines[0]), "schema": 9, "id": "f" * 16})
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(
        "\n".join([lines[0], "{not json", newer, lines[1], "", lines[2]]) + "\n" + lines[3][:200]
    )
    target = tmp_path / "imported.sqlite3"
    result = run_djtrace("import", str(mixed), "--store", str(target))
    assert result.returncode == 1
    err = result.stderr
    assert f"{mixed}:2: skipped: not valid JSON" in err
    assert f"{mixed}:3: skipped: trace schema 9 is not supported by this djtrace" in err
    assert f"{mixed}:7: skipped: not valid JSON (truncated?)" in err
    assert "imported 3 traces" in result.stdout and "skipped 3 bad lines" in result.stdout
    assert set(stored_ids(target)) == {t.id for t in real_traces[:3]}
    again = run_djtrace("import", str(tmp_path / "all.jsonl"), "--store", str(target))
    assert again.returncode == 0
    assert "imported 2 traces" in again.stdout and "(3 already there)" in again.stdout


def test_export_to_an_unknown_format_lists_the_known_ones(filled):
    result = run_djtrace("export", "--store", str(filled), "--to", "xml")
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown export format 'xml' (available: ")
    assert "jsonl" in result.stderr


# --- what a new user runs into ---------------------------------------------------------------


def test_files_that_are_not_traces_are_one_error_line(tmp_path, filled):
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(bytes(range(256)) * 40)
    message = f"error: {garbage} is not a djtrace trace file (binary data, not JSON)\n"
    for args in (["show", garbage], ["diff", garbage, "latest"], ["replay", garbage]):
        result = run_djtrace(*map(str, args), "--store", str(filled))
        assert result.returncode == 2, args
        assert result.stderr == message
    result = run_djtrace("show", str(tmp_path), "--store", str(filled))
    assert result.returncode == 2
    assert result.stderr == f"error: {tmp_path} is a directory, not a trace file or a trace id\n"


def _long(traces: list[Trace]) -> list[Trace]:
    out = []
    for i, trace in enumerate(traces):
        data = trace.to_dict()
        data["id"] = f"{i:02d}" + trace.id[2:]
        data["request"]["path"] = "/catalogue/" + "very-long-segment/" * 6 + f"{i}/"
        data["request"]["route"] = "catalogue/" + "<slug:segment>/" * 5
        out.append(Trace.from_dict(data))
    return out


def _rows(stdout: str) -> list[str]:
    return [line for line in stdout.splitlines() if line[:2].isalnum() and "traces in" not in line]


@pytest.mark.parametrize("columns", ["80", "60", "40"])
def test_list_shortens_text_but_never_cuts_a_number(tmp_path, real_traces, columns):
    traces = _long(real_traces)
    store = tmp_path / "traces.sqlite3"
    with TraceStore.open(store, create=True) as opened:
        opened.add(traces)
    result = run_djtrace("list", "--store", str(store), env={"COLUMNS": columns})
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0].split()
    assert header[:3] == ["id", "when", "request"] and "status" in header and "queries" in header
    rows = _rows(result.stdout)[1:]
    assert len(rows) == len(traces)
    by_id = {t.id[:10]: t for t in traces}
    for row in rows:
        trace = by_id[row.split()[0]]
        assert "…" in row  # the long path gave way
        assert f" {trace.request['status']} " in row
        assert f" {ms(trace.duration)} " in row
        assert row.rstrip().split()[-1] == str(len(trace.queries))  # route, worker dropped
        if columns == "80":
            assert len(row) <= 80
    assert "worker and route left out: widen the terminal" in result.stdout


def test_stats_picks_phase_columns_by_p95_and_names_them(filled):
    narrow = run_djtrace("stats", "--store", str(filled), env={"COLUMNS": "100"})
    assert narrow.returncode == 0, narrow.stderr
    assert run_djtrace("stats", "--store", str(filled), env={"COLUMNS": "100"}).stdout == (
        narrow.stdout
    )
    with TraceStore.open(filled) as opened:
        routes = aggregate.by_route(opened.phase_rows())
    biggest = {name: max(r.phase_p(name) for r in routes) for name in aggregate.phase_names(routes)}
    ranked = sorted((n for n in biggest if ms(biggest[n]) != ms(0)), key=lambda n: -biggest[n])
    heading = narrow.stdout.splitlines()[1].split()
    assert heading[:6] == ["route", "n", "p50", "p95", "p99", "queries"]
    shown = heading[6:]
    assert 0 < len(shown) < len(ranked)
    short = {"middleware (before)": "mw in", "templates": "tmpl", "error response": "error"}
    short |= {"middleware (after)": "mw out", "response": "resp", "URL resolve": "URL"}
    expected = " ".join(short.get(n, n) for n in ranked[: len(shown) + 1]).split()
    assert sorted(shown) == sorted(expected[: len(shown)])  # the largest p95s, always
    for line in narrow.stdout.splitlines()[3:8]:  # no number cut: every time ends in a unit
        assert all(cell in ("ms", "s", "—") or not cell.isalpha() for cell in line.split()[2:])
        assert not line.rstrip().endswith(("…", " m"))
    wide = run_djtrace("stats", "--store", str(filled), env={"COLUMNS": "250"}).stdout
    assert "unaccounted" in wide.splitlines()[1] and "gaps" not in wide
    assert "mw in: middleware before the view" in wide and "tmpl: templates" in wide
    assert "left out" not in wide


@pytest.mark.parametrize("by", ["view", "path"])
def test_stats_by_view_or_path_names_each_group_whole(filled, real_traces, by):
    """Phase columns give way before the grouping key: `--by view` showing
    `GET djtrace.sample_…` on every row would not say which view is which."""
    result = run_djtrace("stats", "--store", str(filled), "--by", by, env={"COLUMNS": "160"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert f"5 requests · per {by}" in lines[0]
    assert lines[1].split()[:2] == [by, "n"]
    for trace in real_traces:
        key = trace.request.get(by) or "(no view)"
        assert any(line.startswith(f"GET {key} ") for line in lines[3:]), (key, result.stdout)
    assert "…" not in result.stdout


def test_a_closed_pipe_ends_quietly(filled):
    for args in (["export"], ["list"], ["stats"], ["show", "latest"]):
        read, write = os.pipe()
        os.close(read)  # the reader is gone before the first line (`| head -0`)
        try:
            result = subprocess.run(
                [sys.executable, "-m", "djtrace.cli", *args, "--store", str(filled)],
                stdout=write,
                stderr=subprocess.PIPE,
                text=True,
                cwd=ROOT,
                env={**os.environ, "COLUMNS": "160"},
                timeout=120,
            )
        finally:
            os.close(write)
        assert result.returncode == 141, (args, result.stderr)  # as if killed by SIGPIPE
        assert result.stderr == "", args


def _corrupt_middle(store: Path) -> None:
    with sqlite3.connect(store) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = store.stat().st_size
    with open(store, "r+b") as f:
        f.seek(size // 2 // 4096 * 4096)
        f.write(b"\xa5" * 4096)  # one page of garbage in the middle


def test_every_command_notices_a_damaged_store(tmp_path, real_traces):
    store = tmp_path / "traces.sqlite3"
    with TraceStore.open(store, create=True) as opened:
        opened.add(copies(real_traces, 200))
    _corrupt_middle(store)
    for args in (
        ["list", "--limit", "3"],
        ["show", "slowest"],
        ["diff", "latest", "slowest"],
        ["stats"],
        ["export"],
    ):
        result = run_djtrace(*args, "--store", str(store))
        assert result.returncode == 1, (args, result.stderr)
        assert result.stderr.count(f"warning: the trace store {store} is damaged") == 1, args
        assert "traces could still be read" in result.stderr
        assert result.stdout.strip(), args  # and still shows what it can read
    result = run_djtrace("capture", "--store", str(store), "--", sys.executable, "-c", "pass")
    assert result.returncode == 2 and "move it away" in result.stderr  # never written to

    with open(store, "r+b") as f:
        f.truncate(60_000)
    result = run_djtrace("list", "--store", str(store))
    assert result.returncode == 1
    assert "no trace could be read from it" in result.stderr
    assert "saved.jsonl" not in result.stderr


def test_exit_codes_bad_input_2_nothing_found_1_empty_list_0(tmp_path, filled):
    store = ["--store", str(filled)]
    cases = [
        (["list", "--status", "oops", *store], 2),
        (["list", "--sort", "sideways", *store], 2),  # (typer's usage error)
        (["list", "--store", str(tmp_path / "missing.sqlite3")], 2),
        (["show", "latest", "--store", str(ROOT / "README.md")], 2),
        (["show", str(tmp_path / "missing.json"), *store], 2),
        (["show", "zz-top", *store], 2),
        (["import", str(tmp_path / "missing.jsonl"), *store], 2),
        (["show", "abcdef0123", *store], 1),
        (["show", "slowest", "--path", "/nowhere/*", *store], 1),
        (["diff", "latest", "0123456789", *store], 1),
        (["replay", "abcdef0123", *store], 1),
        (["list", "--path", "/nowhere/*", *store], 0),
        (["stats", "--path", "/nowhere/*", *store], 0),
    ]
    for args, code in cases:
        result = run_djtrace(*args)
        assert result.returncode == code, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr
        if code and "--sort" not in args:
            assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, args
        elif not code:
            assert result.stdout.startswith("no traces match these filters in"), args


def test_import_says_what_the_file_is(tmp_path, real_traces):
    target = tmp_path / "store.sqlite3"
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(os.urandom(3000))
    result = run_djtrace("import", str(garbage), "--store", str(target))
    assert result.returncode == 2
    assert result.stderr == (
        f"error: {garbage} is not a JSON Lines file of djtrace traces; nothing imported\n"
    )
    assert not target.exists()

    other = tmp_path / "other.jsonl"
    other.write_text('{"a": 1}\n')
    jaeger = tmp_path / "jaeger.json"
    run_djtrace("request", "/books/fast/", "--format", "json")  # (any trace will do)
    from djtrace.exporters.jaeger_json import to_jaeger_json

    jaeger.write_text(json.dumps(to_jaeger_json(real_traces[:1])))
    for file in (other, jaeger):
        result = run_djtrace("import", str(file), "--store", str(target))
        assert result.returncode == 2
        assert result.stderr == (
            f"error: {file}: not a djtrace trace (no schema field); nothing imported\n"
        )
        assert "upgrade" not in result.stderr
    assert not target.exists()

    pretty = tmp_path / "books.json"
    result = run_djtrace("request", "/books/fast/", "--format", "json")
    pretty.write_text(result.stdout)
    assert len(result.stdout.splitlines()) > 20  # one trace document over many lines
    result = run_djtrace("import", str(pretty), "--store", str(target))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"imported 1 trace into {target}\n"

    array = tmp_path / "array.json"
    array.write_text(json.dumps([t.to_dict() for t in real_traces[:2]], indent=1))
    result = run_djtrace("import", str(array), "--store", str(target))
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"imported 2 traces into {target}\n"

    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps(real_traces[2].to_dict()) + "\n{oops\n")
    result = run_djtrace("import", str(mixed), "--store", str(target))
    assert result.returncode == 1
    assert result.stdout == f"imported 1 trace into {target}; skipped 1 bad line\n"
    assert set(stored_ids(target)) == {t.id for t in real_traces[:3]} | {
        json.loads(pretty.read_text())["id"]
    }


def test_exported_files_are_private(tmp_path, filled):
    for fmt in ("jsonl", "jaeger-json", "chrome"):
        out = tmp_path / f"out.{fmt}"
        result = run_djtrace("export", "--to", fmt, "-o", str(out), "--store", str(filled))
        assert result.returncode == 0, result.stderr
        assert result.stderr == f"exported 5 traces to {out}\n"
        assert oct(out.stat().st_mode & 0o777) == oct(0o600), fmt
    one = run_djtrace("export", "--limit", "1", "-o", str(tmp_path / "one.jsonl"), "--store",
                      str(filled))  # fmt: skip
    assert one.stderr == f"exported 1 trace to {tmp_path / 'one.jsonl'}\n"
