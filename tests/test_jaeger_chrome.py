"""Traces as files: the JSON Jaeger UI's "JSON File" upload opens, and the Chrome
trace-event format Perfetto and chrome://tracing open."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from djtrace import Trace, trace
from djtrace.cli.inprocess import RequestSpec, run
from djtrace.exporters.chrome import to_chrome, write_chrome
from djtrace.exporters.jaeger_json import to_jaeger_json, write_jaeger_json

from tests.conftest import run_djtrace

TAG_TYPES = {"string": str, "bool": bool, "int64": int, "float64": float}


@pytest.fixture(scope="module")
def recorded() -> list[Trace]:
    from django.test import Client

    client = Client(raise_request_exception=False)
    with trace() as t:
        client.get("/books/")
        client.get(
            "/books/1/", HTTP_TRACEPARENT="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        )
        client.get("/boom/")
    return t.requests


def _check_tag(tag: dict) -> None:
    assert set(tag) == {"key", "type", "value"}
    assert isinstance(tag["key"], str) and tag["key"]
    expected = TAG_TYPES[tag["type"]]
    value = tag["value"]
    assert isinstance(value, expected) and (expected is bool or not isinstance(value, bool))


# --- Jaeger UI JSON ------------------------------------------------------------------------


def test_jaeger_json_has_the_shape_jaeger_ui_opens(recorded, tmp_path):
    path = tmp_path / "traces.json"
    written = write_jaeger_json(recorded, path, service_name="bookstore")
    document = json.loads(path.read_text())
    assert document == json.loads(json.dumps(written))

    assert isinstance(document["data"], list) and len(document["data"]) == 3
    for jaeger_trace, source in zip(document["data"], recorded, strict=True):
        trace_id = jaeger_trace["traceID"]
        assert len(trace_id) == 32 and int(trace_id, 16) > 0
        processes = jaeger_trace["processes"]
        assert processes == {"p1": {"serviceName": "bookstore", "tags": processes["p1"]["tags"]}}
        for tag in processes["p1"]["tags"]:
            _check_tag(tag)
        spans = jaeger_trace["spans"]
        assert len(spans) == len(source.spans)
        ids = {s["spanID"] for s in spans}
        assert len(ids) == len(spans)
        for span in spans:
            assert span["traceID"] == trace_id
            assert len(span["spanID"]) == 16 and int(span["spanID"], 16) > 0
            assert isinstance(span["operationName"], str) and span["operationName"]
            assert isinstance(span["startTime"], int) and isinstance(span["duration"], int)
            assert span["duration"] >= 0
            assert span["processID"] in processes
            for tag in span["tags"]:
                _check_tag(tag)
            for log in span["logs"]:
                assert isinstance(log["timestamp"], int)
                for field in log["fields"]:
                    _check_tag(field)
            for ref in span["references"]:
                assert ref["refType"] == "CHILD_OF" and ref["traceID"] == trace_id

        # References point at spans of the file, except the root's (a caller's span).
        roots = [s for s in spans if not any(r["spanID"] in ids for r in s["references"])]
        assert len(roots) == 1
        (root,) = roots
        # Microseconds, from the trace's real wall-clock start.
        assert abs(root["startTime"] - (source.started_at + source.root.start) / 1000) <= 1
        assert abs(root["duration"] - source.duration / 1000) <= 1
        for span in spans:
            assert root["startTime"] <= span["startTime"]
            assert span["startTime"] + span["duration"] <= root["startTime"] + root["duration"]
        tags = {t["key"]: t["value"] for t in root["tags"]}
        assert tags["span.kind"] == "server"
        assert tags["djtrace.trace_id"] == source.id

    books, detail, boom = document["data"]
    books_root = next(s for s in books["spans"] if s["operationName"] == "GET books/")
    assert books_root["references"] == []
    (log,) = books_root["logs"]
    fields = {f["key"]: f["value"] for f in log["fields"]}
    assert fields["event"] == "djtrace.n_plus_one" and fields["djtrace.finding.count"] == 20
    queries = [s for s in books["spans"] if any(t["key"] == "db.query.text" for t in s["tags"])]
    assert len(queries) == 21
    assert all(
        {"key": "span.kind", "type": "string", "value": "client"} in q["tags"] for q in queries
    )

    # The request that carried a traceparent continues the caller's trace.
    assert detail["traceID"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    detail_root = next(s for s in detail["spans"] if s["operationName"] == "GET books/<int:pk>/")
    assert detail_root["references"] == [
        {"refType": "CHILD_OF", "traceID": detail["traceID"], "spanID": "00f067aa0ba902b7"}
    ]

    boom_root = next(s for s in boom["spans"] if s["operationName"] == "GET boom/")
    boom_tags = {t["key"]: t["value"] for t in boom_root["tags"]}
    assert boom_tags["error"] is True and boom_tags["otel.status_code"] == "ERROR"
    view = next(s for s in boom["spans"] if s["operationName"].endswith("views.boom"))
    (exception,) = view["logs"]
    fields = {f["key"]: f["value"] for f in exception["fields"]}
    assert fields["event"] == "exception"
    assert fields["exception.type"] == "builtins.RuntimeError"


def test_requests_continuing_one_callers_trace_share_one_jaeger_trace(recorded):
    detail = recorded[1]
    again = Trace.from_dict(json.loads(json.dumps(detail.to_dict())))
    again.id = "0123456789abcdef"  # another request that carried the same traceparent
    document = to_jaeger_json([detail, again])
    (jaeger_trace,) = document["data"]
    assert len(jaeger_trace["spans"]) == 2 * len(detail.spans)


# --- Chrome trace events (Perfetto) ---------------------------------------------------------


def _nested(events: list[dict]) -> bool:
    """Complete events on one track nest like a call stack."""
    stack: list[float] = []
    for event in sorted(events, key=lambda e: (e["ts"], -e["dur"])):
        while stack and stack[-1] <= event["ts"]:
            stack.pop()
        end = event["ts"] + event["dur"]
        if stack and end > stack[-1] + 0.001:
            return False
        stack.append(end)
    return True


def test_chrome_trace_events_open_in_perfetto(recorded, tmp_path):
    path = tmp_path / "trace.json"
    written = write_chrome(recorded, path)
    document = json.loads(path.read_text())
    assert document == json.loads(json.dumps(written))
    events = document["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    metadata = [e for e in events if e["ph"] == "M"]
    assert len(complete) == sum(len(t.spans) for t in recorded)
    for event in complete:
        assert {"name", "cat", "ph", "ts", "dur", "pid", "tid", "args"} <= set(event)
        assert isinstance(event["ts"], int | float) and isinstance(event["dur"], int | float)
        assert event["ts"] >= 0 and event["dur"] >= 0
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int)
        assert isinstance(event["args"], dict)

    # Microseconds from the first trace's start.
    first = recorded[0]
    roots = [e for e in complete if e["cat"] == "request"]
    assert len(roots) == 3
    assert roots[0]["ts"] == pytest.approx(first.root.start / 1000, abs=0.01)
    assert roots[0]["dur"] == pytest.approx(first.root.duration / 1000, abs=0.01)
    later = recorded[2]
    assert roots[2]["ts"] == pytest.approx(
        (later.started_at - first.started_at + later.root.start) / 1000, abs=0.01
    )

    # One track per thread: every span of these sync requests ran on one thread.
    (pid,) = {e["pid"] for e in complete}
    assert {e["tid"] for e in complete} == {1}
    names = {(e["pid"], e["tid"], e["name"]): e["args"] for e in metadata}
    assert (pid, 0, "process_name") in names
    assert names[(pid, 1, "thread_name")] == {"name": "MainThread"}
    assert _nested(complete)

    # Findings are instant events.
    instants = [e for e in events if e["ph"] == "i"]
    assert any(e["cat"] == "djtrace.n_plus_one" and "20 similar" in e["name"] for e in instants)


def test_chrome_one_track_per_thread_under_asgi():
    # Under ASGI the handler runs on the event loop; sync middleware and views run on
    # sync_to_async's worker thread: two threads, two tracks.
    traced = run(RequestSpec(path="/books/1/", asgi=True))
    threads = {s.thread for s in traced.spans}
    assert len(threads) >= 2
    document = to_chrome([traced])
    complete = [e for e in document["traceEvents"] if e["ph"] == "X"]
    by_tid: dict[int, set[int]] = defaultdict(set)
    for event in complete:
        by_tid[event["tid"]].add(event["args"]["thread.id"])
    assert len(by_tid) == len(threads)
    assert all(len(idents) == 1 for idents in by_tid.values())  # a track is one thread
    thread_names = [
        e for e in document["traceEvents"] if e["ph"] == "M" and e["name"] == "thread_name"
    ]
    assert sorted(e["tid"] for e in thread_names) == sorted(by_tid)
    for tid in by_tid:
        assert _nested([e for e in complete if e["tid"] == tid])


def test_chrome_overlapping_requests_on_one_thread_get_their_own_track(recorded):
    # Two requests interleaved on one event-loop thread cannot nest on one track.
    first = recorded[0]
    overlapping = Trace.from_dict(json.loads(json.dumps(first.to_dict())))
    overlapping.id = "fedcba9876543210"
    overlapping.started_at = first.started_at + first.duration // 2
    document = to_chrome([first, overlapping])
    complete = [e for e in document["traceEvents"] if e["ph"] == "X"]
    tids = {e["args"]["djtrace.trace_id"]: e["tid"] for e in complete}
    assert tids[first.id] != tids[overlapping.id]
    thread_names = {
        e["tid"]: e["args"]["name"]
        for e in document["traceEvents"]
        if e["ph"] == "M" and e["name"] == "thread_name"
    }
    assert thread_names == {1: "MainThread", 2: "MainThread (2)"}
    for tid in thread_names:
        assert _nested([e for e in complete if e["tid"] == tid])


def test_cli_export_writes_both_files_from_the_store(recorded, tmp_path):
    lines = tmp_path / "traces.jsonl"
    lines.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in recorded))
    store = str(tmp_path / "store.sqlite3")
    assert run_djtrace("import", str(lines), "--store", store).returncode == 0

    jaeger_file, chrome_file = tmp_path / "jaeger.json", tmp_path / "perfetto.json"
    for fmt, target in (("jaeger-json", jaeger_file), ("chrome", chrome_file)):
        result = run_djtrace("export", "--to", fmt, "-o", str(target), "--store", store)
        assert result.returncode == 0, result.stderr

    jaeger = json.loads(jaeger_file.read_text())
    assert len(jaeger["data"]) == 3
    assert sum(len(d["spans"]) for d in jaeger["data"]) == sum(len(r.spans) for r in recorded)
    chrome = json.loads(chrome_file.read_text())
    complete = [e for e in chrome["traceEvents"] if e["ph"] == "X"]
    assert len(complete) == sum(len(r.spans) for r in recorded)
    assert sorted(e["name"] for e in complete if e["cat"] == "request") == [
        "GET books/",
        "GET books/<int:pk>/",
        "GET boom/",
    ]
