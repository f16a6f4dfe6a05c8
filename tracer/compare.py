"""Comparing two traces: phase by phase, and query by query (by fingerprint).

Pure functions over finished traces, for `djtrace diff` and `djtrace replay`. Two runs of
the same request always differ a little in time; what "no change" means is the shape:
same status, same route, the same queries the same number of times.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from djtrace.analysis import breakdown, findings, fingerprint
from djtrace.model import Trace


@dataclass(frozen=True)
class PhaseDelta:
    name: str
    a: int  # ns
    b: int

    @property
    def delta(self) -> int:
        return self.b - self.a


@dataclass(frozen=True)
class QueryDelta:
    """One query shape: how many times and how long it ran in each trace."""

    fingerprint: str
    a_count: int
    b_count: int
    a_time: int
    b_time: int
    source: str | None = None

    @property
    def delta(self) -> int:
        return self.b_count - self.a_count


@dataclass
class TraceDiff:
    a: Trace
    b: Trace
    phases: list[PhaseDelta]
    queries: list[QueryDelta]  # every shape seen in either trace
    fixed: list[str] = field(default_factory=list)  # findings in A that B no longer has
    new: list[str] = field(default_factory=list)  # findings only B has

    @property
    def added(self) -> list[QueryDelta]:
        """Query shapes B runs more often than A (or A never ran)."""
        return [q for q in self.queries if q.delta > 0]

    @property
    def removed(self) -> list[QueryDelta]:
        return [q for q in self.queries if q.delta < 0]

    @property
    def query_counts(self) -> tuple[int, int]:
        return sum(q.a_count for q in self.queries), sum(q.b_count for q in self.queries)

    @property
    def status_changed(self) -> bool:
        return self.a.request.get("status") != self.b.request.get("status")

    @property
    def route_changed(self) -> bool:
        return self.a.request.get("route") != self.b.request.get("route")

    @property
    def same_shape(self) -> bool:
        """Same status, route and queries; only timings may differ."""
        return not (self.status_changed or self.route_changed or self.added or self.removed)

    @property
    def identical(self) -> bool:
        """The same shape and the very same timings (a trace compared with itself)."""
        return (
            self.same_shape
            and self.a.duration == self.b.duration
            and all(p.delta == 0 for p in self.phases)
        )


def _queries(trace: Trace) -> dict[str, tuple[int, int, str | None]]:
    shapes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    sources: dict[str, str | None] = {}
    for span in trace.spans:
        if span.phase != "db.query":
            continue
        shape = fingerprint(str(span.attrs.get("sql", "")))
        shapes[shape][0] += 1
        shapes[shape][1] += max(span.duration, 0)
        sources.setdefault(shape, span.attrs.get("source"))
    return {k: (v[0], v[1], sources.get(k)) for k, v in shapes.items()}


def _finding_keys(trace: Trace) -> dict[tuple[str, str], str]:
    found = trace.findings if trace.findings is not None else findings(trace)
    return {
        (f["kind"], str(f.get("fingerprint") or f.get("message", ""))): f"{f['kind']}: "
        + str(f.get("message", ""))
        for f in found
    }


def compare(a: Trace, b: Trace) -> TraceDiff:
    """How B differs from A (A is the reference: the original, the "before")."""
    phases_a = dict(breakdown(a))
    phases_b = dict(breakdown(b))
    names = list(phases_a) + [n for n in phases_b if n not in phases_a]
    phases = [PhaseDelta(n, phases_a.get(n, 0), phases_b.get(n, 0)) for n in names]
    phases.append(PhaseDelta("total", max(a.duration, 0), max(b.duration, 0)))

    qa, qb = _queries(a), _queries(b)
    queries = []
    for shape in list(qa) + [s for s in qb if s not in qa]:
        ca, ta, sa = qa.get(shape, (0, 0, None))
        cb, tb, sb = qb.get(shape, (0, 0, None))
        queries.append(QueryDelta(shape, ca, cb, ta, tb, sa or sb))
    queries.sort(key=lambda q: (-abs(q.delta), -(q.a_time + q.b_time)))

    fa, fb = _finding_keys(a), _finding_keys(b)
    return TraceDiff(
        a,
        b,
        phases,
        queries,
        fixed=[text for key, text in fa.items() if key not in fb],
        new=[text for key, text in fb.items() if key not in fa],
    )
