"""Per-stage and whole-run analysis of a load run: pure functions over plain data.

A stage's analysis reads the engine's result for it and its joined requests (lab/join.py);
the run's analysis reads the stages': the USL fit, the knee, what grew, the one-line
capacity answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from djtrace.aggregate import percentile
from djtrace.analysis import CATEGORIES
from djtrace.lab import usl
from djtrace.lab.join import HOPS, POOL_WAIT

BEFORE = "before Django"
INSIDE = "inside Django"
AFTER = "after (body to client)"
BUSY = 0.8  # a lane busier than this share of the stage is taken as saturated
KNEE_SHARE = 0.85  # the knee: the first stage reaching this share of peak throughput


def spread(values: Iterable[int]) -> dict[str, int]:
    ordered = sorted(values)
    if not ordered:
        return {"p50": 0, "p95": 0, "mean": 0, "max": 0}
    return {
        "p50": percentile(ordered, 50),
        "p95": percentile(ordered, 95),
        "mean": sum(ordered) // len(ordered),
        "max": ordered[-1],
    }


def _max_overlap(intervals: list[tuple[int, int]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def stage_analysis(stage: dict[str, Any], joined: list[dict[str, Any]]) -> dict[str, Any]:
    """What the server did during one stage, from the requests joined to their traces."""
    count = stage["count"]
    out: dict[str, Any] = {
        "joined": len(joined),
        "join_share": len(joined) / count if count else 0.0,
        "full_traces": sum(1 for r in joined if r.get("sampled", True)),
    }
    if not joined:
        return out
    out["split"] = {
        BEFORE: spread(r["before_ns"] for r in joined),
        # Inside: until the body was handed over (the close after it is not the client's wait).
        INSIDE: spread(r.get("answered_ns", r["inside_ns"]) for r in joined),
        AFTER: spread(r["after_ns"] for r in joined),
    }
    full = [r for r in joined if r.get("phases") is not None]
    names: set[str] = set()
    for r in full:
        names.update(r["phases"])
    order = {name: i for i, name in enumerate(CATEGORIES)}
    out["phases"] = {
        name: spread(r["phases"].get(name, 0) for r in full)
        for name in sorted(names, key=lambda n: (order.get(n, len(order)), n))
    }
    with_cpu = [r for r in joined if isinstance(r.get("cpu_ns"), int)]
    if with_cpu:
        cpu = sum(r["cpu_ns"] for r in with_cpu) / len(with_cpu)
        wall = sum(r["inside_ns"] for r in with_cpu) / len(with_cpu)
        out["cpu"] = {
            "mean_cpu_ns": int(cpu),
            "mean_off_cpu_ns": int(max(wall - cpu, 0)),
            "cpu_share": cpu / wall if wall else 0.0,
        }
        views = [r for r in with_cpu if isinstance(r.get("view_cpu_ns"), int)]
        if views:
            out["cpu"]["mean_view_cpu_ns"] = sum(r["view_cpu_ns"] for r in views) // len(views)
    window = max(stage["window_end_ns"] - stage["window_start_ns"], 1)
    lanes: dict[tuple[Any, Any], dict[str, Any]] = {}
    for r in joined:
        lane = lanes.setdefault(
            (r.get("pid"), r.get("thread_id")),
            {
                "pid": r.get("pid"),
                "thread_id": r.get("thread_id"),
                "thread": r.get("thread"),
                "requests": 0,
                "busy_ns": 0,
            },
        )
        lane["requests"] += 1
        lane["busy_ns"] += r["inside_ns"]
    lane_list = sorted(lanes.values(), key=lambda x: (str(x["pid"]), str(x["thread_id"])))
    for lane in lane_list:
        lane["busy_share"] = min(lane.pop("busy_ns") / window, 1.0)
    out["lanes"] = lane_list
    out["busy_mean"] = sum(x["busy_share"] for x in lane_list) / len(lane_list)
    out["processes"] = len({x["pid"] for x in lane_list})
    # Under ASGI a lane is an event loop: its requests overlap, "busy" is not one at a time.
    out["async_share"] = sum(1 for r in joined if r.get("mode") == "async") / len(joined)
    if full:
        db_users = [r for r in full if r.get("queries")]
        out["db"] = {
            "queries_per_request": sum(r.get("queries", 0) for r in full) / len(full),
            "connects_per_request": sum(r.get("db_connects", 0) for r in full) / len(full),
            "pool_wait": spread(r["phases"].get(POOL_WAIT, 0) for r in full),
            "pool_timeouts": sum(r.get("pool_timeouts", 0) for r in full),
            # Each thread holds its own connection while its request runs.
            "most_at_once": _max_overlap(
                [(r["start_ns"], r["start_ns"] + r["inside_ns"]) for r in db_users]
            ),
        }
        hops = [r.get("hops", 0) for r in full]
        if any(hops):
            out["hops"] = {
                "per_request": sum(hops) / len(full),
                "time": spread(r["phases"].get(HOPS, 0) for r in full),
                "wait": spread(r.get("hop_wait_ns", 0) for r in full),
            }
    latency = stage["latency"]
    if latency.get("mean"):
        in_flight = stage["throughput"] * latency["mean"] / 1e9
        expected = stage["concurrency"] if stage["kind"] == "closed" else None
        out["littles_law"] = {
            "in_flight": in_flight,
            "expected": expected,
            "ratio": in_flight / expected if expected else None,
        }
    return out


def _mean(split: dict[str, Any], name: str) -> int:
    return int(split.get(name, {}).get("mean", 0))


def components(stage: dict[str, Any]) -> dict[str, int]:
    """Mean ns per request of each part of the latency: before, each phase, after."""
    analysis = stage.get("analysis") or {}
    split = analysis.get("split") or {}
    out = {BEFORE: _mean(split, BEFORE), AFTER: _mean(split, AFTER)}
    for name, values in (analysis.get("phases") or {}).items():
        if name in ("unaccounted",):
            continue
        out[name] = int(values.get("mean", 0))
    return out


def growth(first: dict[str, Any], last: dict[str, Any]) -> list[tuple[str, int]]:
    """Per-request mean growth of each component between two stages, largest first."""
    a, b = components(first), components(last)
    rows = [(name, b.get(name, 0) - a.get(name, 0)) for name in set(a) | set(b)]
    return sorted(rows, key=lambda row: row[1], reverse=True)


def _off_cpu_growth(a: dict[str, Any], b: dict[str, Any]) -> str:
    """Why the busy threads were busy, when their wall time grew and their CPU time did not."""
    cpu_a, cpu_b = a.get("cpu") or {}, b.get("cpu") or {}
    if not cpu_a or not cpu_b:
        return ""
    wall_a, wall_b = _mean(a.get("split") or {}, INSIDE), _mean(b.get("split") or {}, INSIDE)
    grew_wall = wall_b - wall_a
    grew_cpu = cpu_b["mean_cpu_ns"] - cpu_a["mean_cpu_ns"]
    if grew_wall > max(0.2 * wall_a, 5_000_000) and grew_cpu < 0.3 * grew_wall:
        return (
            f"; inside Django each took +{_ms(grew_wall)} with no more CPU "
            f"({_ms(cpu_b['mean_cpu_ns'])} of {_ms(wall_b)}): its threads waited for the GIL"
        )
    return ""


def _lane_keys(stage: dict[str, Any]) -> set[tuple[Any, Any]]:
    lanes = (stage.get("analysis") or {}).get("lanes") or []
    return {(x["pid"], x["thread_id"]) for x in lanes}


def _idle_lanes(stages: list[dict[str, Any]], last: dict[str, Any]) -> str:
    """A lane that served in some stage but not in the last one: the load went elsewhere."""
    seen: set[tuple[Any, Any]] = set()
    for stage in stages:
        seen |= _lane_keys(stage)
    used = _lane_keys(last)
    if not seen or len(used) >= len(seen):
        return ""
    processes = {pid for pid, _ in seen}
    busy_processes = {pid for pid, _ in used}
    text = f"; only {len(used)} of the {len(seen)} worker threads seen served at the end"
    if len(busy_processes) < len(processes):
        text += (
            f" ({len(busy_processes)} of {len(processes)} processes: keep-alive connections "
            "stuck to one worker)"
        )
    return text


def _why(
    name: str, first: dict[str, Any], last: dict[str, Any], stages: list[dict[str, Any]]
) -> str:
    """A few words on what the growing part is waiting for."""
    return _why_part(name, first, last) + (_idle_lanes(stages, last) if name == BEFORE else "")


def _why_part(name: str, first: dict[str, Any], last: dict[str, Any]) -> str:
    a, b = first.get("analysis") or {}, last.get("analysis") or {}
    lanes = len(b.get("lanes") or [])
    busy = b.get("busy_mean", 0.0)
    cpu_a, cpu_b = a.get("cpu") or {}, b.get("cpu") or {}
    if name == BEFORE:
        if b.get("async_share", 0) > 0.5:
            loops = b.get("processes", 1)
            return (
                f"{'each of the ' + str(loops) + ' event loops' if loops > 1 else 'the event loop'}"
                " had more ready work than it could run (an async worker runs one request's "
                "Python at a time)"
            )
        if busy >= BUSY:
            # A lane is a process's thread: as many processes as lanes, one thread each.
            noun = "worker processes" if b.get("processes", 1) == lanes else "worker threads"
            who = {1: "the one worker was", 2: f"both {noun} were"}.get(
                lanes, f"all {lanes} {noun} were"
            )
            why = f"{who} busy (waiting for a worker)"
            return why + _off_cpu_growth(a, b)
        off_cpu = _off_cpu_growth(a, b)
        if off_cpu:
            return f"worker threads were {busy:.0%} busy" + off_cpu
        if cpu_b.get("cpu_share", 0) >= 0.5:
            return (
                f"worker threads were free ({busy:.0%} busy) but their requests ran Python: "
                "waiting for the GIL"
            )
        return f"worker threads were {busy:.0%} busy: waiting in the server's accept queue"
    if name == POOL_WAIT:
        return "waiting for a pooled database connection: the pool is smaller than the threads"
    if name == HOPS:
        return "waiting for a thread to run sync code under ASGI (sync_to_async hops)"
    if name == "SQL":
        return "the database answered more slowly under load"
    if cpu_a and cpu_b:
        grew_wall = _mean(b.get("split") or {}, INSIDE) - _mean(a.get("split") or {}, INSIDE)
        grew_cpu = cpu_b.get("mean_cpu_ns", 0) - cpu_a.get("mean_cpu_ns", 0)
        if grew_wall > 0 and grew_cpu < 0.3 * grew_wall:
            if cpu_a.get("cpu_share", 0) >= 0.5:
                return "its CPU time did not grow: waiting for the GIL held by other threads"
            return "its CPU time did not grow: waiting on I/O"
    return "it took longer per request"


def knee_index(closed: list[dict[str, Any]]) -> int | None:
    """Index (into `closed`, sorted by concurrency) of the first stage at KNEE_SHARE of peak."""
    if not closed:
        return None
    peak = max(s["throughput"] for s in closed)
    for i, s in enumerate(closed):
        if s["throughput"] >= KNEE_SHARE * peak:
            return i
    return None


def _ms(ns: float) -> str:
    ms = ns / 1e6
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def _failed(stage: dict[str, Any]) -> str:
    """A stage within the SLO by its p99 but with failures: how many, of what kind."""
    failed = sum(stage["errors"].values())
    kinds = ", ".join(f"{kind} ×{n}" for kind, n in stage["errors"].items())
    return f"{failed} of {stage['count']} requests failed ({kinds})"


def sweep_analysis(
    stages: list[dict[str, Any]], slo_ms: float, stopped_early: bool = False
) -> dict[str, Any]:
    """The run's capacity: USL fit, knee, peak, what grew, and the one-line answer
    (`stopped_early`: Ctrl-C ended the run, so fewer stages were measured than planned)."""
    slo_ns = slo_ms * 1e6
    closed = sorted(
        (s for s in stages if s["kind"] == "closed" and s["count"]),
        key=lambda s: s["concurrency"],
    )
    opened = sorted(
        (s for s in stages if s["kind"] == "open" and s["count"]), key=lambda s: s["rate"]
    )
    out: dict[str, Any] = {"slo_ms": slo_ms}
    parts: list[str] = []
    if closed and all(sum(s["errors"].values()) >= s["count"] for s in closed):
        # No stage had a single answer: throughput, a knee or growth would be of failures.
        parts.append(
            f"even at {closed[0]['concurrency']} concurrent {_failed(closed[0])}; every request "
            "of every stage failed, so there is no capacity to report"
        )
        out.update(knee_stage=None, peak_stage=None, within_slo_concurrency=None)
        closed = []
    if closed:
        fitted = usl.fit([(s["concurrency"], s["throughput"]) for s in closed])
        out["usl"] = fitted.to_dict() if fitted else None
        knee = knee_index(closed)
        peak = max(closed, key=lambda s: s["throughput"])
        out["knee_stage"] = closed[knee]["index"] if knee is not None else None
        out["peak_stage"] = peak["index"]
        within = None
        for s in closed:
            if s["latency"]["p99"] <= slo_ns and not s["errors"]:
                within = s
            else:
                break
        out["within_slo_concurrency"] = within["concurrency"] if within else None
        if within is None and closed[0]["latency"]["p99"] <= slo_ns:
            parts.append(f"even at {closed[0]['concurrency']} concurrent {_failed(closed[0])}")
        elif within is None:
            parts.append(
                f"even at {closed[0]['concurrency']} concurrent p99 is "
                f"{_ms(closed[0]['latency']['p99'])}, over the {slo_ms:g} ms SLO"
            )
        elif within is closed[-1]:
            n = within["concurrency"]
            parts.append(
                f"up to {n} concurrent request{'s' if n != 1 else ''} (all stages) p99 stays "
                f"under {slo_ms:g} ms"
            )
        else:
            n = within["concurrency"]
            parts.append(
                f"up to {n} concurrent request{'s' if n != 1 else ''} p99 stays under {slo_ms:g} ms"
            )
            broke = closed[closed.index(within) + 1]
            if broke["latency"]["p99"] <= slo_ns:  # what ended it was failures, not latency
                parts[-1] += (
                    f" and no request fails (at {broke['concurrency']} concurrent {_failed(broke)})"
                )
        knee_stage = closed[knee] if knee is not None else peak
        rising = False
        if (
            knee_stage is closed[-1]
            and len(closed) > 1
            and closed[-1]["concurrency"] > closed[-2]["concurrency"]
        ):
            # Rising: the last step of load still bought a quarter of its linear gain.
            prev, last = closed[-2], closed[-1]
            gain = last["throughput"] / prev["throughput"] - 1 if prev["throughput"] else 0
            rising = gain >= 0.25 * (last["concurrency"] / prev["concurrency"] - 1)
        out["still_rising"] = rising
        if rising:
            out["knee_stage"] = None
        if len(closed) == 1:
            parts.append(
                f"throughput {peak['throughput']:.0f} req/s at {peak['concurrency']} concurrent "
                + (
                    "(the only stage measured before the run was stopped)"
                    if stopped_early
                    else "(one stage: sweep several, e.g. -c 1,2,4,8, to find the knee)"
                )
            )
        elif rising:
            parts.append(
                f"throughput {peak['throughput']:.0f} req/s at {peak['concurrency']} concurrent, "
                "still rising (sweep higher to find the knee)"
            )
        elif closed[-1]["throughput"] < 0.8 * peak["throughput"]:
            parts.append(
                f"throughput peaks at {peak['throughput']:.0f} req/s at {peak['concurrency']} "
                f"concurrent and falls to {closed[-1]['throughput']:.0f} at "
                f"{closed[-1]['concurrency']}"
            )
        else:
            parts.append(
                f"throughput levels off at {peak['throughput']:.0f} req/s from "
                f"{knee_stage['concurrency']} concurrent"
            )
        if fitted is not None:
            n_star = fitted.peak_concurrency
            where = f"peak at N* ≈ {n_star:.0f}" if n_star is not None else "no peak"
            parts[-1] += (
                f" (USL σ {fitted.sigma:.2f}, κ {fitted.kappa:.4f}: {where}; fit {fitted.quality})"
            )
        # Growth is load's doing only between different loads (stages of another tool's
        # traffic at one concurrency may differ by their pages, not by load).
        if (
            len(closed) >= 2
            and closed[-1]["concurrency"] > closed[0]["concurrency"]
            and closed[0].get("analysis", {}).get("split")
        ):
            first, last = closed[0], closed[-1]
            ranked = growth(first, last)
            out["growth"] = {
                "from_stage": first["index"],
                "to_stage": last["index"],
                "by_component": dict(ranked),
            }
            # Growth worth naming: a fair share of what one request took at the first stage.
            enough = max(2_000_000, 0.25 * (first["latency"]["mean"] or 0))
            if ranked and ranked[0][1] >= enough:
                name, grew = ranked[0]
                why = _why(name, first, last, closed)
                out["grew_most"] = {"component": name, "ns": grew, "why": why}
                parts.append(
                    f"from {first['concurrency']} to {last['concurrency']} concurrent, time "
                    f"{name} grew most (+{_ms(grew)} a request): {why}"
                )
            elif ranked:
                parts.append(
                    f"from {first['concurrency']} to {last['concurrency']} concurrent no part "
                    f"of a request grew much (most: {ranked[0][0]}, +{_ms(max(ranked[0][1], 0))})"
                )
            after = _mean((first.get("analysis") or {}).get("split") or {}, AFTER)
            if after > 10_000_000 and after > 0.5 * (first["latency"]["mean"] or 0):
                parts.append(
                    f"most of each request's time is after Django ({_ms(after)}, the body's way "
                    "back: often a server writing it in small pieces without TCP_NODELAY, "
                    "waiting on delayed ACKs)"
                )
    if opened:
        ok = [s for s in opened if s["latency"]["p99"] <= slo_ns and not s["errors"]]
        out["within_slo_rate"] = ok[-1]["rate"] if ok else None
        if ok:
            parts.append(
                f"at up to {ok[-1]['rate']:g} req/s arriving, p99 stays under {slo_ms:g} ms"
            )
        elif opened[0]["latency"]["p99"] <= slo_ns:
            parts.append(f"at {opened[0]['rate']:g} req/s arriving {_failed(opened[0])}")
        else:
            parts.append(
                f"at {opened[0]['rate']:g} req/s arriving p99 is already "
                f"{_ms(opened[0]['latency']['p99'])}"
            )
        behind = [s["rate"] for s in opened if not s.get("schedule_kept", True)]
        if behind:
            parts.append(
                "the generator could not keep its schedule at "
                + ", ".join(f"{r:g}/s" for r in behind)
            )
    answer = "; ".join(parts)
    out["answer"] = answer[:1].upper() + answer[1:] + "." if answer else "No request completed."
    return out
