"""Generated bad input never gets a traceback or a hang from the store commands.

Hypothesis drives `import`, `list`, `show`, `stats`, `diff`, `export` and the filters with
malformed traces (real traces with a field replaced, removed or nested away), damaged
stores (cut, overwritten, a valid header on garbage, columns of the wrong type) and odd
arguments. Every call runs the real command line in-process (the `djtrace` entry point,
output captured) under a time limit, and must end with exit 0, 1 or 2, every stderr line a
one-line `error:` or `warning:` message, and bad input (exit 2) said in exactly one line.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import typer
from djtrace.cli import app as cli_app
from djtrace.cli import store_access
from djtrace.cli.inprocess import RequestSpec, run
from djtrace.exporters.store import COLUMNS, TraceStore
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir

from tests.conftest import run_djtrace

# Hypothesis keeps caches in .hypothesis/ of the working directory: not in the work tree.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "djtrace-hypothesis")

#: A hang guard per command, not a performance limit.
PATIENCE_S = 30
PAGES = ["/books/", "/books/1/", "/api/books/", "/boom/", "/no-such-page/"]
FUZZ = settings(
    # Modest, so the file stays fast; DJTRACE_FUZZ_EXAMPLES=1000 for a long search.
    max_examples=int(os.environ.get("DJTRACE_FUZZ_EXAMPLES", "30")),
    deadline=None,
    database=None,  # failing examples are not saved: each run searches afresh
    # In CI the same examples every run: a gate must not turn red on a new random draw.
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# Typer builds its click command from the annotations on every call (most of a call's
# time); `main` calls `app(...)`, so the command built once here stands in for it.
_COMMAND = typer.main.get_command(cli_app.app)


class Hang(Exception):
    pass


def _hang(signum: int, frame: Any) -> None:
    raise Hang(f"no answer within {PATIENCE_S} s")


def djtrace(*args: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `djtrace ARGS`, run in this process."""
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    previous = signal.signal(signal.SIGALRM, _hang)
    signal.setitimer(signal.ITIMER_REAL, PATIENCE_S)
    typer_app = cli_app.app
    store_access._warned.clear()  # one warning per store and process: each call is a process
    try:
        sys.argv = ["djtrace", *args]
        cli_app.app = _COMMAND  # type: ignore[assignment]
        with redirect_stdout(out), redirect_stderr(err):
            try:
                cli_app.main()
                code: Any = 0
            except SystemExit as exc:
                code = exc.code
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        sys.argv = argv
        cli_app.app = typer_app
    if code is None:
        code = 0
    return code, out.getvalue(), err.getvalue()


def check(*args: str) -> tuple[int, str, str]:
    """Run `djtrace ARGS` and require a clean ending: 0, 1 or 2, one line per message."""
    code, out, err = djtrace(*args)
    shown = f"djtrace {' '.join(a[:80] for a in args)}\n--- stderr:\n{err[-2000:]}"
    assert code in (0, 1, 2), shown
    assert "Traceback" not in err, shown
    lines = err.splitlines()
    for line in lines:
        assert line.startswith(("error: ", "warning: ")), shown
    assert sum(line.startswith("error: ") for line in lines) <= 1, shown
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("error: "), shown
    if code == 1:
        assert lines, shown  # a failure always says why
    return code, out, err


# --- material --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real() -> list[dict[str, Any]]:
    """Real traces (queries, an N+1, templates, an error, a 404) as documents."""
    return [run(RequestSpec("GET", page)).to_dict() for page in PAGES]


@pytest.fixture(scope="module")
def good_store(real: list[dict[str, Any]]) -> Iterator[Path]:
    """A store of 25 real traces, checkpointed into its main file (no WAL beside it)."""
    from djtrace.model import Trace

    directory = Path(tempfile.mkdtemp(prefix="djtrace-fuzz-"))
    path = directory / "traces.sqlite3"
    traces = []
    for i in range(25):
        data = json.loads(json.dumps(real[i % len(real)]))
        data["id"] = f"{i + 1:016x}"
        data["started_at"] += i * 1_000_000
        traces.append(Trace.from_dict(data))
    with TraceStore.open(path, create=True) as opened:
        opened.add(traces)
        opened.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        opened.conn.execute("PRAGMA journal_mode=DELETE")
    yield path
    shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def scratch() -> Iterator[Path]:
    directory = tempfile.mkdtemp(prefix="djtrace-fuzz-")
    try:
        yield Path(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def every_command(store: Path, ids: tuple[str, ...] = ()) -> None:
    at = ("--store", str(store))
    check("list", "--limit", "1000", *at)
    check("stats", *at)
    check("show", "latest", "--hide-under", "0", *at)
    check("show", "slowest", "--format", "json", *at)
    check("diff", "latest", "slowest", *at)
    for fmt in ("jsonl", "chrome", "jaeger-json"):
        check("export", "--to", fmt, "-o", "-", *at)
    for trace_id in ids:
        check("show", trace_id, "--hide-under", "0", *at)


# --- malformed traces ------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30, -1, 0])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["\ud800", "x\udfffy", "", "[redacted]", "%s", "a:1"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def mutate(data: st.DataObject, document: dict[str, Any]) -> dict[str, Any]:
    """`document` with one value somewhere in it replaced, removed or added."""
    doc = json.loads(json.dumps(document))
    node: Any = doc
    for _ in range(data.draw(st.integers(0, 4), label="depth")):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        children = [k for k in keys if isinstance(node[k], dict | list) and node[k]]
        if not children:
            break
        node = node[data.draw(st.sampled_from(children), label="into")]
    keys = list(node) if isinstance(node, dict) else list(range(len(node)))
    op = data.draw(st.sampled_from(["replace", "remove", "add"]) if keys else st.just("add"))
    if op == "add" and isinstance(node, dict):
        node[data.draw(st.text(max_size=8), label="new key")] = data.draw(json_values)
    elif op == "add":
        node.append(data.draw(json_values, label="new item"))
    elif op == "remove":
        del node[data.draw(st.sampled_from(keys), label="removed")]
    else:
        node[data.draw(st.sampled_from(keys), label="replaced")] = data.draw(json_values)
    return doc


@FUZZ
@given(data=st.data())
def test_import_of_malformed_traces_then_every_command(real, data):
    documents = [mutate(data, data.draw(st.sampled_from(real))) for _ in range(2)]
    lines = [json.dumps(d) for d in documents]
    lines.append(json.dumps(real[0]))  # one good trace, so there is a store to read
    lines.insert(
        data.draw(st.integers(0, len(lines))),
        data.draw(st.text(max_size=40) | st.just("[" * 1000) | st.just('{"schema": 1}')),
    )
    text = "\n".join(lines) + "\n"
    if data.draw(st.booleans(), label="one JSON array instead of lines"):
        text = json.dumps([*documents, real[0]], indent=data.draw(st.sampled_from([None, 2])))
    with scratch() as tmp:
        source = tmp / "traces.jsonl"
        source.write_text(text, encoding="utf-8", errors="surrogatepass")
        store = tmp / "store.sqlite3"
        check("import", str(source), "--store", str(store))
        every_command(store, (real[0]["id"],))
        check("show", str(source))  # the file itself, as `show FILE` reads it


def test_the_issues_malformed_traces_are_skipped_with_a_reason(real, tmp_path):
    good = real[0]

    def variant(change: Any) -> str:
        doc = json.loads(json.dumps(good))
        doc["id"] = os.urandom(8).hex()
        change(doc)
        return json.dumps(doc)

    def chain(doc: dict[str, Any]) -> None:
        doc["spans"] = [doc["spans"][0]] + [
            {"id": i, "parent": i - 1, "phase": "view", "name": "v", "start": i, "duration": 1}
            for i in range(2, 5002)
        ]

    def sql(doc: dict[str, Any], value: Any) -> None:
        next(s for s in doc["spans"] if s["phase"] == "db.query")["attrs"]["sql"] = value

    lines = {
        "a timestamp over 2**63": variant(lambda d: d.update(started_at=2**63)),
        "Infinity": variant(lambda d: d.update(started_at=float("inf"))),
        "1e400": json.dumps(good).replace(f"{good['started_at']}", "1e400"),
        "1,000 nested brackets": "[" * 1000 + "]" * 1000,
        "a parent that is a list": variant(lambda d: d["spans"][1].update(parent=[1])),
        "a lone surrogate": variant(lambda d: d["request"].update(method="\ud800")),
        "an error that is a string": variant(lambda d: d["spans"][1].update(error="boom")),
        "headers that are a number": variant(lambda d: d["request"].update(headers=5)),
        "a query that is a number": variant(lambda d: d["request"].update(query=5)),
        "a finding without a message": variant(
            lambda d: d["findings"].append({"kind": "n+1", "count": 3, "duration": 1})
        ),
        "sql that is a number": variant(lambda d: sql(d, 5)),
        "a 5,000-deep span chain": variant(chain),
        "a parent after its child (a cycle)": variant(lambda d: d["spans"][1].update(parent=3)),
    }
    source = tmp_path / "bad.jsonl"
    source.write_text("\n".join([*lines.values(), json.dumps(good)]) + "\n", errors="surrogatepass")
    store = tmp_path / "store.sqlite3"
    code, out, err = check("import", str(source), "--store", str(store))
    assert code == 1  # imported what it could, and says some lines were bad
    assert out.strip() == f"imported 1 trace into {store}; skipped {len(lines)} bad lines"
    warnings = err.splitlines()
    assert len(warnings) == len(lines)
    for number, (case, warning) in enumerate(zip(lines, warnings, strict=True), 1):
        assert warning.startswith(f"warning: {source}:{number}: skipped: "), (case, warning)
    every_command(store, (good["id"],))


# --- damaged stores --------------------------------------------------------------------------

sql_values = (
    st.none()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.binary(max_size=30)
    | st.sampled_from(["{}", "[]", '{"db.query": "x"}', '{"schema": 1}', "null", "\xff"])
)


@st.composite
def damage(draw: st.DrawFn, size: int) -> tuple[str, Any]:
    kind = draw(st.sampled_from(["cut", "overwrite", "header+garbage", "column", "meta"]))
    if kind == "cut":
        return kind, draw(st.integers(0, size - 1) | st.sampled_from([50, 100, 4096, 8192]))
    if kind == "overwrite":
        return kind, (draw(st.integers(0, size - 1)), draw(st.binary(min_size=1, max_size=5000)))
    if kind == "header+garbage":
        return kind, draw(st.binary(min_size=0, max_size=20_000))
    if kind == "meta":
        return kind, (draw(st.sampled_from(["schema", "dropped"])), draw(sql_values))
    column = draw(st.sampled_from([*COLUMNS, "seq"]))
    return kind, (column, draw(st.integers(1, 25)), draw(sql_values))


def damaged_copy(good: Path, tmp: Path, how: tuple[str, Any]) -> Path:
    path = tmp / "traces.sqlite3"
    shutil.copyfile(good, path)
    kind, arg = how
    if kind == "cut":
        with open(path, "r+b") as f:
            f.truncate(arg)
    elif kind == "overwrite":
        offset, garbage = arg
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(garbage)
    elif kind == "header+garbage":
        path.write_bytes(good.read_bytes()[:100] + arg)
    elif kind == "meta":
        key, value = arg
        with closing(sqlite3.connect(path)) as db, db:
            try:
                db.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
            except sqlite3.IntegrityError:
                pass
    else:
        column, seq, value = arg
        with closing(sqlite3.connect(path)) as db, db:
            try:
                db.execute(f"UPDATE traces SET {column} = ? WHERE seq = ?", (value, seq))
            except sqlite3.IntegrityError:  # NOT NULL, UNIQUE: the file cannot hold it
                pass
    return path


@FUZZ
@given(data=st.data())
def test_damaged_stores_answer_every_command(good_store, data):
    how = data.draw(damage(good_store.stat().st_size), label="damage")
    with scratch() as tmp:
        store = damaged_copy(good_store, tmp, how)
        every_command(store, (f"{1:016x}", f"{13:016x}"))


# --- arguments -------------------------------------------------------------------------------

odd_text = (
    st.text(max_size=30)
    | st.from_regex(r"\A-?[0-9]{1,25}(\.[0-9]+)?[smhdw]?\Z")
    | st.from_regex(r"\A[0-9]{1,5}-[0-9]{0,25}\Z")
    | st.sampled_from(
        ["99999999999d", "0001-01-01", "9999-12-31T23:59:59", "1e400s", "5xx", "0xx", "nan"]
    )
)
filters = st.fixed_dictionaries(
    {},
    optional={
        "--since": odd_text,
        "--status": odd_text,
        "--path": odd_text,
        "--method": odd_text,
        "--pid": st.integers(-(2**70), 2**70).map(str),
        "--slower-than": st.floats(min_value=0).map(repr) | st.sampled_from(["inf", "1e400", "0"]),
        "--limit": st.integers(1, 2**70).map(str),
        "--hide-under": st.floats(min_value=0).map(repr) | st.sampled_from(["inf", "1e400"]),
    },
)
#: The options each command takes, of those above.
TAKES = {
    "list": {"--since", "--status", "--path", "--method", "--pid", "--slower-than", "--limit"},
    "stats": {"--since", "--status", "--path", "--method", "--pid", "--slower-than"},
    "export": {"--since", "--status", "--path", "--method", "--pid", "--slower-than", "--limit"},
    "show": {"--path", "--hide-under"},
}


def _options(chosen: dict[str, str]) -> list[str]:
    # "--since=-1d": a value that starts with "-" is still this option's value.
    return [f"{name}={value}" for name, value in chosen.items() if "\x00" not in value]


@FUZZ
@given(chosen=filters, command=st.sampled_from(["list", "stats", "export", "show"]))
def test_filters_with_odd_values_answer_in_one_line(good_store, chosen, command):
    chosen = {name: value for name, value in chosen.items() if name in TAKES[command]}
    args = ["slowest"] if command == "show" else []
    check(command, *args, *_options(chosen), "--store", str(good_store))


@FUZZ
@given(
    ref=st.text(max_size=300).filter(lambda r: "\x00" not in r and not r.startswith("-"))
    | st.from_regex(r"\A[0-9a-fA-F]{0,300}\Z")
    | st.sampled_from(["~0", "~nobody/t.json", ".", "/", "x.json", " ", "latest "]),
    command=st.sampled_from(["show", "diff", "replay"]),
)
def test_any_id_answers_in_one_line(good_store, ref, command):
    refs = [ref, "latest"] if command == "diff" else [ref]
    check(command, *refs, "--store", str(good_store))


@FUZZ
@given(
    target=st.text(max_size=40)
    | st.sampled_from(["http://[::1", "http://[::1]:99999", "http://127.0.0.1:x", "ftp://::1"])
    | st.from_regex(r"\Ahttps?://\[?[0-9a-f:.]{0,20}\]?(:[0-9]{0,7})?\Z")
)
def test_replay_targets_answer_in_one_line(good_store, target):
    if "\x00" in target:
        return
    # An id with no trace: the target is judged first, then the id says "no trace".
    code, _, _ = check("replay", "abcdef", f"--target={target}", "--store", str(good_store))
    assert code in (1, 2)


@FUZZ
@given(value=st.text(max_size=12).filter(lambda v: "\x00" not in v))
def test_store_max_that_is_not_a_number_is_refused(real, value):
    with scratch() as tmp:
        source = tmp / "t.jsonl"
        source.write_text(json.dumps(real[0]) + "\n")
        previous = os.environ.get("DJTRACE_STORE_MAX")
        os.environ["DJTRACE_STORE_MAX"] = value
        try:
            code, _, err = check("import", str(source), "--store", str(tmp / "s.sqlite3"))
        finally:
            if previous is None:
                del os.environ["DJTRACE_STORE_MAX"]
            else:
                os.environ["DJTRACE_STORE_MAX"] = previous
    try:
        wanted = 1 <= int(value.strip().replace("_", "")) < 2**63
    except ValueError:
        wanted = False
    if wanted or not value.strip():
        assert code == 0, err
    else:
        assert code == 2 and "DJTRACE_STORE_MAX" in err


# --- the issue's own cases, with what the user reads --------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["list", "--since", "99999999999d"], 0, None),  # since long before the epoch: all
        (["list", "--since", "0001-01-01"], 0, None),
        (["list", "--since", "9999-12-31"], 0, "no traces match"),
        (["list", "--status", "99999999999999999999"], 2, "status codes run from 100 to 599"),
        (["list", "--status", "500-400"], 2, "from low to high"),
        (["list", "--pid", str(2**64)], 2, "a process id is a whole number"),
        (["stats", "--slower-than", "inf"], 0, "no traces match"),
        (["show", "a" * 300], 2, "ids have at most 32 hex digits"),
        (["show", "x" * 300], 2, "is neither a file nor a trace id"),
        (["replay", "abcdef", "--target", "http://[::1"], 2, "not a URL (Invalid IPv6 URL)"),
        (["replay", "abcdef", "--target", "http://127.0.0.1:99999"], 2, "Port out of range"),
        (["show", "~0"], 2, "is neither a file nor a trace id"),  # ~user: no such user
    ],
)
def test_the_issues_filters_and_ids_answer_in_one_line(good_store, args, code, says):
    got, out, err = check(*args, "--store", str(good_store))
    assert got == code, err
    assert says is None or says in out + err
    if args[:2] == ["list", "--since"] and says is None:
        assert "25 traces in" in out


@pytest.mark.parametrize(
    "damage_it",
    [
        lambda data: data[:4096],
        lambda data: data[:50],
        lambda data: data[:100] + os.urandom(20_000),
    ],
    ids=["cut at 4096 bytes", "cut at 50 bytes", "a valid header, then random bytes"],
)
def test_a_store_with_nothing_readable_says_so_instead_of_hanging(good_store, tmp_path, damage_it):
    store = tmp_path / "traces.sqlite3"
    store.write_bytes(damage_it(good_store.read_bytes()))
    for args in (["list"], ["show", "latest"], ["stats"], ["export"], ["diff", "latest", "1"]):
        code, _, err = check(*args, "--store", str(store))
        assert code == 1, (args, err)
        assert "is damaged" in err and "no trace could be read from it" in err, args


def test_import_into_a_capped_store_says_how_many_it_kept(real, tmp_path, monkeypatch):
    lines = []
    for i in range(12):
        data = json.loads(json.dumps(real[i % len(real)]))
        data["id"] = f"{i + 100:016x}"
        data["started_at"] += i
        lines.append(json.dumps(data))
    source = tmp_path / "t.jsonl"
    source.write_text("\n".join(lines) + "\n")
    store = tmp_path / "s.sqlite3"
    monkeypatch.setenv("DJTRACE_STORE_MAX", "5")
    code, out, _ = check("import", str(source), "--store", str(store))
    assert code == 0
    assert (
        out
        == f"imported 5 of 12 new traces into {store}: it keeps the newest 5 ($DJTRACE_STORE_MAX)\n"
    )
    monkeypatch.setenv("DJTRACE_STORE_MAX", "abc")
    code, _, err = check("import", str(source), "--store", str(store))
    assert code == 2
    assert err.startswith(
        "error: DJTRACE_STORE_MAX='abc': expected how many traces the store keeps"
    )
    result = run_djtrace(  # capture refuses it before the server starts
        "capture", "--store", str(tmp_path / "c.sqlite3"), "--", sys.executable, "-c", "pass",
        env={"DJTRACE_STORE_MAX": "abc"},
    )  # fmt: skip
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "DJTRACE_STORE_MAX='abc'" in result.stderr


ODD_VALUES = [None, -1, 2**63, 1.5, "x:y", [1, "a"], {"a": 1}]


def _wrong_typed(real: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(what, document) for each kind of field in the real traces (each top-level, request
    and where field; each span field and attribute per phase; each finding field per kind)
    set to each odd value in turn."""
    done: set[tuple[Any, ...]] = set()
    for document in real:
        places: list[tuple[tuple[Any, ...], list[Any]]] = [((k,), [k]) for k in document]
        for section in ("request", "where"):
            places += [((section, k), [section, k]) for k in document[section]]
        for i, span in enumerate(document["spans"]):
            phase = span["phase"]
            places += [((phase, k), ["spans", i, k]) for k in span if k != "attrs"]
            places += [((phase, "attrs", k), ["spans", i, "attrs", k]) for k in span["attrs"]]
        for i, finding in enumerate(document["findings"]):
            places += [(("finding", finding["kind"], k), ["findings", i, k]) for k in finding]
        for kind, path in places:
            if kind in done:
                continue
            done.add(kind)
            for value in ODD_VALUES:
                doc = json.loads(json.dumps(document))
                node = doc
                for step in path[:-1]:
                    node = node[step]
                node[path[-1]] = value
                yield f"{'.'.join(map(str, kind))} = {value!r}", doc


def test_every_field_of_a_real_trace_with_every_wrong_type(real, tmp_path):
    """Each kind of field of real traces set to each odd value: refused on import, or shown
    by every command (`show` of that very trace, and the store as a whole)."""
    lines, cases = [], {}
    for n, (what, doc) in enumerate(_wrong_typed(real), 1):
        if isinstance(doc.get("id"), str):
            doc["id"] = f"{n:x}"
        lines.append(json.dumps(doc))
        cases[str(doc.get("id"))] = what
    source = tmp_path / "odd.jsonl"
    source.write_text("\n".join(lines) + "\n")
    store = tmp_path / "store.sqlite3"
    check("import", str(source), "--store", str(store))
    with TraceStore.open(store) as opened:
        kept = [s.id for s in opened.summaries(limit=None)]
    assert 0 < len(kept) < len(lines)  # harmless ones kept (an unknown value), others refused
    for trace_id in kept:
        code, _, err = check("show", trace_id, "--hide-under", "0", "--store", str(store))
        assert code == 0, (cases.get(trace_id), err)
    every_command(store)


def test_the_deepest_trace_a_store_takes_is_shown_by_every_command(real, tmp_path):
    from djtrace.validate import MAX_DEPTH

    doc = json.loads(json.dumps(real[0]))
    doc["spans"] = [doc["spans"][0]] + [
        {"id": i, "parent": i - 1, "phase": "template", "name": f"t{i}.html", "start": i,
         "duration": 10**7 - i, "attrs": {}}
        for i in range(2, MAX_DEPTH + 1)
    ]  # fmt: skip
    doc["findings"] = []
    source = tmp_path / "deep.jsonl"
    source.write_text(json.dumps(doc) + "\n")
    store = tmp_path / "store.sqlite3"
    assert check("import", str(source), "--store", str(store))[0] == 0
    every_command(store, (doc["id"],))
    _, out, _ = check("show", doc["id"], "--hide-under", "0", "--store", str(store))
    assert f"t{MAX_DEPTH}.html" in out
