"""A load run as one self-contained HTML page: the capacity answer, the charts (inline SVG),
the per-stage tables, the phase growth, the knee stage's timeline and the slowest requests'
trees. Nothing is fetched when it opens (no network, no external script or font): the page
works from a file, offline, and can be mailed or attached to a ticket.

Pure string building over the run document (docs/load-format.md) and a built Timeline; the
trees arrive already rendered (HTML fragments from the terminal renderer), so this module
knows nothing of rich. A small inline script checks that every chart drew its marks and
records the answer on <body data-charts-rendered="N" data-errors="…"> for tests and tools.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from djtrace.lab.analysis import AFTER, BEFORE, INSIDE, components
from djtrace.lab.document import stage_label
from djtrace.lab.timeline import PHASES, Timeline, phase_totals

#: Timeline phase colours (the terminal's, as hex).
PHASE_COLOURS = {
    "waiting": "#e5c07b",
    "middleware": "#4f7cd8",
    "view": "#3fa34d",
    "sql": "#b05cc6",
    "template": "#2bb3c0",
    "pool": "#d8483f",
    "hop": "#f08a4b",
    "response": "#7aa6f0",
    "django": "#9a9a9a",
    "light": "#cfcfcf",
}
SERIES_COLOURS = ("#1f6fd1", "#d9822b", "#2e9e5b", "#c2413b", "#7d52c7", "#8c6d31")


@dataclass
class Tree:
    """One slow request, its tree already rendered as HTML (a <pre> block)."""

    title: str
    html: str


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def ms_text(ns: float | None) -> str:
    if ns is None:
        return "–"
    value = ns / 1e6
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


# --- charts ------------------------------------------------------------------------------


def _ticks(top: float, count: int = 5) -> list[float]:
    if top <= 0:
        return [0.0]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(f * power for f in (1, 2, 2.5, 5, 10) if f * power >= raw)
    return [i * step for i in range(int(top / step) + 2)]


def line_chart(
    chart_id: str,
    title: str,
    x_label: str,
    y_label: str,
    xs: Sequence[float],
    series: Sequence[tuple[str, Sequence[float | None]]],
    marks: Sequence[tuple[float, str]] = (),
    width: int = 460,
    height: int = 260,
) -> str:
    """An SVG line chart: one polyline and its points per series, x at the given values
    spaced evenly (a sweep's levels double), a dashed vertical line per mark (the knee)."""
    left, right, top, bottom = 52, 12, 28, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for _, ys in series for v in ys if v is not None]
    y_ticks = _ticks(max(values) if values else 1.0)
    y_top = y_ticks[-1] or 1.0
    n = len(xs)

    def px(i: int) -> float:
        return left + (plot_w * (i + 0.5) / n if n else 0)

    def py(v: float) -> float:
        return top + plot_h - plot_h * v / y_top

    out = [
        f'<svg class="chart" data-chart="{esc(chart_id)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{esc(title)}">',
        f'<text x="{left}" y="16" class="chart-title">{esc(title)}</text>',
    ]
    for tick in y_ticks:
        y = py(tick)
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">{tick:g}</text>'
        )
    for i, x in enumerate(xs):
        out.append(
            f'<text x="{px(i):.1f}" y="{top + plot_h + 16}" class="tick" '
            f'text-anchor="middle">{x:g}</text>'
        )
    out.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 8}" class="axis" '
        f'text-anchor="middle">{esc(x_label)}</text>'
    )
    out.append(
        f'<text x="14" y="{top + plot_h / 2:.1f}" class="axis" text-anchor="middle" '
        f'transform="rotate(-90 14 {top + plot_h / 2:.1f})">{esc(y_label)}</text>'
    )
    for x, label in marks:
        if x in xs:
            mx = px(list(xs).index(x))
            out.append(
                f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{top}" y2="{top + plot_h}" class="mark"/>'
                f'<text x="{mx + 4:.1f}" y="{top + 10}" class="tick">{esc(label)}</text>'
            )
    for k, (name, ys) in enumerate(series):
        colour = SERIES_COLOURS[k % len(SERIES_COLOURS)]
        points = [(px(i), py(v)) for i, v in enumerate(ys) if v is not None]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            out.append(f'<polyline class="series" points="{path}" stroke="{colour}"/>')
        for (x, y), v in zip(points, [v for v in ys if v is not None], strict=True):
            out.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{colour}">'
                f"<title>{esc(name)}: {v:.1f}</title></circle>"
            )
        lx = width - right - 80 * (len(series) - k)  # the legend: top right, by the title
        out.append(
            f'<rect x="{lx}" y="7" width="10" height="10" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="16" class="tick">{esc(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def growth_chart(chart_id: str, stages: Sequence[dict[str, Any]], width: int = 600) -> str:
    """Stacked bars: each stage's mean latency split into before, each phase, after."""
    rows = [(stage_label(s), components(s)) for s in stages]
    names: list[str] = []
    for _, parts in rows:
        names += [n for n in parts if n not in names and parts[n] > 0]
    if not rows or not names:
        return ""
    total = max(sum(v for v in parts.values() if v > 0) for _, parts in rows) or 1
    bar_h, gap, left, top = 18, 8, 110, 28
    height = top + len(rows) * (bar_h + gap) + 24 + 16 * ((len(names) + 2) // 3)
    plot_w = width - left - 12
    colours = {n: SERIES_COLOURS[i % len(SERIES_COLOURS)] for i, n in enumerate(names)}
    colours[BEFORE] = PHASE_COLOURS["waiting"]
    out = [
        f'<svg class="chart" data-chart="{esc(chart_id)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="phase growth">',
        f'<text x="{left}" y="16" class="chart-title">Mean time per request, by part (ms)</text>',
    ]
    for r, (label, parts) in enumerate(rows):
        y = top + r * (bar_h + gap)
        out.append(
            f'<text x="{left - 6}" y="{y + 13}" class="tick" text-anchor="end">{esc(label)}</text>'
        )
        x = float(left)
        for name in names:
            value = parts.get(name, 0)
            if value <= 0:
                continue
            w = plot_w * value / total
            out.append(
                f'<rect class="bar" x="{x:.1f}" y="{y}" width="{max(w, 0.5):.1f}" height="{bar_h}" '
                f'fill="{colours[name]}"><title>{esc(name)}: {ms_text(value)} ms</title></rect>'
            )
            x += w
        out.append(
            f'<text x="{x + 4:.1f}" y="{y + 13}" class="tick">'
            f"{ms_text(sum(v for v in parts.values() if v > 0))}</text>"
        )
    ly = top + len(rows) * (bar_h + gap) + 8
    for i, name in enumerate(names):
        lx, row = left + (i % 3) * 160, ly + 16 * (i // 3)
        out.append(
            f'<rect x="{lx}" y="{row}" width="10" height="10" fill="{colours[name]}"/>'
            f'<text x="{lx + 14}" y="{row + 9}" class="tick">{esc(name[:24])}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def timeline_svg(chart_id: str, timeline: Timeline, width: int = 940, max_rows: int = 3) -> str:
    """Swimlanes: a lane per worker thread, each request's segments as coloured rects."""
    lanes = timeline.lanes
    if not lanes or timeline.end <= timeline.start:
        return ""
    left, top, row_h = 150, 24, 14
    plot_w = width - left - 10
    rows = [(lane, i, row) for lane in lanes for i, row in enumerate(lane.rows[:max_rows])]
    height = top + len(rows) * (row_h + 2) + 30
    span = timeline.end - timeline.start

    def x(ns: int) -> float:
        return left + plot_w * (min(max(ns, timeline.start), timeline.end) - timeline.start) / span

    out = [
        f'<svg class="chart timeline" data-chart="{esc(chart_id)}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="timeline">',
    ]
    for k in range(6):
        tx = left + plot_w * k / 5
        out.append(
            f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{top - 4}" y2="{height - 26}" class="grid"/>'
            f'<text x="{tx:.1f}" y="{top - 8}" class="tick" text-anchor="middle">'
            f"{ms_text(span * k / 5)} ms</text>"
        )
    for r, (lane, i, row) in enumerate(rows):
        y = top + r * (row_h + 2)
        if i == 0:
            label = f"{lane.pid}/{lane.thread.replace('ThreadPoolExecutor-', 'pool-')}"
            out.append(
                f'<text x="{left - 6}" y="{y + 11}" class="tick" text-anchor="end">'
                f"{esc(label[-24:])}</text>"
            )
        for bar in row:
            if bar.end <= timeline.start or bar.arrival >= timeline.end:
                continue
            tip = (
                f"{bar.method} {bar.path} · {ms_text(bar.end - bar.arrival)} ms"
                f" (waited {ms_text(bar.waited)} ms) · trace {bar.trace_id}"
            )
            out.append(f'<g class="request"><title>{esc(tip)}</title>')
            for seg in bar.segments:
                x0, x1 = x(seg.start), x(seg.end)
                if x1 - x0 <= 0:
                    continue
                out.append(
                    f'<rect class="bar" x="{x0:.2f}" y="{y}" width="{max(x1 - x0, 0.3):.2f}" '
                    f'height="{row_h}" fill="{PHASE_COLOURS[seg.phase]}"/>'
                )
            out.append("</g>")
    present = phase_totals(b for lane in lanes for b in lane.bars)
    lx = left
    for phase in PHASES:
        if phase in present:
            out.append(
                f'<rect x="{lx}" y="{height - 18}" width="10" height="10" '
                f'fill="{PHASE_COLOURS[phase]}"/>'
                f'<text x="{lx + 14}" y="{height - 9}" class="tick">{esc(PHASES[phase])}</text>'
            )
            lx += 20 + 6.5 * len(PHASES[phase])
    out.append("</svg>")
    return "".join(out)


# --- tables ------------------------------------------------------------------------------


def html_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def stage_rows(run: dict[str, Any]) -> list[list[str]]:
    knee = (run.get("summary") or {}).get("knee_stage")
    rows = []
    for s in run["stages"]:
        lat = s["latency"]
        info = s.get("analysis") or {}
        split = info.get("split") or {}
        rows.append(
            [
                stage_label(s) + (" ◀ knee" if s["index"] == knee else ""),
                str(s["count"]),
                f"{s['throughput']:.1f}",
                ms_text(lat.get("p50")),
                ms_text(lat.get("p95")),
                ms_text(lat.get("p99")),
                ms_text(lat.get("max")),
                str(sum(s["errors"].values())),
                ms_text(split.get(BEFORE, {}).get("mean")),
                ms_text(split.get(INSIDE, {}).get("mean")),
                ms_text(split.get(AFTER, {}).get("mean")),
                f"{info['busy_mean']:.0%}" if "busy_mean" in info else "–",
            ]
        )
    return rows


def growth_rows(run: dict[str, Any]) -> list[list[str]]:
    growth = (run.get("summary") or {}).get("growth") or {}
    by = growth.get("by_component") or {}
    stages = {s["index"]: s for s in run["stages"]}
    first, last = stages.get(growth.get("from_stage")), stages.get(growth.get("to_stage"))
    if not by or first is None or last is None:
        return []
    a, b = components(first), components(last)
    return [
        [name, ms_text(a.get(name)), ms_text(b.get(name)), f"{grew / 1e6:+.2f}"]
        for name, grew in by.items()
    ]


# --- the page ----------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1000px;color:#1d2330;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde}
.meta{color:#667;font-size:12px}.answer{background:#eef5ff;border-left:4px solid #1f6fd1;
padding:10px 14px;font-size:15px;margin:14px 0}
.charts{display:flex;flex-wrap:wrap;gap:16px}
table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{padding:3px 8px;text-align:right;border-bottom:1px solid #eef}
th:first-child,td:first-child{text-align:left}
svg .grid{stroke:#e4e6ee}svg .mark{stroke:#c2413b;stroke-dasharray:4 3}
svg .series{fill:none;stroke-width:2}svg .tick{font-size:10.5px;fill:#556}
svg .axis{font-size:11px;fill:#334}svg .chart-title{font-size:12.5px;font-weight:600;fill:#1d2330}
pre.tree{font:12px/1.3 ui-monospace,Menlo,Consolas,monospace;background:#fafbfd;
border:1px solid #e4e6ee;padding:8px;overflow-x:auto}
.note{color:#667;font-size:12px}
"""

# Counts the charts that drew marks; any script error is recorded too (for headless checks).
_SCRIPT = """
(function(){
  var errors=[];
  window.addEventListener('error',function(e){errors.push(String(e.message));
    document.body.setAttribute('data-errors',errors.join(' | '));});
  function check(){
    var drawn=0,charts=document.querySelectorAll('svg[data-chart]');
    charts.forEach(function(svg){
      var marks=svg.querySelectorAll('circle,rect.bar,polyline');var ok=false;
      marks.forEach(function(m){var b=m.getBBox();if(b.width>0||b.height>0){ok=true;}});
      svg.setAttribute('data-rendered',ok?'yes':'no');if(ok){drawn++;}
    });
    document.body.setAttribute('data-charts',String(charts.length));
    document.body.setAttribute('data-charts-rendered',String(drawn));
    document.body.setAttribute('data-errors',errors.join(' | '));
  }
  if(document.readyState==='loading'){document.addEventListener('DOMContentLoaded',check);}
  else{check();}
})();
"""


def build_report(
    run: dict[str, Any],
    timeline: Timeline | None = None,
    timeline_stage: str = "",
    trees: Sequence[Tree] = (),
) -> str:
    """The whole page, as a string."""
    summary = run.get("summary") or {}
    stages = run["stages"]
    closed = sorted((s for s in stages if s["kind"] == "closed"), key=lambda s: s["concurrency"])
    opened = sorted((s for s in stages if s["kind"] == "open"), key=lambda s: s["rate"])
    knee = summary.get("knee_stage")
    charts: list[str] = []
    for kind, chosen, x_label, key in (
        ("closed", closed, "concurrent requests", "concurrency"),
        ("open", opened, "arrival rate (req/s)", "rate"),
    ):
        if not chosen:
            continue
        xs = [float(s[key]) for s in chosen]
        marks = [(float(s[key]), "knee") for s in chosen if s["index"] == knee]
        charts.append(
            line_chart(
                f"{kind}-throughput",
                "Throughput (req/s)",
                x_label,
                "req/s",
                xs,
                [("throughput", [s["throughput"] for s in chosen])],
                marks,
            )
        )
        charts.append(
            line_chart(
                f"{kind}-latency",
                "Latency (ms)",
                x_label,
                "ms",
                xs,
                [(q, [s["latency"][q] / 1e6 for s in chosen]) for q in ("p50", "p95", "p99")],
                marks,
            )
        )
    with_split = [s for s in stages if (s.get("analysis") or {}).get("split")]
    growth_svg = growth_chart("phase-growth", with_split)
    server = run.get("server") or {}
    command = " ".join(server.get("command") or []) or server.get("base_url", "")
    started = dt.datetime.fromtimestamp(run.get("started_at", 0) / 1e9).strftime(
        "%Y-%m-%d %H:%M:%S"
    )
    parts = [
        page_head(f"djtrace load · {run.get('run_id', '')}"),
        f"<h1>djtrace load report</h1><div class='meta'>run {esc(run.get('run_id', ''))} · "
        f"{esc(started)} · {esc(command)}</div>",
        f'<div class="answer" id="answer">{esc(summary.get("answer", ""))}</div>',
    ]
    usl = summary.get("usl")
    if usl:
        parts.append(
            f"<p class='note'>Universal Scalability Law fit: σ {usl.get('sigma', 0):.3f}, "
            f"κ {usl.get('kappa', 0):.5f}, fit {esc(usl.get('quality', ''))}.</p>"
        )
    parts.append("<h2>Throughput and latency</h2><div class='charts'>" + "".join(charts) + "</div>")
    parts.append("<h2>Stages</h2>")
    parts.append(
        html_table(
            [
                "load",
                "requests",
                "req/s",
                "p50",
                "p95",
                "p99",
                "max",
                "errors",
                "before",
                "inside",
                "after",
                "busy",
            ],
            stage_rows(run),
            "stages",
        )  # fmt: skip
    )
    parts.append(
        "<p class='note'>Times in ms. before: sent → Django started (waiting for a worker, "
        "the accept queue, the GIL); inside: the trace; after: the body's way back.</p>"
    )
    parts.append("<h2>Where the time grew</h2>")
    if growth_svg:
        parts.append(f"<div class='charts'>{growth_svg}</div>")
    rows = growth_rows(run)
    if rows:
        parts.append(html_table(["part", "first stage", "last stage", "grew (ms)"], rows, "growth"))
    grew = summary.get("grew_most")
    if grew:
        parts.append(f"<p>{esc(grew.get('component'))} grew most: {esc(grew.get('why'))}.</p>")
    if timeline is not None and timeline.lanes:
        parts.append(f"<h2>Timeline of {esc(timeline_stage or 'the knee stage')}</h2>")
        parts.append(
            "<p class='note'>One lane per worker process and thread; each request from its "
            "send to its close; hover a bar for its trace id.</p>"
        )
        parts.append(timeline_svg("timeline", timeline))
    if trees:
        parts.append("<h2>Slowest requests</h2>")
        for tree in trees:
            parts.append(f"<h3>{esc(tree.title)}</h3>{tree.html}")
    data = json.dumps({"run_id": run.get("run_id"), "answer": summary.get("answer")})
    parts.append(f'<script type="application/json" id="run-summary">{esc(data)}</script>')
    parts.append(PAGE_END)
    return "\n".join(parts)


def page_head(title: str) -> str:
    """The page up to <body>: its own styles, nothing to fetch."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style></head><body>"
    )


#: The checking script and the end of the page.
PAGE_END = f"<script>{_SCRIPT}</script></body></html>"
