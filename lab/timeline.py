"""Swimlanes of overlapping requests: the lanes, bars and coloured segments of a timeline.

One lane per worker process and thread (where.pid, where.thread_id), each request a bar
from the moment it arrived (the load tag's send time when the lab sent it, else the trace's
start) to its close, cut into segments by phase: waiting before Django, then the deepest
span at each moment (middleware, view, SQL, templates, pool wait, sync/async hop,
response…). Pure functions over finished traces: the renderers (terminal, Perfetto, HTML)
only read what is built here.

A lane's requests are packed into rows: a request that arrived while the lane's thread was
still busy overlaps the one before it, so it goes on a row below; rows piling up in a lane
is the picture of requests queueing behind a busy thread.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from djtrace.aggregate import percentile
from djtrace.lab.tag import tag_of
from djtrace.model import Span, Trace

#: Timeline phases in pipeline order: key → label. The renderers give each a colour.
PHASES: dict[str, str] = {
    "waiting": "waiting before Django",
    "middleware": "middleware",
    "view": "view",
    "sql": "SQL",
    "template": "templates",
    "pool": "pool wait",
    "hop": "sync/async hop",
    "response": "response",
    "django": "other Django",  # handler, URL resolve, cache, sessions, signals
    "light": "inside Django (light trace)",  # a sampled-out request: its root only
}

#: Span phases whose own time is the code of whatever opened them (an atomic block).
_INHERIT = frozenset({"db.transaction"})


def phase_of(span_phase: str) -> str:
    """The timeline phase a span's own time is drawn as."""
    if span_phase == "view":
        return "view"
    if span_phase.startswith("middleware"):
        return "middleware"
    if span_phase == "db.pool":
        return "pool"
    if span_phase.startswith("db."):
        return "sql"
    if span_phase == "template":
        return "template"
    if span_phase == "async.hop":
        return "hop"
    if span_phase.startswith("response."):
        return "response"
    return "django"


@dataclass(frozen=True)
class Segment:
    phase: str  # a key of PHASES
    start: int  # epoch ns
    end: int


@dataclass
class Bar:
    """One request on the timeline; times are epoch nanoseconds."""

    trace_id: str
    arrival: int  # sent by the client (the load tag), else when Django started
    start: int  # the trace's start: the handler was entered
    end: int  # the response was closed
    segments: list[Segment]
    method: str = ""
    path: str = ""
    status: int | None = None
    load: dict[str, Any] | None = None
    sampled: bool = True

    @property
    def waited(self) -> int:
        """Time before Django: sent → the handler started (0 without a load tag)."""
        return self.start - self.arrival


LaneKey = tuple[int, int]  # (pid, thread id)


@dataclass
class Lane:
    """One worker thread of one process, and the requests it served."""

    pid: int
    thread_id: int
    thread: str  # the thread's name
    server: str | None
    bars: list[Bar] = field(default_factory=list)
    rows: list[list[Bar]] = field(default_factory=list)

    @property
    def key(self) -> LaneKey:
        return (self.pid, self.thread_id)

    def served(self, lo: int, hi: int) -> int:
        """Requests that started inside Django within [lo, hi)."""
        return sum(1 for b in self.bars if lo <= b.start < hi)

    def busy(self, lo: int, hi: int) -> int:
        """Nanoseconds within [lo, hi) when the lane ran at least one request (not waiting)."""
        spans = sorted((max(b.start, lo), min(b.end, hi)) for b in self.bars)
        total, reach = 0, lo
        for start, end in spans:
            start = max(start, reach)
            if end > start:
                total += end - start
                reach = end
        return total


@dataclass
class Timeline:
    lanes: list[Lane]
    start: int  # epoch ns: the window shown
    end: int

    @property
    def bars(self) -> list[Bar]:
        return sorted((b for lane in self.lanes for b in lane.bars), key=lambda b: b.arrival)

    @property
    def processes(self) -> int:
        return len({lane.pid for lane in self.lanes})

    def waits(self) -> list[int]:
        """Time before Django of the requests that carried a send time, sorted."""
        return sorted(b.waited for b in self.bars if b.load is not None)

    def wait_p(self, q: float) -> int:
        return percentile(self.waits(), q)


def _start_ns(trace: Trace) -> int:
    """The trace's start on the epoch clock (the contract's start_ns; started_at before it)."""
    start = getattr(trace, "start_ns", None)
    return int(start) if isinstance(start, int) and start > 0 else int(trace.started_at)


def _root(trace: Trace) -> Span | None:
    return trace.root


def lane_key(trace: Trace) -> LaneKey:
    where = trace.where
    pid = where.get("pid")
    thread_id = where.get("thread_id")
    if not isinstance(thread_id, int):
        root = _root(trace)
        thread_id = root.thread if root is not None else 0
    return (pid if isinstance(pid, int) else 0, thread_id)


def _load_tag(trace: Trace) -> dict[str, Any] | None:
    load = tag_of(trace.request)
    return dict(load) if load is not None and isinstance(load.get("sent_ns"), int) else None


def _paint(
    span: Span,
    kids: dict[int | None, list[Span]],
    inherited: str,
    lo: int,
    hi: int,
    out: list[tuple[str, int, int]],
) -> None:
    """Append (phase, start, end) for the stretches of [lo, hi) where `span` is the deepest
    span; children that overlap each other (async tasks) are clipped, first come first."""
    phase = inherited if span.phase in _INHERIT else phase_of(span.phase)
    if span.phase == "request" and span.attrs.get("sampled") is False:
        phase = "light"
    cursor = lo
    for child in kids.get(span.id, ()):
        start, end = max(child.start, cursor), min(child.end, hi)
        if end <= start:
            continue
        if start > cursor:
            out.append((phase, cursor, start))
        _paint(child, kids, phase, start, end, out)
        cursor = end
    if hi > cursor:
        out.append((phase, cursor, hi))


def segments_of(trace: Trace, arrival: int | None = None) -> list[Segment]:
    """The request's stretches by phase, on the epoch clock; `arrival` adds waiting."""
    base = _start_ns(trace)
    duration = max(trace.duration, 0)
    spans = trace.spans
    known = {s.id for s in spans}
    kids: dict[int | None, list[Span]] = defaultdict(list)
    for span in spans:
        kids[span.parent if span.parent in known else None].append(span)
    for children in kids.values():
        children.sort(key=lambda s: s.start)
    raw: list[tuple[str, int, int]] = []
    top = kids.get(None, [])
    root = next((s for s in top if s.phase == "request"), None)
    if root is None:  # no root (should not happen): the whole request as "other Django"
        raw.append(("django", 0, duration))
    else:
        end = max(root.end, duration)
        _paint(root, kids, "django", 0, end, raw)
    out: list[Segment] = []
    if arrival is not None and arrival < base:
        out.append(Segment("waiting", arrival, base))
    for phase, start, end in raw:
        start, end = base + start, base + end
        if out and out[-1].phase == phase and out[-1].end == start:
            out[-1] = Segment(phase, out[-1].start, end)
        else:
            out.append(Segment(phase, start, end))
    return out


def bar_of(trace: Trace) -> Bar:
    """The request's bar: from arrival (the load tag's send time, when before the start)."""
    start = _start_ns(trace)
    load = _load_tag(trace)
    arrival = min(load["sent_ns"], start) if load is not None else start
    root = _root(trace)
    segments = segments_of(trace, arrival)
    end = max(start + max(trace.duration, 0), segments[-1].end if segments else start)
    request = trace.request
    status = request.get("status")
    return Bar(
        trace_id=trace.id,
        arrival=arrival,
        start=start,
        end=end,
        segments=segments,
        method=str(request.get("method") or ""),
        path=str(request.get("path") or ""),
        status=status if isinstance(status, int) else None,
        load=load,
        sampled=not (root is not None and root.attrs.get("sampled") is False),
    )


#: Overlap a row tolerates: a keep-alive client sends its next request as soon as it has the
#: body, a moment before the server's thread closes the previous response.
PACK_SLACK_NS = 1_000_000


def pack(bars: Sequence[Bar], slack: int = PACK_SLACK_NS) -> list[list[Bar]]:
    """Rows of bars that do not overlap (by more than `slack`), first fit by arrival."""
    rows: list[list[Bar]] = []
    for bar in sorted(bars, key=lambda b: (b.arrival, b.start)):
        for row in rows:
            if row[-1].end <= bar.arrival + slack:
                row.append(bar)
                break
        else:
            rows.append([bar])
    return rows


def build(traces: Iterable[Trace], start: int | None = None, end: int | None = None) -> Timeline:
    """The timeline of `traces`, over [start, end) (by default, all of them).

    Only requests whose bar meets the window are kept; lanes are ordered by process, then
    by the first request each thread served.
    """
    lanes: dict[LaneKey, Lane] = {}
    bars: list[tuple[LaneKey, Bar, Trace]] = []
    for trace in traces:
        bar = bar_of(trace)
        bars.append((lane_key(trace), bar, trace))
    if not bars:
        return Timeline([], start or 0, end or 0)
    lo = start if start is not None else min(b.arrival for _, b, _ in bars)
    hi = end if end is not None else max(b.end for _, b, _ in bars)
    for key, bar, trace in sorted(bars, key=lambda item: item[1].arrival):
        if bar.end <= lo or bar.arrival >= hi:
            continue
        lane = lanes.get(key)
        if lane is None:
            where = trace.where
            lane = lanes[key] = Lane(
                pid=key[0],
                thread_id=key[1],
                thread=str(where.get("thread") or f"thread {key[1]}"),
                server=where.get("server"),
            )
        lane.bars.append(bar)
    ordered = sorted(lanes.values(), key=lambda lane: (lane.pid, lane.bars[0].start))
    for lane in ordered:
        lane.rows = pack(lane.bars)
    return Timeline(ordered, lo, hi)


def zoom(timeline: Timeline, start: int, end: int) -> Timeline:
    """The same lanes over a narrower window (bars outside it left out)."""
    lanes = []
    for lane in timeline.lanes:
        bars = [b for b in lane.bars if b.end > start and b.arrival < end]
        if bars:
            lanes.append(Lane(lane.pid, lane.thread_id, lane.thread, lane.server, bars, pack(bars)))
    return Timeline(lanes, start, end)


def cells(row: Sequence[Bar], start: int, end: int, width: int) -> list[str | None]:
    """The row drawn in `width` cells over [start, end): each cell the phase that took most
    of its time (None where the row was idle for all of it)."""
    return [cell[0] if cell else None for cell in cells_by_bar(row, start, end, width)]


def cells_by_bar(
    row: Sequence[Bar], start: int, end: int, width: int
) -> list[tuple[str, int] | None]:
    """Like `cells`, with the position in `row` of the bar that took most of each cell, so
    a renderer can tell back-to-back requests apart (alternate shades)."""
    if width <= 0 or end <= start:
        return []
    step = (end - start) / width
    weight: list[dict[str, float]] = [{} for _ in range(width)]
    owner: list[dict[int, float]] = [{} for _ in range(width)]
    for number, bar in enumerate(row):
        for seg in bar.segments:
            lo, hi = max(seg.start, start), min(seg.end, end)
            if hi <= lo:
                continue
            first = int((lo - start) / step)
            last = min(width - 1, int((hi - start) / step))
            for cell in range(first, last + 1):
                cell_lo = start + cell * step
                overlap = min(hi, cell_lo + step) - max(lo, cell_lo)
                if overlap > 0:
                    acc = weight[cell]
                    acc[seg.phase] = acc.get(seg.phase, 0.0) + overlap
                    bars = owner[cell]
                    bars[number] = bars.get(number, 0.0) + overlap
    return [
        (max(acc, key=acc.__getitem__), max(bars, key=bars.__getitem__)) if acc else None
        for acc, bars in zip(weight, owner, strict=True)
    ]


def phase_totals(bars: Iterable[Bar]) -> dict[str, int]:
    """Nanoseconds spent in each timeline phase across `bars`, in PHASES order."""
    totals = dict.fromkeys(PHASES, 0)
    for bar in bars:
        for seg in bar.segments:
            totals[seg.phase] += seg.end - seg.start
    return {k: v for k, v in totals.items() if v}
