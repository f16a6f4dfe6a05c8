"""Terminal charts of a load run, drawn with rich: throughput and p95/p99 per stage, and each
stage's mean request split by part (before Django, each phase, after) — the growth of
each phase across the stages at a glance. Legible at 100 columns; letters without colour."""

from __future__ import annotations

from typing import Any

from djtrace.lab.analysis import AFTER, BEFORE, components
from djtrace.lab.document import stage_label
from rich.console import Group, RenderableType
from rich.text import Text

#: Part → (style, letter when there is no colour). Parts not named here ("other") share the
#: rest; the middleware's two halves share a colour ("m" before, "M" after).
PART_STYLES: dict[str, tuple[str, str]] = {
    BEFORE: ("yellow", "w"),
    "middleware (before)": ("blue", "m"),
    "URL resolve": ("bright_black", "u"),
    "view": ("green", "v"),
    "SQL": ("magenta", "s"),
    "templates": ("cyan", "t"),
    "pool checkout wait": ("red", "p"),
    "thread hops": ("bright_red", "h"),
    "cache": ("bright_cyan", "k"),
    "sessions": ("bright_green", "n"),
    "signals": ("bright_yellow", "g"),
    "connection open": ("bright_magenta", "c"),
    "error response": ("dark_orange", "e"),
    "middleware (after)": ("blue", "M"),
    "response": ("bright_blue", "r"),
    AFTER: ("white", "a"),
}
OTHER = ("bright_black", "o")
LABEL = 14


def _label(stage: dict[str, Any]) -> str:
    return stage_label(stage)[: LABEL - 1].ljust(LABEL)


def capacity_chart(run: dict[str, Any], width: int, letters: bool) -> list[Text]:
    """Per stage: a throughput bar, then p95 and p99 as a bar with a tick at p95."""
    stages = [s for s in run["stages"] if s["count"]]
    if not stages:
        return []
    room = max(8, (width - LABEL - 28) // 2)
    top_x = max(s["throughput"] for s in stages) or 1
    top_p = max(s["latency"]["p99"] for s in stages) or 1
    knee = (run.get("summary") or {}).get("knee_stage")
    lines = [
        Text.assemble(
            (" " * LABEL, ""),
            ("throughput (req/s)".ljust(room + 8), "bold"),
            ("p95 ╎ p99 (ms)", "bold"),
        )
    ]
    for stage in stages:
        x = stage["throughput"]
        p95, p99 = stage["latency"]["p95"], stage["latency"]["p99"]
        line = Text(_label(stage), "bold" if stage["index"] == knee else "")
        bar = max(1, round(room * x / top_x))
        line.append(("#" if letters else "█") * bar, "cyan")
        line.append(f" {x:.0f}".ljust(room - bar + 8))
        upto95 = max(1, round(room * p95 / top_p))
        upto99 = max(upto95, round(room * p99 / top_p))
        line.append(("=" if letters else "█") * upto95, "magenta")
        line.append(("-" if letters else "▒") * (upto99 - upto95), "magenta")
        line.append(f" {p95 / 1e6:.0f} ╎ {p99 / 1e6:.0f}")
        if stage["index"] == knee:
            line.append("  ◀ knee", "bold yellow")
        lines.append(line)
    return lines


def _in_order(parts: dict[str, int]) -> dict[str, int]:
    """Before Django first, after it last, the phases between (as the request ran)."""
    middle = {k: v for k, v in parts.items() if k not in (BEFORE, AFTER) and v > 0}
    ends = {k: parts.get(k, 0) for k in (BEFORE, AFTER)}
    return {
        **({BEFORE: ends[BEFORE]} if ends[BEFORE] > 0 else {}),
        **middle,
        **({AFTER: ends[AFTER]} if ends[AFTER] > 0 else {}),
    }


def growth_chart(run: dict[str, Any], width: int, letters: bool) -> list[Text]:
    """Per stage: its mean request as a stacked bar of parts, scaled to the slowest stage."""
    stages = [s for s in run["stages"] if (s.get("analysis") or {}).get("split")]
    if not stages:
        return []
    parts = [(s, _in_order(components(s))) for s in stages]
    total = max(sum(p.values()) for _, p in parts) or 1
    room = max(10, width - LABEL - 10)
    lines = [Text("mean time per request, by part (ms)", "bold")]
    seen: list[str] = []
    for stage, split in parts:
        line = Text(_label(stage))
        used = 0
        for name, ns in split.items():
            cells = round(room * (used + ns) / total) - round(room * used / total)
            used += ns
            style, letter = PART_STYLES.get(name, OTHER)
            if cells > 0:
                line.append((letter if letters else "█") * cells, style)
                if name not in seen:
                    seen.append(name)
        line.append(f" {sum(split.values()) / 1e6:.1f}")
        lines.append(line)
    legend = Text(" " * LABEL)
    for name in seen:
        style, letter = PART_STYLES.get(name, OTHER)
        legend.append(letter if letters else "██", style)
        legend.append(f" {name}  ")
    lines.append(legend)
    return lines


def render_charts(run: dict[str, Any], width: int, letters: bool = False) -> RenderableType:
    return Group(
        Text(), *capacity_chart(run, width, letters), Text(), *growth_chart(run, width, letters)
    )
