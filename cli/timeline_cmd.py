"""`djtrace timeline`: swimlanes of the overlapping requests of a stored window."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from djtrace.cli.errors import CliError
from djtrace.cli.render import plural
from djtrace.cli.store_access import PathFilter, PidFilter, StoreOption, store_path, warn
from djtrace.cli.timeline import DEFAULT_ROWS, render_timeline
from djtrace.cli.timeline_data import DEFAULT_LIMIT, Selection, make_selection, read_window
from djtrace.exporters.run_store import get_run
from djtrace.exporters.store import StoreError, TraceStore
from djtrace.lab import timeline as lanes
from djtrace.lab.document import stage_label
from djtrace.model import Trace
from rich.console import Console
from rich.text import Text

TIMELINE_EXAMPLES = """
[bold]Examples[/]

  djtrace timeline                          [dim]# the newest 5 s of traffic[/]
  djtrace timeline --since 2m --until 1m
  djtrace timeline --run RUN_ID --stage 3   [dim]# a stage of a `djtrace load` run[/]
  djtrace timeline --stage 3 --from 1.2s --to 1.5s   [dim]# zoom: 300 ms of it[/]
  djtrace timeline --since 30s --perfetto window.json
"""

_OFFSET = re.compile(r"^(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s|m)?$")
_SCALE = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60e9}


def parse_offset(value: str, option: str) -> int:
    """'1.5s', '300ms', '2' (seconds) → nanoseconds."""
    match = _OFFSET.match(value.strip().lower())
    if not match:
        raise CliError(f"{option} {value!r}: use an offset into the window like 1.5s or 300ms")
    return int(float(match.group(1)) * _SCALE[match.group(2) or "s"])


def timeline(
    store: StoreOption = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Requests since: 30s, 10m, 2h (ago) or an ISO date/time."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Requests before: 1m (ago) or an ISO time.")
    ] = None,
    run: Annotated[
        str | None, typer.Option("--run", help="Only the requests of this `djtrace load` run.")
    ] = None,
    stage: Annotated[
        int | None,
        typer.Option("--stage", min=0, help="Only this stage of the run (default run: latest)."),
    ] = None,
    path: PathFilter = None,
    pid: PidFilter = None,
    zoom_from: Annotated[
        str | None,
        typer.Option("--from", help="Zoom: start this far into the window (1.2s, 300ms)."),
    ] = None,
    zoom_to: Annotated[
        str | None, typer.Option("--to", help="Zoom: end this far into the window.")
    ] = None,
    rows: Annotated[
        int,
        typer.Option(
            "--rows", min=1, help="Rows per lane at most (overlapping requests beyond: merged)."
        ),
    ] = DEFAULT_ROWS,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Read at most the newest N requests.")
    ] = DEFAULT_LIMIT,
    perfetto: Annotated[
        Path | None,
        typer.Option(
            "--perfetto",
            metavar="FILE",
            help="Also write the window as a Chrome trace (ui.perfetto.dev): a track per thread.",
        ),
    ] = None,
    width: Annotated[
        int | None, typer.Option("--width", min=40, help="Columns to draw (default: terminal).")
    ] = None,
) -> None:
    """Swimlanes: a lane per worker process and thread, a bar per request, by phase.

    Each bar runs from the request's arrival to its close. A request the lab sent
    (`djtrace load`) starts at its send time, so waiting for a free worker or
    thread before Django shows in its own colour. Rows stacked in one lane are
    requests that arrived while that thread was still busy.
    """
    selection = make_selection(since, until, run, stage, path, pid)
    file = store_path(store)
    window = read_window(file, selection, limit)
    if window.unreadable:
        warn(f"{plural(window.unreadable, 'unreadable trace')} left out")
    console = Console(highlight=False, width=width) if width else Console(highlight=False)
    if not window.traces:
        if selection.run is not None or stage is not None:  # a run or stage that is not there
            raise CliError(
                f"no requests of {window.describe() or 'a load run'} in {file} "
                "(see `djtrace load --runs`)",
                code=1,
            )
        console.print(Text(f"no requests in this window of {file}", "dim"), soft_wrap=True)
        raise typer.Exit(1 if window.unreadable else 0)
    built = lanes.build(window.traces)  # over the requests' own extent, within the selection
    first = max(built.start, selection.since or built.start)
    last = min(built.end, selection.until or built.end)
    measured = _measured(file, selection)
    if measured is not None and since is None and until is None:
        first, last = max(first, measured[0]), min(last, measured[1])  # the warm-up left out
    lo = first + parse_offset(zoom_from, "--from") if zoom_from else first
    hi = min(last, first + parse_offset(zoom_to, "--to")) if zoom_to else last
    if hi <= lo:
        raise CliError("--to must be after --from, inside the window (offsets from its start)")
    if (lo, hi) != (built.start, built.end):
        built = lanes.zoom(built, lo, hi)
    if perfetto is not None:
        _write_perfetto(window.traces, perfetto, lo, hi)
    letters = console.color_system is None
    console.print(
        render_timeline(built, console.width, rows, letters, window.describe()), crop=False
    )


def _measured(file: Path, selection: Selection) -> tuple[int, int] | None:
    """A kept run's measured window of the selected stage (None: not a kept run's stage)."""
    if selection.run is None or selection.stage is None:
        return None
    try:
        with TraceStore.open(file) as opened:
            run = get_run(opened, selection.run)
    except StoreError:  # RunNotFound too: traffic tagged by another tool
        return None
    for stage in run.get("stages") or []:
        if stage.get("index") == selection.stage and "window_start_ns" in stage:
            return stage["window_start_ns"], stage["window_end_ns"]
    return None


def _write_perfetto(traces: list, target: Path, lo: int, hi: int) -> None:
    from djtrace.exporters.chrome import write_chrome

    chosen = [t for t in traces if _meets(lanes.bar_of(t), lo, hi)]
    try:
        write_chrome(chosen, target)
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}", code=1) from None
    Console(stderr=True, highlight=False).print(
        f"wrote {plural(len(chosen), 'request')} to {target} (open it in ui.perfetto.dev)",
        soft_wrap=True,
    )


def _meets(bar: lanes.Bar, lo: int, hi: int) -> bool:
    return bar.end > lo and bar.arrival < hi


timeline.__doc__ = inspect.cleandoc(timeline.__doc__ or "") + "\n\n" + TIMELINE_EXAMPLES


def knee_stage(run: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """The stage a run's timeline shows, and why: the knee, else the peak, else the last."""
    summary = run.get("summary") or {}
    stages = [s for s in run.get("stages") or [] if s.get("count")]
    for key, why in (("knee_stage", "the knee"), ("peak_stage", "peak throughput")):
        index = summary.get(key)
        for stage in stages:
            if stage["index"] == index:
                return stage, why
    return (stages[-1], "the last stage") if stages else None


def stage_timeline(
    store_file: Path, run: dict[str, Any], stage: dict[str, Any], limit: int = DEFAULT_LIMIT
) -> lanes.Timeline | None:
    """The measured window of one stage of a run (warm-up left out), or None: no traces."""
    if stage.get("observed"):  # `load analyze`: the traces it read, by id
        traces = _by_id(store_file, [r["trace"] for r in stage.get("joined") or []][:limit])
    else:
        selection = Selection(
            since=stage["window_start_ns"], until=stage["window_end_ns"], run=run["run_id"]
        )
        selection.stage = stage["index"]
        traces = read_window(store_file, selection, limit).traces
    if not traces:
        return None
    built = lanes.build(traces)
    lo = max(built.start, stage["window_start_ns"])
    hi = min(built.end, stage["window_end_ns"])
    return lanes.zoom(built, lo, hi) if hi > lo else built


def _by_id(store_file: Path, ids: list[str]) -> list[Trace]:
    traces = []
    try:
        with TraceStore.open(store_file) as opened:
            for trace_id in ids:
                try:
                    traces.append(opened.get(trace_id))
                except StoreError:
                    continue  # pruned since: the others still show
    except StoreError:
        return []
    return traces


def show_run_timeline(console: Console, store_file: Path, run: dict[str, Any]) -> None:
    """`djtrace load … --timeline`: the knee stage's lanes under the run's report."""
    chosen = knee_stage(run)
    built = stage_timeline(store_file, run, chosen[0]) if chosen is not None else None
    if chosen is None or built is None:
        console.print(Text("timeline: no traces of this run in the store", "dim"))
        return
    stage, why = chosen
    what = f"run {run['run_id']} · stage {stage['index']} ({stage_label(stage)}: {why})"
    console.print()
    console.print(
        render_timeline(built, console.width, DEFAULT_ROWS, console.color_system is None, what),
        crop=False,
    )
