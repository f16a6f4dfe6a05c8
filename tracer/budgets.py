"""Budgets and baselines for traced tests: pure functions over finished traces.

A budget is what `@pytest.mark.djtrace(...)` asks of a test's requests: counts and shapes
(facts, always checked) and per-phase times (reported; failing only when enforced, since
wall-clock limits in shared CI are noise). A baseline is a test's recorded query shapes,
templates and cache operations, kept in a reviewable JSON file next to the test; a later
run fails on a query shape or an N+1 the baseline does not have.

Budgets apply to the requests a test made; a test that made none is judged on the ORM work
it did outside any request (`TraceSession.bare`). Transaction control (BEGIN, SAVEPOINT…)
is not counted as a query: test harnesses add it, the app did not ask for it.
"""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from djtrace import analysis
from djtrace.model import Span, Trace

_CONTROL = re.compile(
    r"^\s*(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE\s+SAVEPOINT|SET\s)", re.IGNORECASE
)


@dataclass(frozen=True)
class Budget:
    """What a test allows its requests (None: not checked)."""

    max_queries: int | None = None
    max_duplicates: int | None = None
    no_n_plus_one: bool = False
    no_queries_in_templates: bool = False
    max_templates: int | None = None
    max_cache_misses: int | None = None
    view_ms: float | None = None
    sql_ms: float | None = None
    total_ms: float | None = None

    @classmethod
    def from_marker(cls, kwargs: dict[str, Any]) -> Budget:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise ValueError(
                f"unknown djtrace budget {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        for name, value in kwargs.items():
            if name.startswith(("no_",)):
                if not isinstance(value, bool):
                    raise ValueError(f"djtrace budget {name} takes True or False, not {value!r}")
            elif not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ValueError(f"djtrace budget {name} takes a number >= 0, not {value!r}")
        return cls(**kwargs)

    @property
    def timed(self) -> bool:
        return any(v is not None for v in (self.view_ms, self.sql_ms, self.total_ms))


def judged(requests: list[Trace], bare: Trace | None) -> list[Trace]:
    """The traces a budget applies to: the requests, else the bare ORM work."""
    if requests:
        return requests
    return [bare] if bare is not None and bare.spans else []


def app_queries(trace: Trace) -> list[Span]:
    """The trace's queries less transaction control."""
    return [s for s in trace.queries if not _CONTROL.match(str(s.attrs.get("sql", "")))]


def _in_template(span: Span, by_id: dict[int, Span]) -> bool:
    parent = by_id.get(span.parent) if span.parent is not None else None
    while parent is not None:
        if parent.phase == "template":
            return True
        parent = by_id.get(parent.parent) if parent.parent is not None else None
    return False


@dataclass
class Violation:
    """One broken budget line: what, allowed, found, and the trace that shows it."""

    rule: str
    message: str
    trace: Trace | None = None
    findings: list[dict[str, Any]] = field(default_factory=list)


def count_violations(budget: Budget, traces: list[Trace]) -> list[Violation]:
    """The count and shape budgets the traces break (always enforced)."""
    out: list[Violation] = []
    queries = {id(t): app_queries(t) for t in traces}
    worst = max(traces, key=lambda t: len(queries[id(t)]), default=None)
    total = sum(len(q) for q in queries.values())
    if budget.max_queries is not None and total > budget.max_queries:
        out.append(
            Violation(
                "max_queries",
                f"{total} {'query' if total == 1 else 'queries'}, budget max_queries="
                f"{budget.max_queries}",
                worst,
            )
        )
    for trace in traces:
        found = analysis.findings(trace)
        dupes = [f for f in found if f["kind"] == "duplicate"]
        extra = sum(f["count"] - 1 for f in dupes)
        if budget.max_duplicates is not None and extra > budget.max_duplicates:
            out.append(
                Violation(
                    "max_duplicates",
                    f"{extra} duplicate queries, budget max_duplicates={budget.max_duplicates}",
                    trace,
                    dupes,
                )
            )
        n1 = [f for f in found if f["kind"] == "n+1"]
        if budget.no_n_plus_one and n1:
            patterns = "an N+1 pattern" if len(n1) == 1 else f"{len(n1)} N+1 patterns"
            out.append(Violation("no_n_plus_one", patterns, trace, n1))
        if budget.no_queries_in_templates:
            by_id = {s.id: s for s in trace.spans}
            inside = [s for s in queries[id(trace)] if _in_template(s, by_id)]
            if inside:
                sources = sorted({str(s.attrs.get("source") or "?") for s in inside})
                out.append(
                    Violation(
                        "no_queries_in_templates",
                        f"{len(inside)} queries ran while a template rendered"
                        f" (from {', '.join(sources)})",
                        trace,
                    )
                )
    templates = sum(1 for t in traces for s in t.spans if s.phase == "template")
    if budget.max_templates is not None and templates > budget.max_templates:
        out.append(
            Violation(
                "max_templates",
                f"{templates} templates rendered, budget max_templates={budget.max_templates}",
                traces[0] if traces else None,
            )
        )
    misses = sum(analysis.service_counts(t)["cache_misses"] for t in traces)
    if budget.max_cache_misses is not None and misses > budget.max_cache_misses:
        out.append(
            Violation(
                "max_cache_misses",
                f"{misses} cache misses, budget max_cache_misses={budget.max_cache_misses}",
                traces[0] if traces else None,
            )
        )
    return out


def phase_times(trace: Trace) -> dict[str, float]:
    """A request's view, SQL and total time in ms (view: the view span, SQL inside it)."""
    view = sum(max(s.duration, 0) for s in trace.spans if s.phase == "view")
    sql = sum(max(s.duration, 0) for s in trace.queries)
    return {"view_ms": view / 1e6, "sql_ms": sql / 1e6, "total_ms": max(trace.duration, 0) / 1e6}


@dataclass(frozen=True)
class TimeCheck:
    """One row of the budget table."""

    phase: str
    budget: float
    measured: float

    @property
    def over(self) -> bool:
        return self.measured > self.budget


def time_checks(budget: Budget, traces: list[Trace]) -> list[TimeCheck]:
    """Each timed budget against the slowest request's figure for it."""
    rows = []
    measured = [phase_times(t) for t in traces]
    for phase in ("view_ms", "sql_ms", "total_ms"):
        limit = getattr(budget, phase)
        if limit is not None:
            worst = max((m[phase] for m in measured), default=0.0)
            rows.append(TimeCheck(phase, float(limit), worst))
    return rows


# --- baselines ------------------------------------------------------------------------------

BASELINE_SUFFIX = ".djtrace.json"
BASELINE_VERSION = 1


def baseline_path(test_file: Path) -> Path:
    """`tests/test_books.py` → `tests/test_books.djtrace.json`."""
    return test_file.with_name(test_file.stem + BASELINE_SUFFIX)


def _query_line(span: Span, by_id: dict[int, Span]) -> str:
    parent = by_id.get(span.parent) if span.parent is not None else None
    while parent is not None and parent.phase in ("db.transaction", "db.query"):
        parent = by_id.get(parent.parent) if parent.parent is not None else None
    where = "request" if parent is None else analysis.category(parent.phase)
    if parent is not None and parent.phase == "middleware":
        where = f"middleware {parent.name.rpartition('.')[2]}"
    # The readable shape (identifiers unquoted, a long column list elided): what a reviewer
    # reads in the diff; a new table, join, filter or ordering still shows.
    return f"{where} | {analysis.short_sql(analysis.fingerprint(str(span.attrs.get('sql', ''))))}"


def shape(traces: list[Trace]) -> list[dict[str, Any]]:
    """What a baseline keeps of each request: query shapes by phase, templates, cache ops."""
    out = []
    for trace in traces:
        by_id = {s.id: s for s in trace.spans}
        req = trace.request
        label = f"{req.get('method', '')} {req.get('path', '')}".strip() or "outside a request"
        cache = []
        for s in trace.spans:
            if s.phase == "cache":
                hit = s.attrs.get("hit")
                outcome = "" if hit is None else (" hit" if hit else " miss")
                cache.append(f"{s.name} {s.attrs.get('key', '')}{outcome}".strip())
        out.append(
            {
                "request": label,
                "queries": [_query_line(s, by_id) for s in app_queries(trace)],
                "templates": [s.name for s in trace.spans if s.phase == "template"],
                "cache": cache,
                "n_plus_one": sorted(
                    analysis.short_sql(f["fingerprint"])
                    for f in analysis.findings(trace)
                    if f["kind"] == "n+1"
                ),
            }
        )
    return out


class BaselineError(ValueError):
    """A baseline file that cannot be read."""


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise BaselineError(f"cannot read the djtrace baseline {path}: {exc}") from None
    if not isinstance(data, dict) or data.get("version") != BASELINE_VERSION:
        raise BaselineError(
            f"{path} is not a djtrace baseline of version {BASELINE_VERSION};"
            " re-record it with --djtrace-record"
        )
    tests = data.get("tests")
    return tests if isinstance(tests, dict) else {}


def save_baseline(path: Path, tests: dict[str, Any]) -> None:
    """Write (sorted, indented, one list item a line: a reviewable diff in git)."""
    document = {"version": BASELINE_VERSION, "tests": dict(sorted(tests.items()))}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _lines(requests: list[dict[str, Any]]) -> list[str]:
    lines = []
    for req in requests:
        lines.append(f"request {req['request']}")
        lines += [f"  query  {q}" for q in req["queries"]]
        lines += [f"  template {t}" for t in req["templates"]]
        lines += [f"  cache  {c}" for c in req["cache"]]
    return lines


def compare(recorded: list[dict[str, Any]], now: list[dict[str, Any]]) -> tuple[list[str], str]:
    """What in `now` breaks the recorded baseline (new query shapes, new N+1s), and the diff."""
    problems = []
    before = Counter(q for r in recorded for q in r.get("queries", []))
    after = Counter(q for r in now for q in r["queries"])
    for query in after:
        if query not in before:
            problems.append(f"new query shape: {query}")
    old_n1 = {f for r in recorded for f in r.get("n_plus_one", [])}
    for fingerprint in sorted({f for r in now for f in r["n_plus_one"]} - old_n1):
        problems.append(f"new N+1: {fingerprint}")
    diff = "\n".join(
        difflib.unified_diff(
            _lines(recorded), _lines(now), "recorded baseline", "this run", lineterm="", n=2
        )
    )
    return problems, diff
