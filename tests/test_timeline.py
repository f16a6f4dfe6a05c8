"""`djtrace timeline`: lanes per worker thread, bars by phase, waiting before Django, zoom,
and the Perfetto file of the same window."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from djtrace import trace
from djtrace.cli.timeline import render_timeline
from djtrace.exporters.store import TraceStore
from djtrace.lab import timeline
from djtrace.lab.tag import HEADER, format_tag
from djtrace.model import Trace

from tests.capture_support import capture, free_port, gunicorn_args, wait_for_traces
from tests.conftest import run_djtrace
from tests.helpers import rendered

MS = 1_000_000


def _tagged_requests(client, paths_and_lags: list[tuple[str, int]], run: str = "t1") -> list[Trace]:
    """Real requests through sample_site, each tagged as if sent `lag` ns before it ran."""
    with trace() as session:
        for seq, (path, lag) in enumerate(paths_and_lags):
            tag = format_tag(run, 1, seq, time.time_ns() - lag)
            client.get(path, HTTP_X_DJTRACE_LOAD=tag)
    return session.traces


def test_a_bar_runs_from_arrival_to_close_with_waiting_first_then_the_phases(client) -> None:
    (books,) = _tagged_requests(client, [("/books/", 40 * MS)])
    bar = timeline.bar_of(books)

    assert bar.segments[0].phase == "waiting"
    assert bar.segments[0].start == bar.arrival
    assert bar.waited >= 40 * MS
    # The segments tile the bar: no gap, no overlap, from arrival to close.
    for before, after in zip(bar.segments, bar.segments[1:], strict=False):
        assert before.end == after.start
    assert bar.segments[-1].end == bar.end == books.start_ns + books.duration
    phases = {s.phase for s in bar.segments}
    assert {"middleware", "view", "sql", "template"} <= phases
    sql = sum(s.end - s.start for s in bar.segments if s.phase == "sql")
    queries = sum(s.duration for s in books.spans if s.phase == "db.query")
    assert sql >= queries  # queries' time, plus connection open and the like


def test_an_untagged_request_starts_when_django_did(client) -> None:
    with trace() as session:
        client.get("/books/fast/")
    bar = timeline.bar_of(session.traces[0])
    assert bar.arrival == bar.start
    assert bar.segments[0].phase != "waiting"


def test_a_request_that_arrived_while_its_thread_was_busy_goes_on_a_second_row(client) -> None:
    # Three requests on this one thread; the third says it was sent while the second ran.
    first, second, third = _tagged_requests(
        client, [("/books/fast/", 0), ("/lab/io/?ms=20", 0), ("/books/fast/", 0)]
    )
    third.request["load"]["sent_ns"] = second.start_ns + 10 * MS
    built = timeline.build([first, second, third])

    (lane,) = built.lanes
    assert len(lane.rows) == 2
    assert lane.rows[1] == [next(b for b in lane.bars if b.trace_id == third.id)]
    text = rendered(render_timeline(built, width=100, letters=True), width=100)
    row_lines = [line for line in text.splitlines() if "w" in line[17:85].lower()]
    assert row_lines, text  # the waiting request's row shows its wait
    assert "waiting before Django:" in text
    assert "w waiting before Django" in text  # the legend names the letter
    # Back to back on the first row, the second request is in capitals: two bars, not one.
    first_row = next(line for line in text.splitlines() if line.startswith(str(lane.pid)))
    drawn = first_row[17:85].strip()
    assert any(c.islower() for c in drawn) and any(c.isupper() for c in drawn), first_row


def _store_with(tmp_path: Path, traces: list[Trace]) -> Path:
    store = tmp_path / "traces.sqlite3"
    with TraceStore.open(store, create=True) as opened:
        opened.add(traces)
    return store


def test_zooming_into_the_window_keeps_only_the_requests_in_it(client, tmp_path) -> None:
    traces = []
    for _ in range(6):
        traces += _tagged_requests(client, [("/lab/io/?ms=20", 0)], run="z1")
    store = _store_with(tmp_path, traces)

    whole = run_djtrace("timeline", "--store", str(store), "--run", "z1", "--width", "100")
    assert whole.returncode == 0, whole.stderr
    assert "6 requests" in whole.stdout
    first_two = run_djtrace(
        "timeline", "--store", str(store), "--run", "z1", "--from", "0", "--to", "30ms"
    )
    assert first_two.returncode == 0, first_two.stderr
    shown = int(re.search(r"· (\d+) requests?\b", first_two.stdout).group(1))  # 1 request
    assert 1 <= shown <= 2, first_two.stdout
    assert "30 ms from" in first_two.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2s", "--to", "1s"], "--to must be after --from"),
        (["--from", "soon"], "--from 'soon'"),
        (["--since", "yesterday-ish"], "--since 'yesterday-ish'"),
        (["--run", "no spaces"], "a run id is letters"),
        (["--since", "1m", "--until", "2m"], "is not after --since"),
    ],
)
def test_bad_window_options_are_one_line_errors(client, tmp_path, args, message) -> None:
    store = _store_with(tmp_path, _tagged_requests(client, [("/books/fast/", 0)]))
    result = run_djtrace("timeline", "--store", str(store), *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_without_a_store_the_timeline_says_how_to_get_one(tmp_path) -> None:
    result = run_djtrace("timeline", "--store", str(tmp_path / "none.sqlite3"))
    assert result.returncode == 2
    assert "no trace store" in result.stderr


def test_a_stage_of_a_run_nobody_tagged_is_explained(client, tmp_path) -> None:
    with trace() as session:
        client.get("/books/fast/")
    store = _store_with(tmp_path, session.traces)
    result = run_djtrace("timeline", "--store", str(store), "--stage", "2")
    assert result.returncode == 2
    assert "no trace in the store carries a load tag" in result.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [(["--run", "nope"], "run nope"), (["--run", "z2", "--stage", "9"], "stage 9")],
)
def test_a_run_or_stage_with_no_requests_is_an_error_naming_it(
    client, tmp_path, args, said
) -> None:
    store = _store_with(tmp_path, _tagged_requests(client, [("/books/fast/", 0)], run="z2"))
    result = run_djtrace("timeline", "--store", str(store), *args)
    assert result.returncode == 1, result.stdout
    assert "no requests of" in result.stderr and said in result.stderr
    assert "djtrace load --runs" in result.stderr and "Traceback" not in result.stderr


# --- a real server: gunicorn, 2 workers × 2 threads, on the I/O-waiting view -----------------


def _load(base: str, run: str, users: int, each: int, path: str) -> None:
    """`users` clients at once, each sending `each` tagged requests one after another."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    seqs = iter(range(users * each))
    lock = threading.Lock()

    def user() -> None:
        for _ in range(each):
            with lock:
                seq = next(seqs)
            tag = format_tag(run, 1, seq, time.time_ns())
            request = urllib.request.Request(base + path, headers={HEADER: tag})
            with opener.open(request, timeout=60) as response:
                response.read()

    threads = [threading.Thread(target=user) for _ in range(users)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)


def _lane_lines(text: str) -> dict[str, str]:
    """Lane label → its first row, from the plain-text timeline."""
    lanes = {}
    for line in text.splitlines():
        label = line[:16].strip()
        if "/" in label and label.split("/")[0].isdigit():
            lanes[label] = line
    return lanes


def test_a_gunicorn_2x2_stage_on_the_io_view_shows_four_busy_lanes_and_waiting(
    tmp_path: Path,
) -> None:
    port = free_port()
    users, each = 8, 6
    with capture(tmp_path, gunicorn_args(port, workers=2, threads=2), port) as captured:
        _load(captured.base, "warm", users, 2, "/lab/io/?ms=60")  # both workers loaded Django
        _load(captured.base, "gio", users, each, "/lab/io/?ms=60")
        wait_for_traces(captured.store, users * (each + 2))
    perfetto = tmp_path / "stage.json"
    result = run_djtrace(
        "timeline", "--store", str(captured.store), "--run", "gio", "--stage", "1",
        "--perfetto", str(perfetto), env={"COLUMNS": "100"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert f"{users * each} requests" in text
    lanes = _lane_lines(text)
    assert len(lanes) == 4, text  # one lane per worker thread
    assert len({label.split("/")[0] for label in lanes}) == 2  # in two processes
    for label, line in lanes.items():
        busy = int(line.rstrip().rsplit(" ", 1)[1].rstrip("%"))
        assert busy >= 50, f"{label} busy {busy}%:\n{text}"
        assert "v" in line[17:].lower()  # the view ran there (capitals: every other request)
    # Eight clients on four threads: requests waited before Django, and the lanes say so.
    assert "waiting before Django: p50" in text
    p50 = text.split("waiting before Django: p50 ", 1)[1].split(" ms", 1)[0]
    assert float(p50) >= 10, text
    assert sum(line[17:].lower().count("w") for line in text.splitlines()) >= 10, text

    # The same window in Perfetto: one track per worker thread, each request's phases nested.
    document = json.loads(perfetto.read_text())
    events = document["traceEvents"]
    names = {
        (e["pid"], e["tid"]): e["args"]["name"]
        for e in events
        if e["ph"] == "M" and e["name"] == "thread_name"
    }
    slices = [e for e in events if e["ph"] == "X"]
    tracks = {(e["pid"], e["tid"]) for e in slices}
    assert len(tracks) == 4 and tracks <= names.keys()
    assert not any("(2)" in names[t] for t in tracks)  # no request overlapped on a thread
    roots = [e for e in slices if e["cat"] == "request"]
    assert len(roots) == users * each
    for root in roots:
        inside = [
            e
            for e in slices
            if (e["pid"], e["tid"]) == (root["pid"], root["tid"])
            and e is not root
            and root["ts"] <= e["ts"]
            and e["ts"] + e["dur"] <= root["ts"] + root["dur"] + 0.001
        ]
        assert {"middleware", "view"} <= {e["cat"] for e in inside}
    waits = [e for e in events if e.get("cat") == "waiting" and e["ph"] == "b"]
    assert len(waits) == users * each  # each request's time before Django, per process


def test_a_load_requests_otel_span_names_its_run_stage_and_seq(client) -> None:
    """So a fleet's collector (docs/exporting.md) can find a load run's requests."""
    from djtrace.exporters.semconv import to_otel

    (tagged,) = _tagged_requests(client, [("/books/fast/", 0)], run="fleet1")
    root = next(s for s in to_otel(tagged) if s.phase == "request")
    assert root.attributes["djtrace.load.run"] == "fleet1"
    assert root.attributes["djtrace.load.stage"] == 1
    assert root.attributes["djtrace.load.seq"] == 0
