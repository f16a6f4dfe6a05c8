"""Small readers over a recorded trace, shared by the tests."""

from __future__ import annotations

import io

from djtrace import Span, Trace
from rich.console import Console


def only(trace: Trace, phase: str) -> list[Span]:
    return [s for s in trace.spans if s.phase == phase]


def one(trace: Trace, phase: str) -> Span:
    spans = only(trace, phase)
    assert len(spans) == 1, f"expected one {phase} span, got {spans}"
    return spans[0]


def children(trace: Trace, span: Span) -> list[Span]:
    return sorted((s for s in trace.spans if s.parent == span.id), key=lambda s: s.start)


def parent_past_hops(trace: Trace, span: Span) -> int | None:
    """The id of the span's nearest ancestor that is not a thread hop (`async.hop`)."""
    by_id = {s.id: s for s in trace.spans}
    parent = span.parent
    while parent is not None and by_id[parent].phase == "async.hop":
        parent = by_id[parent].parent
    return parent


def ancestors(trace: Trace, span: Span) -> list[Span]:
    by_id = {s.id: s for s in trace.spans}
    out = []
    while span.parent is not None:
        span = by_id[span.parent]
        out.append(span)
    return out


def rendered(renderable: object, width: int = 160) -> str:
    """What a user's terminal would show, as plain text."""
    console = Console(record=True, width=width, color_system=None, file=io.StringIO())
    console.print(renderable)
    return console.export_text()
