"""Load from another tool (wrk, k6, locust, several machines): the same per-stage report,
built from the traces a captured server stored during a window.

Requests are grouped into stages by their load tag when the tool sent one (the
X-Djtrace-Load header: run, stage, seq, send time), otherwise by time: a pause in traffic
longer than `gap_ns` ends a stage. Without a send time the client's view is unknown, so
a stage's latency is the server's (inside Django) and "before Django" is not reported;
with it, latency runs from the send to the close. The result is a run document like
`djtrace load`'s (docs/load-format.md), with `"observed": true` on each stage, so the
same renderers, comparisons and HTML report read it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from djtrace.aggregate import percentile
from djtrace.lab.analysis import AFTER, BEFORE, stage_analysis
from djtrace.lab.join import trace_facts
from djtrace.lab.tag import tag_of
from djtrace.model import Trace

DEFAULT_GAP_NS = 1_000_000_000
#: Fewer requests than this between pauses are not a stage (a health check, a warm-up curl).
MIN_STAGE_REQUESTS = 5


def _start(trace: Trace) -> int:
    return int(getattr(trace, "start_ns", trace.started_at))


def _end(trace: Trace) -> int:
    return _start(trace) + max(trace.duration, 0)


def split_by_gaps(traces: Sequence[Trace], gap_ns: int = DEFAULT_GAP_NS) -> list[list[Trace]]:
    """Traces in start order, cut wherever no request was in flight for more than `gap_ns`."""
    groups: list[list[Trace]] = []
    reach = None
    for trace in sorted(traces, key=_start):
        if reach is None or _start(trace) - reach > gap_ns:
            groups.append([])
        groups[-1].append(trace)
        reach = max(reach or 0, _end(trace))
    return groups


def group_stages(
    traces: Iterable[Trace], gap_ns: int = DEFAULT_GAP_NS
) -> list[tuple[str | None, int | None, list[Trace]]]:
    """(run, stage, traces) per stage: tagged traces by their tag, the rest by time gaps."""
    tagged: dict[tuple[str, int], list[Trace]] = {}
    untagged: list[Trace] = []
    for trace in traces:
        tag = tag_of(trace.request)
        if tag is None:
            untagged.append(trace)
        else:
            tagged.setdefault((tag["run"], tag["stage"]), []).append(trace)
    groups: list[tuple[str | None, int | None, list[Trace]]] = [
        (run, stage, items) for (run, stage), items in tagged.items()
    ]
    groups += [(None, None, items) for items in split_by_gaps(untagged, gap_ns)]
    groups.sort(key=lambda g: min(_start(t) for t in g[2]))
    return groups


def _summary(values: Sequence[int]) -> dict[str, Any]:
    ordered = sorted(values)
    if not ordered:
        return {"count": 0}
    return {
        "p50": percentile(ordered, 50),
        "p90": percentile(ordered, 90),
        "p95": percentile(ordered, 95),
        "p99": percentile(ordered, 99),
        "p99.9": percentile(ordered, 99.9),
        "max": ordered[-1],
        "min": ordered[0],
        "mean": sum(ordered) / len(ordered),
        "count": len(ordered),
    }


def observed_stage(index: int, traces: Sequence[Trace], run: str | None = None) -> dict[str, Any]:
    """One stage of a run document from stored traces alone (no client measurements)."""
    rows = []
    for trace in traces:
        facts = trace_facts(trace)
        tag = tag_of(trace.request)
        start, inside = _start(trace), facts["inside_ns"]
        sent = min(tag["sent_ns"], start) if tag is not None else None
        before = start - sent if sent is not None else None
        status = facts.get("status")
        facts.update(
            seq=tag["seq"] if tag is not None else len(rows),
            target=f"{trace.request.get('method', '')} {trace.request.get('path', '')}",
            latency_ns=inside + (before or 0),
            before_ns=before or 0,
            after_ns=0,
            client_status=status,
            error=None,
            arrival_ns=sent if sent is not None else start,
        )
        rows.append(facts)
    first = min(r["arrival_ns"] for r in rows)
    last = max(r["start_ns"] + r["inside_ns"] for r in rows)
    window = max(last - first, 1)
    busy = sum(r["before_ns"] + r["inside_ns"] for r in rows)
    in_flight = busy / window
    errors: dict[str, int] = {}
    for r in rows:
        status = r.get("status")
        if isinstance(status, int) and status >= 500:
            key = f"status {status}"
            errors[key] = errors.get(key, 0) + 1
    stage: dict[str, Any] = {
        "index": index,
        "kind": "closed",  # as seen from the server: requests in flight, not a schedule
        "observed": True,
        "run": run,
        "concurrency": max(1, round(in_flight)),
        "mean_in_flight": in_flight,
        "rate": 0.0,
        "poisson": False,
        "window_start_ns": first,
        "window_end_ns": last,
        "duration_s": window / 1e9,
        "count": len(rows),
        "ok": len(rows) - sum(errors.values()),
        "errors": errors,
        "throughput": len(rows) / (window / 1e9),
        "latency": _summary([r["latency_ns"] for r in rows]),
        "generator_cpu_share": 0.0,  # not ours to measure: the load came from another tool
        "requests": [],
        "tagged": sum(1 for t in traces if tag_of(t.request) is not None),
    }
    # Latency runs from the send when every request carried its send time, else from Django.
    stage["latency_from"] = "send" if stage["tagged"] == len(rows) else "server"
    stage["analysis"] = stage_analysis(stage, rows)
    split = stage["analysis"].get("split") or {}
    split.pop(AFTER, None)  # the client's receipt of the body is not stored anywhere
    if not stage["tagged"]:
        split.pop(BEFORE, None)  # no send times: nothing is known of the time before Django
    stage["joined"] = rows
    return stage


def observed_run(
    traces: Sequence[Trace], run_id: str, store: str, gap_ns: int = DEFAULT_GAP_NS
) -> dict[str, Any]:
    """A run document (without its summary: the caller adds `sweep_analysis`)."""
    groups = [g for g in group_stages(traces, gap_ns) if len(g[2]) >= MIN_STAGE_REQUESTS]
    stages = [observed_stage(i, items, run) for i, (run, _, items) in enumerate(groups, 1)]
    started = min((s["window_start_ns"] for s in stages), default=0)
    finished = max((s["window_end_ns"] for s in stages), default=0)
    return {
        "format": "djtrace-load",
        "version": 1,
        "run_id": run_id,
        "observed": True,
        "started_at": started,
        "finished_at": finished,
        "interrupted": False,
        "server": {"base_url": f"traces stored in {store}", "command": None, "exit_code": None},
        "settings": {"targets": [], "stages": [], "gap_s": gap_ns / 1e9},
        "store": store,
        "stages": stages,
    }
