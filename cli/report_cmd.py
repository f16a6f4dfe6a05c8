"""`djtrace load … --report FILE`: the run as one self-contained HTML page (lab/report.py)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from djtrace.cli.errors import CliError
from djtrace.cli.render import ms, render_trace
from djtrace.cli.timeline_cmd import knee_stage, stage_timeline
from djtrace.exporters.store import StoreError, TraceStore
from djtrace.lab.document import stage_label
from djtrace.lab.report import Tree, build_report
from rich.console import Console
from rich.text import Text

SLOWEST = 3
TREE_WIDTH = 120


def _tree_html(trace: Any) -> str:
    console = Console(record=True, width=TREE_WIDTH, file=io.StringIO(), color_system="truecolor")
    console.print(render_trace(trace))
    return console.export_html(inline_styles=True, code_format='<pre class="tree">{code}</pre>')


def _target(run: dict[str, Any], index: Any) -> str:
    targets = (run.get("settings") or {}).get("targets") or []
    if isinstance(index, int) and 0 <= index < len(targets):
        return f"{targets[index].get('method', 'GET')} {targets[index].get('path', '')}"
    return str(index or "")


def slowest_trees(store_file: Path, run: dict[str, Any], count: int = SLOWEST) -> list[Tree]:
    """The run's slowest measured requests that have a full trace, as rendered trees."""
    joined = [
        (row["latency_ns"], stage, row)
        for stage in run["stages"]
        for row in stage.get("joined") or []
        if row.get("sampled", True) and row.get("trace")
    ]
    joined.sort(key=lambda item: item[0], reverse=True)
    if not joined or not store_file.exists():
        return []
    trees = []
    try:
        with TraceStore.open(store_file) as store:
            for latency, stage, row in joined[:count]:
                try:
                    trace = store.get(row["trace"])
                except StoreError:
                    continue  # pruned since, or unreadable: the others still show
                title = (
                    f"{ms(latency)} at the client · {_target(run, row.get('target'))} · stage "
                    f"{stage['index']} ({stage_label(stage)}) · trace {trace.id}"
                )
                trees.append(Tree(title, _tree_html(trace)))
    except StoreError:
        return trees
    return trees


def write_report(console: Console, store_file: Path, run: dict[str, Any], target: Path) -> None:
    chosen = knee_stage(run)
    timeline, label = None, ""
    if chosen is not None:
        stage, why = chosen
        timeline = stage_timeline(store_file, run, stage)
        label = f"stage {stage['index']} ({stage_label(stage)}: {why})"
    page = build_report(run, timeline, label, slowest_trees(store_file, run))
    try:
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}", code=1) from None
    console.print(Text(f"report: {target} (open it in a browser; it needs no network)", "dim"))
