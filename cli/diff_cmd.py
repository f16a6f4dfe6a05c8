"""`djtrace diff A B`: how one request differs from another, phase by phase and query by query."""

from __future__ import annotations

from typing import Annotated

import typer
from djtrace import analysis
from djtrace.cli.render import ms, plural
from djtrace.cli.store_access import StoreOption, finish, load_trace
from djtrace.compare import TraceDiff, compare
from djtrace.model import Trace
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

EXAMPLES = """
[bold]Examples[/]

  djtrace diff 3f9a2c 81be07                    [dim]# two ids (or prefixes) from `djtrace list`[/]
  djtrace diff before.json latest               [dim]# a saved trace against the newest capture[/]
  djtrace request /books/ --format json > a.json
  djtrace request /books/fast/ --format json > b.json
  djtrace diff a.json b.json                    [dim]# the N+1 page against the fixed one[/]
"""


def _describe(label: str, trace: Trace) -> Text:
    req = trace.request
    queries = sum(1 for s in trace.spans if s.phase == "db.query")
    text = Text.assemble(
        (f"{label}  ", "bold"),
        (f"{req.get('method', '')} {req.get('path', '')}", "bold"),
        ("?" + req["query"] if req.get("query") else "", "bold"),
        f"  →  {req.get('status') or 'no response'}  {ms(trace.duration)}  "
        f"{plural(queries, 'query', 'queries')}",
    )
    if req.get("route") is not None:
        text.append(f"  route '{req['route']}'", "dim")
    text.append(f"  ({trace.id})", "dim")
    return text


def _signed_ms(ns: int) -> str:
    """+1.20 ms, −0.35 ms; ±0 for a change too small to show (never "−0.00 ms")."""
    shown = ms(abs(ns))
    if shown == ms(0):
        return "±0"
    return ("+" if ns > 0 else "−") + shown


def _delta_style(ns: int, whole: int) -> str:
    if abs(ns) < max(whole // 20, 50_000):  # under 5% (or 0.05 ms): noise
        return "dim"
    return "red" if ns > 0 else "green"


def phase_table(diff: TraceDiff, a_label: str = "A", b_label: str = "B") -> Table:
    table = Table(title="phase by phase", title_justify="left", box=None, pad_edge=False)
    table.add_column("phase")
    table.add_column(a_label, justify="right")
    table.add_column(b_label, justify="right")
    table.add_column("change", justify="right")
    whole = max(diff.a.duration, 1)
    for row in diff.phases:
        if row.a == 0 and row.b == 0:
            continue
        change = Text(_signed_ms(row.delta), _delta_style(row.delta, whole))
        if row.a > 0 and row.delta and row.name != "unaccounted":
            share = row.delta / row.a
            if share >= 9.5:
                change.append(f" ×{row.b / row.a:.0f}", "dim")
            elif round(100 * share) and change.plain != "±0":
                change.append(f" {100 * share:+.0f}%".replace("-", "−"), "dim")
        name = Text(row.name, "bold") if row.name == "total" else row.name
        table.add_row(name, ms(row.a), ms(row.b), change)
    return table


def query_text(diff: TraceDiff) -> Text:
    a_count, b_count = diff.query_counts
    text = Text.assemble(("queries ", "bold"), f"{a_count} → {b_count}")
    if b_count != a_count:
        text.append(f"  ({b_count - a_count:+d})", "green" if b_count < a_count else "bold red")
    for q in diff.removed:
        text.append("\n  − ", "green")
        text.append(f"{-q.delta} × ", "bold green")
        text.append(analysis.short_sql(q.fingerprint)[:140])
        text.append(f"  ({q.a_count} → {q.b_count})", "dim")
    for q in diff.added:
        text.append("\n  + ", "red")
        text.append(f"{q.delta} × ", "bold red")
        text.append(analysis.short_sql(q.fingerprint)[:140])
        text.append(f"  ({q.a_count} → {q.b_count})", "dim")
        if q.source:
            text.append(f" — {q.source.rpartition('/')[2]}", "dim")
    return text


def verdict(diff: TraceDiff) -> Text:
    if diff.identical:
        return Text("no change: same status, route, queries and timings", "bold green")
    parts = []
    if diff.status_changed:
        parts.append(f"status {diff.a.request.get('status')} → {diff.b.request.get('status')}")
    if diff.route_changed:
        parts.append(f"route {diff.a.request.get('route')!r} → {diff.b.request.get('route')!r}")
    if diff.added or diff.removed:
        a_count, b_count = diff.query_counts
        shapes = []
        for word, found in (("fewer", diff.removed), ("more", diff.added)):
            if found:
                shapes.append(f"{word} queries of {len(found)} shape{'s' * (len(found) > 1)}")
        parts.append(f"{', '.join(shapes)} ({a_count} → {b_count} queries)")
    if not parts:
        return Text(
            "no change in status, route or queries; only timings differ "
            f"({_signed_ms(diff.b.duration - diff.a.duration)} total)",
            "green",
        )
    return Text("changed: " + "; ".join(parts), "bold yellow")


def render_diff(diff: TraceDiff, a_label: str = "A", b_label: str = "B") -> RenderableType:
    width = max(len(a_label), len(b_label))
    parts: list[RenderableType] = [
        _describe(a_label.ljust(width), diff.a),
        _describe(b_label.ljust(width), diff.b),
        Text(),
        phase_table(diff, a_label, b_label),
        Text(),
        query_text(diff),
    ]
    if diff.fixed or diff.new:
        findings = Text()
        for item in diff.fixed:
            findings.append("\n  gone: ", "green")
            findings.append(item)
        for item in diff.new:
            findings.append("\n  new:  ", "red")
            findings.append(item)
        parts.append(Text.assemble(("findings", "bold"), findings))
    parts += [Text(), verdict(diff)]
    return Group(*parts)


def diff(
    a: Annotated[
        str, typer.Argument(metavar="A", help="Trace id/prefix, latest, slowest, or a file.")
    ],
    b: Annotated[str, typer.Argument(metavar="B", help="The trace to compare with A.")],
    store: StoreOption = None,
) -> None:
    """Compare two traces: phase-by-phase time and queries added or removed (by shape)."""
    first = load_trace(a, store)
    second = load_trace(b, store)
    Console().print(render_diff(compare(first.trace, second.trace)))
    finish(first.damaged or second.damaged)


diff.__doc__ = (diff.__doc__ or "") + "\n\n" + EXAMPLES
