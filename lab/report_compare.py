"""Server configurations side by side as one offline HTML page (`djtrace load … --compare …
--report FILE`): the verdict, throughput and p95/p99 against concurrency with a line per
configuration, the table, what gave first in each, and each one's knee-stage timeline."""

from __future__ import annotations

from collections.abc import Sequence

from djtrace.lab.compare_configs import Configuration, levels, verdict
from djtrace.lab.report import (
    PAGE_END,
    esc,
    html_table,
    line_chart,
    ms_text,
    page_head,
    timeline_svg,
)
from djtrace.lab.timeline import Timeline


def build_comparison_report(
    configs: Sequence[Configuration], timelines: Sequence[tuple[str, Timeline | None]] = ()
) -> str:
    """The page; `timelines` holds (caption, knee-stage timeline) per configuration."""
    xs = [float(level) for level in levels(list(configs))]

    def series(figure: str) -> list[tuple[str, list[float | None]]]:
        out: list[tuple[str, list[float | None]]] = []
        for config in configs:
            values: list[float | None] = []
            for level in levels(list(configs)):
                got = config.levels.get(level)
                if got is None:
                    values.append(None)
                elif figure == "throughput":
                    values.append(got.throughput)
                else:
                    values.append(getattr(got, figure) / 1e6)
            out.append((config.letter, values))
        return out

    charts = [
        line_chart("throughput", "Throughput (req/s)", "concurrent requests", "req/s", xs,
                   series("throughput")),
        line_chart("p95", "p95 latency (ms)", "concurrent requests", "ms", xs, series("p95")),
        line_chart("p99", "p99 latency (ms)", "concurrent requests", "ms", xs, series("p99")),
    ]  # fmt: skip
    rows = []
    for config in configs:
        cells = []
        for level in levels(list(configs)):
            got = config.levels.get(level)
            cells.append(
                "–"
                if got is None
                else f"{got.throughput:.0f} · {ms_text(got.p95)} · {ms_text(got.p99)}"
            )
        knee = str(config.knee) if config.knee is not None else "rising"
        rows.append([f"{config.letter}: {config.command}", *cells, knee])
    parts = [
        page_head("djtrace load · configurations compared"),
        "<h1>Server configurations compared</h1>",
        f'<div class="answer" id="answer">{esc(verdict(list(configs)))}</div>',
        "<h2>Throughput and latency</h2><div class='charts'>" + "".join(charts) + "</div>",
        "<h2>Per concurrency: req/s · p95 · p99 (ms)</h2>",
        html_table(
            ["configuration", *[f"c {level}" for level in levels(list(configs))], "knee"],
            rows,
            "compare",
        ),  # fmt: skip
        "<h2>What gave first</h2><ul>",
    ]
    for config in configs:
        parts.append(
            f"<li><b>{esc(config.letter)}</b> (run {esc(config.run_id)}): "
            f"{esc(config.gave_first or 'nothing grew')}<br><span class='note'>"
            f"{esc(config.answer)}</span></li>"
        )
    parts.append("</ul>")
    for k, (caption, timeline) in enumerate(timelines):
        if timeline is not None and timeline.lanes:
            parts.append(f"<h2>{esc(caption)}</h2>")
            parts.append(timeline_svg(f"timeline-{k}", timeline))
    parts.append(PAGE_END)
    return "\n".join(parts)
