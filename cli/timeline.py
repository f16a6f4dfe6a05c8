"""The terminal timeline: one lane per worker thread, each request a bar coloured by phase.

    lane             0 ms         250 ms       500 ms       750 ms        req busy
    4521/pool-0_0    ░░░████▓▓██░░░░████▓██░░░░████▓██                      12  96%
                     ██░░░░████▓██░░░░████▓██░░░░████▓█                        …

In a colour terminal each phase is a coloured block (waiting before Django a light shade);
without colour (NO_COLOR, a pipe) each phase is a letter, given in the legend.
"""

from __future__ import annotations

import datetime as dt
import math

from djtrace.cli.render import ms, plural
from djtrace.cli.store_cmds import worker
from djtrace.lab.timeline import PHASES, Bar, Lane, Timeline, cells_by_bar, phase_totals
from rich.console import Group, RenderableType
from rich.text import Text

#: phase → (style, block glyph, letter glyph)
STYLES: dict[str, tuple[str, str, str]] = {
    "waiting": ("yellow", "░", "w"),
    "middleware": ("blue", "█", "m"),
    "view": ("green", "█", "v"),
    "sql": ("magenta", "█", "s"),
    "template": ("cyan", "█", "t"),
    "pool": ("red", "█", "p"),
    "hop": ("bright_red", "▓", "h"),
    "response": ("bright_blue", "█", "r"),
    "django": ("bright_black", "█", "d"),
    "light": ("white", "▒", "l"),
}
LABEL_WIDTH = 16
STATS_WIDTH = 10  # " 123 100%"
DEFAULT_ROWS = 3


def glyph(phase: str, letters: bool) -> str:
    style = STYLES[phase]
    return style[2] if letters else style[1]


def _nice_step(span_ns: float, cells_: int, min_cells: int = 13) -> float:
    """A round tick interval (1, 2 or 5 × 10^k ns) at least `min_cells` cells apart."""
    raw = span_ns * min_cells / max(cells_, 1)
    power = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return factor * power
    return 10 * power


def _offset(ns: float) -> str:
    text = ms(ns)
    return text.replace(".00 ", " ").replace(".0 ", " ")


def ruler(start: int, end: int, width: int) -> Text:
    """Tick labels (offsets from the window's start) placed over the bar columns."""
    line = [" "] * width
    span = end - start
    if span <= 0 or width <= 0:
        return Text("".join(line))
    step = _nice_step(span, width)
    tick = 0.0
    while tick < span:
        col = int(tick / span * width)
        label = _offset(tick)
        if col + len(label) <= width and all(
            c == " " for c in line[max(0, col - 1) : col + len(label)]
        ):
            line[col : col + len(label)] = label
        tick += step
    return Text("".join(line), "dim")


def _row_text(bars: list[Bar], start: int, end: int, width: int, letters: bool) -> Text:
    """One row of a lane; every other request is a shade darker (or its letters capitals),
    so back-to-back requests stay apart."""
    text = Text()
    ordered = sorted(bars, key=lambda b: b.arrival)
    for cell in cells_by_bar(ordered, start, end, width):
        if cell is None:
            text.append(" ")
            continue
        phase, number = cell
        style, block, letter = STYLES[phase]
        odd = number % 2 == 1
        if letters:
            text.append(letter.upper() if odd else letter, style)
        else:
            text.append(block, f"{style} dim" if odd else style)
    return text


def _lane_lines(
    lane: Lane, timeline: Timeline, bar_width: int, max_rows: int, letters: bool
) -> list[Text]:
    lo, hi = timeline.start, timeline.end
    rows = lane.rows
    shown = (
        rows if len(rows) <= max_rows else [*rows[: max_rows - 1], sum(rows[max_rows - 1 :], [])]
    )
    busy = lane.busy(lo, hi) / (hi - lo) if hi > lo else 0.0
    lines = []
    for i, row in enumerate(shown):
        if i == 0:
            label = Text(worker(lane.pid, lane.thread)[:LABEL_WIDTH].ljust(LABEL_WIDTH), "bold")
        elif i == max_rows - 1 and len(rows) > max_rows:
            label = Text(f"  +{len(rows) - i} rows".ljust(LABEL_WIDTH), "dim")
        else:
            label = Text(" " * LABEL_WIDTH)
        line = Text.assemble(label, " ", _row_text(row, lo, hi, bar_width, letters))
        if i == 0:
            line.append(f"{lane.served(lo, hi):>5}", "cyan")
            line.append(f"{busy:>5.0%}", "bold" if busy >= 0.9 else "")
        lines.append(line)
    return lines


def legend(timeline: Timeline, letters: bool) -> Text:
    """The phases that appear, each with its glyph."""
    present = phase_totals(b for lane in timeline.lanes for b in lane.bars)
    text = Text()
    for phase in PHASES:
        if phase not in present:
            continue
        style, block, letter = STYLES[phase]
        if text:
            text.append("  ")
        text.append(letter if letters else block * 2, style)
        text.append(f" {PHASES[phase]}")
    return text


def _clock(ns: int) -> str:
    moment = dt.datetime.fromtimestamp(ns / 1e9)
    return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"


def heading(timeline: Timeline, what: str = "") -> Text:
    lanes = timeline.lanes
    count = sum(len(lane.bars) for lane in lanes)
    text = Text.assemble(
        ("timeline", "bold"),
        f" · {_offset(timeline.end - timeline.start)} from {_clock(timeline.start)}",
        f" · {plural(count, 'request')}",
        f" · {plural(len(lanes), 'lane')}, {plural(timeline.processes, 'process', 'processes')}",
    )
    if what:
        text.append(f"\n{what}", "dim")
    return text


def waiting_note(timeline: Timeline) -> Text | None:
    """How long the lab's requests waited before Django (None: no request carried a tag)."""
    waits = timeline.waits()
    if not waits:
        return None
    waited = sum(1 for w in waits if w >= 1_000_000)
    return Text.assemble(
        ("waiting before Django: ", "yellow"),
        f"p50 {ms(timeline.wait_p(50))} · p95 {ms(timeline.wait_p(95))} · max {ms(waits[-1])}",
        (f" ({waited} of {len(waits)} waited 1 ms or more)", "dim"),
    )


def render_timeline(
    timeline: Timeline,
    width: int,
    max_rows: int = DEFAULT_ROWS,
    letters: bool = False,
    what: str = "",
) -> RenderableType:
    """The whole picture at `width` columns: heading, ruler, lanes, waiting note, legend."""
    bar_width = max(10, width - LABEL_WIDTH - 1 - STATS_WIDTH)
    lo, hi = timeline.start, timeline.end
    parts: list[RenderableType] = [heading(timeline, what)]
    header = Text.assemble(
        ("lane".ljust(LABEL_WIDTH), "dim"), " ", ruler(lo, hi, bar_width), ("  req busy", "dim")
    )
    parts.append(header)
    for lane in timeline.lanes:
        parts.extend(_lane_lines(lane, timeline, bar_width, max(1, max_rows), letters))
    note = waiting_note(timeline)
    if note is not None:
        parts.append(note)
    parts.append(legend(timeline, letters))
    step = (hi - lo) / bar_width if bar_width else 0
    parts.append(
        Text(
            f"1 column = {ms(step)} · req: requests started · busy: share of the window the "
            "thread ran one",
            "dim",
        )
    )
    return Group(*parts)
