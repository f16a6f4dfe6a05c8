"""The join: each load request the client measured, matched to the trace the server recorded.

A load request carries its run, stage and sequence number (lab/tag.py); its trace carries
them back. Client and server share this machine's clock, so a request's latency splits in
three: *before* Django (sent → the handler started: the accept queue, waiting for a free
worker or thread, or for the GIL), *inside* (the trace's duration) and *after* (the rest:
the body's way back to the client).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from djtrace.analysis import breakdown, category, self_times
from djtrace.lab.tag import tag_of
from djtrace.model import Trace

#: Phase kinds the lab reports beside `analysis.breakdown`'s categories: the waits it cares
#: about, their self time taken out of the category they would fall in (rows still add up).
POOL_WAIT = "pool checkout wait"
HOPS = "thread hops"
CONNECT = "connection open"
_OWN_KIND = {"db.pool": POOL_WAIT, "async.hop": HOPS, "db.connect": CONNECT}


def trace_facts(trace: Trace) -> dict[str, Any]:
    """What the lab needs from one trace, small enough to keep in the run document."""
    where = trace.where
    root = trace.root
    root_attrs = root.attrs if root is not None else {}
    sampled = root_attrs.get("sampled", True) is not False
    facts: dict[str, Any] = {
        "trace": trace.id,
        "start_ns": trace.started_at,
        "inside_ns": max(trace.duration, 0),
        "answered_ns": _answered(trace),
        "status": trace.request.get("status"),
        "pid": where.get("pid"),
        "thread_id": where.get("thread_id", root.thread if root is not None else None),
        "thread": where.get("thread"),
        "server": where.get("server"),
        "mode": where.get("mode"),
        "sampled": sampled,
        "cpu_ns": root_attrs.get("cpu_ns"),
    }
    if not sampled:
        # A light trace: its root's totals stand in for the spans it does not have.
        facts["db_ns"] = root_attrs.get("db_ns")
        facts["db_count"] = root_attrs.get("db_count")
        return facts
    phases = dict(breakdown(trace))
    own = self_times(trace)
    connects = pool_timeouts = hops = hop_wait = 0
    view_cpu = None
    for span in trace.spans:
        phase = span.phase
        if phase in _OWN_KIND:
            # The lab's waits get a row of their own, taken out of the kind they sit in
            # (a pool checkout is "SQL", a hop "other"), so the rows still add up.
            kind = _OWN_KIND[phase]
            phases[kind] = phases.get(kind, 0) + own[span.id]
            phases[category(phase)] -= own[span.id]
        if phase == "db.connect":
            connects += 1
        elif phase == "db.pool":
            pool_timeouts += bool(span.attrs.get("timeout"))
        elif phase == "async.hop":
            hops += 1
            hop_wait += int(span.attrs.get("wait_ns") or 0)
        elif phase == "view" and view_cpu is None:
            view_cpu = span.attrs.get("cpu_ns")
    phases = {name: ns for name, ns in phases.items() if ns}
    facts.update(
        phases=phases,
        queries=sum(1 for s in trace.spans if s.phase == "db.query"),
        db_connects=connects,
        pool_timeouts=pool_timeouts,
        hops=hops,
        hop_wait_ns=hop_wait,
        view_cpu_ns=view_cpu,
    )
    return facts


def _answered(trace: Trace) -> int:
    """From the trace's start until its body was handed to the server: the client's share of
    the trace. The response's close (request_finished, and under ASGI a thread hop to it)
    runs after the client may already have the body."""
    whole = max(trace.duration, 0)
    root = trace.root
    if root is None:
        return whole
    bodies = [s.end for s in trace.spans if s.phase == "response.stream" and s.parent == root.id]
    return min(max(max(bodies) - root.start, 0), whole) if bodies else whole


def index_traces(traces: Iterable[Trace], run_id: str) -> dict[tuple[int, int], dict[str, Any]]:
    """The run's traces by (stage, seq), as facts; other runs' and untagged traces skipped."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    for trace in traces:
        tag = tag_of(trace.request)
        if tag is None or tag["run"] != run_id:
            continue
        facts = trace_facts(trace)
        facts["sent_ns"] = tag["sent_ns"]
        out[(tag["stage"], tag["seq"])] = facts
    return out


def join_stage(
    stage: dict[str, Any], traces: dict[tuple[int, int], dict[str, Any]]
) -> list[dict[str, Any]]:
    """One stage's measured requests, each with its trace's facts and the three-way split."""
    joined = []
    index = stage["index"]
    for seq, target, intended, sent, latency, status, error in stage["requests"]:
        facts = traces.get((index, seq))
        if facts is None or error is not None:
            continue  # no trace, or no answer (a timeout, a reset): nothing to split
        service = latency - (sent - intended)  # from the actual send
        before = facts["start_ns"] - sent
        row = dict(facts)
        row.pop("sent_ns", None)
        row.update(
            seq=seq,
            target=target,
            latency_ns=latency,
            before_ns=before,
            after_ns=service - before - facts.get("answered_ns", facts["inside_ns"]),
            client_status=status,
            error=error,
        )
        joined.append(row)
    return joined
