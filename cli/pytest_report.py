"""What djtrace's pytest plugin prints: a test's request trees, the time-budget table and
the session's slowest requests and worst findings, as plain text for pytest's report."""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from djtrace.cli.render import ms, render_trace
from djtrace.model import Trace
from rich.console import Console, RenderableType
from rich.table import Table


def as_text(renderable: RenderableType, width: int = 120) -> str:
    console = Console(file=io.StringIO(), width=width, color_system=None, record=True)
    console.print(renderable)
    return console.export_text().rstrip() + "\n"


def traces_text(traces: list[Trace], width: int = 120, hide_under_ms: float | None = None) -> str:
    """Each trace as djtrace's tree with its findings and phase table."""
    options = {} if hide_under_ms is None else {"hide_under_ms": hide_under_ms}
    return "\n".join(as_text(render_trace(t, **options), width) for t in traces)


@dataclass(frozen=True)
class TimeRow:
    test: str
    phase: str
    budget_ms: float
    measured_ms: float
    enforced: bool

    @property
    def over(self) -> bool:
        return self.measured_ms > self.budget_ms


def budget_table(rows: Iterable[TimeRow], width: int = 120) -> str:
    table = Table(title="djtrace time budgets (the slowest request of each test)", box=None)
    for column, justify in (
        ("test", "left"),
        ("phase", "left"),
        ("budget", "right"),
        ("measured", "right"),
        ("", "left"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        verdict = "ok" if not row.over else "OVER" if row.enforced else "over (not enforced)"
        table.add_row(
            row.test,
            row.phase.removesuffix("_ms"),
            f"{row.budget_ms:g} ms",
            f"{row.measured_ms:.1f} ms",
            verdict,
        )
    return as_text(table, width)


def slowest_text(requests: list[tuple[Trace, str]], limit: int, width: int = 120) -> str:
    """The slowest `limit` requests of the session and the costliest findings."""
    slow = sorted(requests, key=lambda pair: -pair[0].duration)[:limit]
    table = Table(title=f"djtrace: the {len(slow)} slowest requests", box=None)
    for column in ("time", "request", "status", "queries", "test"):
        table.add_column(column, justify="right" if column in ("time", "queries") else "left")
    for trace, test in slow:
        req = trace.request
        table.add_row(
            ms(trace.duration),
            f"{req.get('method', '')} {req.get('path', '')}",
            str(req.get("status", "")),
            str(len(trace.queries)),
            test,
        )
    found: list[tuple[dict[str, Any], str]] = [
        (f, test)
        for trace, test in requests
        for f in (trace.findings if trace.findings is not None else [])
        if f["kind"] != "error"
    ]
    found.sort(key=lambda pair: -pair[0]["duration"])
    worst = Table(title="djtrace: the worst findings", box=None)
    for column in ("cost", "finding", "test"):
        worst.add_column(column, justify="right" if column == "cost" else "left")
    for finding, test in found[:limit]:
        worst.add_row(ms(finding["duration"]), f"{finding['kind']}: {finding['message']}", test)
    text = as_text(table, width)
    return text + ("\n" + as_text(worst, width) if found else "no N+1 or duplicate findings\n")
