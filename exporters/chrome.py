"""Traces in the Chrome trace-event format, which Perfetto (ui.perfetto.dev → "Open trace
file") and chrome://tracing open: a timeline with one track per thread.

    {"traceEvents": [
        {"ph": "M", "name": "process_name", "pid", "args": {"name"}},     # track names
        {"ph": "M", "name": "thread_name", "pid", "tid", "args": {"name"}},
        {"ph": "X", "name", "cat", "ts" µs, "dur" µs, "pid", "tid", "args"},  # a span
        {"ph": "i", "s": "t", "name", "ts", "pid", "tid", "args"},           # a finding
        {"ph": "b"/"e", "cat": "waiting", "id", "ts", "pid", "name"},        # before Django
     ], "displayTimeUnit": "ms"}

Times are microseconds (fractional, so nanoseconds survive) from the earliest trace's
start. Each process is a pid and each thread a track; spans of requests that overlapped on
one thread (async views on one event loop) go to extra tracks, "MainThread (2)", because a
track draws properly nested spans only.

A request the load lab sent (its trace carries `request["load"]["sent_ns"]`) also gets
an async slice "waiting before Django" from its send time to the handler's start, on the
process's async track: it waited before any thread of the process ran it.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from djtrace.exporters.files import write_json
from djtrace.exporters.semconv import OtelSpan, to_otel
from djtrace.model import Trace


def _us(ns: int) -> float:
    return round(ns / 1000, 3)


class _Tracks:
    """Small tids per process; a thread gets another track where traces overlap on it."""

    def __init__(self) -> None:
        self.tids: dict[tuple[int, int, int], int] = {}  # (pid, thread, lane) → tid
        self.names: dict[tuple[int, int], str] = {}  # (pid, tid) → name
        self.lane_ends: dict[tuple[int, int], list[int]] = {}  # (pid, thread) → lane ends
        self.next_tid: dict[int, int] = {}

    def place(self, pid: int, thread: int, name: str, start: int, end: int) -> int:
        ends = self.lane_ends.setdefault((pid, thread), [])
        for lane, lane_end in enumerate(ends):
            if lane_end <= start:
                ends[lane] = end
                break
        else:
            lane = len(ends)
            ends.append(end)
        key = (pid, thread, lane)
        if key not in self.tids:
            tid = self.next_tid.get(pid, 1)
            self.next_tid[pid] = tid + 1
            self.tids[key] = tid
            self.names[(pid, tid)] = name if lane == 0 else f"{name} ({lane + 1})"
        return self.tids[key]


def _thread_names(trace: Trace) -> dict[int, str]:
    root = trace.root
    names: dict[int, str] = {}
    for span in trace.spans:
        if span.thread not in names:
            names[span.thread] = f"thread {span.thread}"
    if root is not None and trace.where.get("thread"):
        names[root.thread] = str(trace.where["thread"])
    return names


def _args(span: OtelSpan, trace: Trace) -> dict[str, Any]:
    args: dict[str, Any] = {"djtrace.trace_id": trace.id}
    args.update(span.attributes)
    if span.error is not None:
        args["error"] = span.error
    return args


def _sent_ns(trace: Trace) -> int | None:
    """When the load lab sent the request (its load tag), if it did."""
    load = trace.request.get("load")
    sent = load.get("sent_ns") if isinstance(load, dict) else None
    return sent if isinstance(sent, int) else None


def _waiting(trace: Trace, pid: int, start: float, end: float) -> list[dict[str, Any]]:
    request = trace.request
    common = {"cat": "waiting", "id": trace.id, "pid": pid, "tid": 0}
    label = f"waiting before Django: {request.get('method', '')} {request.get('path', '')}"
    args = {"djtrace.trace_id": trace.id, "load": request.get("load")}
    return [
        {**common, "name": label, "ph": "b", "ts": start, "args": args},
        {**common, "name": label, "ph": "e", "ts": end},
    ]


def to_chrome(traces: Iterable[Trace]) -> dict[str, Any]:
    """The trace-event document for `traces`."""
    traces = sorted(traces, key=lambda t: t.started_at)
    events: list[dict[str, Any]] = []
    if not traces:
        return {"traceEvents": events, "displayTimeUnit": "ms"}
    epoch = min(min(_sent_ns(t) or t.started_at for t in traces), traces[0].started_at)
    tracks = _Tracks()
    processes: dict[int, str] = {}
    for trace in traces:
        pid = trace.where.get("pid")
        pid = pid if isinstance(pid, int) else 0
        processes.setdefault(pid, f"{trace.where.get('server') or 'django'} (pid {pid})")
        spans = to_otel(trace)
        names = _thread_names(trace)
        sent = _sent_ns(trace)
        if sent is not None and sent < trace.started_at:
            events.extend(_waiting(trace, pid, _us(sent - epoch), _us(trace.started_at - epoch)))
        # One track (lane) per thread for this whole trace, so its spans nest on it.
        extent: dict[int, tuple[int, int]] = {}
        for span in spans:
            lo, hi = extent.get(span.thread, (span.start, span.end))
            extent[span.thread] = (min(lo, span.start), max(hi, span.end))
        tid_of = {
            thread: tracks.place(pid, thread, names.get(thread, f"thread {thread}"), lo, hi)
            for thread, (lo, hi) in sorted(extent.items(), key=lambda item: item[1][0])
        }
        for span in spans:
            tid = tid_of[span.thread]
            events.append(
                {
                    "name": span.name,
                    "cat": span.phase,
                    "ph": "X",
                    "ts": _us(span.start - epoch),
                    "dur": _us(span.end - span.start),
                    "pid": pid,
                    "tid": tid,
                    "args": _args(span, trace),
                }
            )
            for event in span.events:
                events.append(
                    {
                        "name": str(event.attributes.get("djtrace.finding.message") or event.name),
                        "cat": event.name,
                        "ph": "i",
                        "s": "t",
                        "ts": _us(event.time - epoch),
                        "pid": pid,
                        "tid": tid,
                        "args": dict(event.attributes),
                    }
                )
    metadata: list[dict[str, Any]] = []
    for pid, name in processes.items():
        metadata.append(
            {"ph": "M", "name": "process_name", "pid": pid, "tid": 0, "args": {"name": name}}
        )
    for (pid, tid), name in sorted(tracks.names.items()):
        metadata.append(
            {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}}
        )
        metadata.append(
            {
                "ph": "M",
                "name": "thread_sort_index",
                "pid": pid,
                "tid": tid,
                "args": {"sort_index": tid},
            }
        )
    return {
        "traceEvents": metadata + events,
        "displayTimeUnit": "ms",
        "otherData": {"generator": "djtrace", "epoch_ns": epoch, "traces": len(traces)},
    }


def write_chrome(traces: Iterable[Trace], target: str | Path | IO[str]) -> dict[str, Any]:
    """Write the trace-event file ("-" is stdout); returns the document written."""
    document = to_chrome(traces)
    write_json(document, target)
    return document


def export(traces: Iterable[Trace], destination: str | None) -> int:
    """`djtrace export --to chrome [-o FILE]` (stdout by default); returns the count."""
    items = list(traces)
    write_chrome(items, destination or "-")
    return len(items)
