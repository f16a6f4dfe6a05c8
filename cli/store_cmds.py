"""Browsing the trace store: `djtrace list`, `show`, `stats`, `export` and `import`."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from cli.errors import CliError
from cli.render import DEFAULT_HIDE_UNDER_MS, ms, render_trace, share_style
from cli.store_access import (
    MethodFilter,
    PathFilter,
    PidFilter,
    SinceFilter,
    SlowerFilter,
    StatusFilter,
    StoreOption,
    load_trace,
    make_filters,
    store_path,
    warn,
    with_store,
)
from exporters import jsonl
from exporters.formats import FORMATS
from exporters.store import StoreError, TraceStore
from tracer import aggregate
from tracer.model import Trace


class Sort(str, Enum):
    time = "time"
    duration = "duration"
    queries = "queries"


class Format(str, Enum):
    tree = "tree"
    json = "json"


def _lost(store: TraceStore) -> None:
    """After a command ran on a salvaged store: the results are incomplete, so exit 1."""
    lost = store.lost
    store.close()
    if lost is not None:
        raise typer.Exit(1)


def when(ns: int, today: dt.date | None = None) -> str:
    moment = dt.datetime.fromtimestamp(ns / 1e9)
    if moment.date() == (today or dt.date.today()):
        return moment.strftime("%H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M")


def status_text(status: int | None) -> Text:
    if status is None:
        return Text("—", "yellow")
    return Text(str(status), "green" if status < 400 else "yellow" if status < 500 else "bold red")


_THREAD_PREFIXES = (("ThreadPoolExecutor-", "pool-"), ("MainThread", "main"))


def worker(pid: int | None, thread: str | None) -> str:
    """'4521/pool-0_3': the process and (abbreviated) thread that served a request."""
    name = (thread or "").split(" (", 1)[0]  # "Thread-3 (process_request_thread)"
    for long, short in _THREAD_PREFIXES:
        if name.startswith(long):
            name = short + name[len(long) :]
    return f"{pid or '?'}/{name[-16:]}" if name else str(pid or "?")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


# --- list ---------------------------------------------------------------------------------

LIST_EXAMPLES = """
[bold]Examples[/]

  djtrace list                                   [dim]# the 50 newest requests[/]
  djtrace list --sort duration --limit 10        [dim]# the 10 slowest[/]
  djtrace list --path '/books/*' --status 5xx --since 10m
  djtrace list --slower-than 200 --method POST --pid 4521
"""


def list_traces(
    store: StoreOption = None,
    path: PathFilter = None,
    status: StatusFilter = None,
    method: MethodFilter = None,
    slower_than: SlowerFilter = None,
    since: SinceFilter = None,
    pid: PidFilter = None,
    sort: Annotated[Sort, typer.Option("--sort", help="Order: newest, slowest, most queries.")] = (
        Sort.time
    ),
    limit: Annotated[int, typer.Option("--limit", min=1, help="Show at most N traces.")] = 50,
) -> None:
    """List the captured requests in the trace store, newest first."""
    filters = make_filters(path, status, method, slower_than, since, pid)
    file = store_path(store)
    (rows, total), opened = with_store(
        file, lambda s: (s.summaries(filters, sort.value, limit), s.count(filters))
    )
    console = Console(highlight=False)
    if not rows:
        console.print(f"no traces in {file}" + (" match" if filters != type(filters)() else ""))
        _lost(opened)
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("id", style="cyan", no_wrap=True)
    table.add_column("when", no_wrap=True)
    table.add_column("request", overflow="ellipsis", no_wrap=True, max_width=70)
    table.add_column("status", justify="right")
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("queries", justify="right")
    table.add_column("route", overflow="ellipsis", no_wrap=True, style="dim")
    table.add_column("worker", overflow="ellipsis", no_wrap=True, style="dim")
    longest = max(r.duration for r in rows)
    for row in rows:
        request = f"{row.method or ''} {row.path or ''}" + (f"?{row.query}" if row.query else "")
        table.add_row(
            row.id[:10],
            when(row.started_at),
            request,
            status_text(row.status),
            Text(ms(row.duration), share_style(row.duration, longest)),
            str(row.queries),
            row.route or "",
            worker(row.pid, row.thread),
        )
    console.print(table)
    shown = plural(total, "trace")
    if total > len(rows):
        shown = f"{len(rows)} of {shown}"
    console.print(
        Text(f"{shown} in {file} · `djtrace show ID` for one as a tree", "dim"), soft_wrap=True
    )
    _lost(opened)


list_traces.__doc__ = (list_traces.__doc__ or "") + "\n\n" + LIST_EXAMPLES


# --- show ---------------------------------------------------------------------------------

SHOW_EXAMPLES = """
[bold]Examples[/]

  djtrace show latest
  djtrace show slowest --path '/books/*'
  djtrace show 3f9a2c                             [dim]# an id prefix from `djtrace list`[/]
  djtrace show latest --format json > trace.json
"""


def show(
    ref: Annotated[
        str,
        typer.Argument(metavar="ID|latest|slowest|FILE", help="A trace id (or prefix), or a file."),
    ],
    store: StoreOption = None,
    path: PathFilter = None,
    fmt: Annotated[
        Format, typer.Option("--format", help="tree (rich) or json (the trace format).")
    ] = Format.tree,
    hide_under: Annotated[
        float,
        typer.Option("--hide-under", metavar="MS", min=0, help="Hide detail spans under MS."),
    ] = DEFAULT_HIDE_UNDER_MS,
) -> None:
    """Show one captured request as the same timing tree `djtrace request` draws."""
    trace = load_trace(ref, store, make_filters(path) if path else None)
    if fmt is Format.json:
        typer.echo(json.dumps(trace.to_dict(), indent=2))
        return
    console = Console()
    console.print(Text(f"trace {trace.id}", "dim"))
    console.print(render_trace(trace, hide_under_ms=hide_under))


show.__doc__ = (show.__doc__ or "") + "\n\n" + SHOW_EXAMPLES


# --- stats --------------------------------------------------------------------------------

STATS_EXAMPLES = """
[bold]Examples[/]

  djtrace stats
  djtrace stats --since 1h --path '/api/*'
  djtrace stats --sort count
"""

_SHORT = {
    "middleware (before)": "mw in",
    "URL resolve": "URL",
    "templates": "tmpl",
    "sessions": "session",
    "middleware (after)": "mw out",
    "response": "resp",
    "unaccounted": "gaps",
}
#: A phase gets a column when its p95 is at least this share of some route's p95.
_PHASE_SHARE = 0.05


def _phase_columns(routes: list[aggregate.RouteStats], width: int) -> tuple[list[str], int]:
    """The phase kinds that matter (p95 at least 5% of some route's p95) and fit the width,
    and how many that matter did not fit."""
    weight = {
        name: max(r.phase_p(name) / max(r.p(95), 1) for r in routes)
        for name in aggregate.phase_names(routes)
    }
    wanted = [name for name, share in weight.items() if share >= _PHASE_SHARE]
    room = max(0, (width - 68) // 10)  # route, n, percentiles and queries take ~68 columns
    kept = set(sorted(wanted, key=lambda n: -weight[n])[:room])
    return [name for name in wanted if name in kept], len(wanted) - len(kept)


class StatsSort(str, Enum):
    p95 = "p95"
    p50 = "p50"
    count = "count"
    queries = "queries"


def stats(
    store: StoreOption = None,
    path: PathFilter = None,
    status: StatusFilter = None,
    method: MethodFilter = None,
    slower_than: SlowerFilter = None,
    since: SinceFilter = None,
    pid: PidFilter = None,
    sort: Annotated[StatsSort, typer.Option("--sort", help="Order of the routes.")] = (
        StatsSort.p95
    ),
) -> None:
    """Per route: how many requests, p50/p95/p99, mean queries, and the p95 of each phase kind."""
    filters = make_filters(path, status, method, slower_than, since, pid)
    file = store_path(store)
    rows, opened = with_store(file, lambda s: s.phase_rows(filters))
    if not rows:
        Console().print(f"no traces in {file}" + (" match" if filters != type(filters)() else ""))
        _lost(opened)
        return
    routes = aggregate.by_route(rows)
    key = {
        StatsSort.p95: lambda r: -r.p(95),
        StatsSort.p50: lambda r: -r.p(50),
        StatsSort.count: lambda r: -r.count,
        StatsSort.queries: lambda r: -r.mean_queries,
    }[sort]
    routes.sort(key=key)
    console = Console(highlight=False)
    phases, left_out = _phase_columns(routes, console.width)
    table = Table(
        title=f"{plural(len(rows), 'request')} · per route · phase columns: that phase's p95",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
    )
    table.add_column("route", no_wrap=True, overflow="ellipsis", min_width=16)
    table.add_column("n", justify="right", no_wrap=True)
    for name in ("p50", "p95", "p99"):
        table.add_column(name, justify="right", no_wrap=True, min_width=7)
    table.add_column("queries", justify="right", no_wrap=True)
    for name in phases:
        table.add_column(
            _SHORT.get(name, name), justify="right", no_wrap=True, min_width=7, style="dim"
        )
    slowest = max(r.p(95) for r in routes)
    for r in routes:
        table.add_row(
            f"{r.method} {r.route}",
            str(r.count),
            ms(r.p(50)),
            Text(ms(r.p(95)), share_style(r.p(95), slowest)),
            ms(r.p(99)),
            f"{r.mean_queries:.1f}",
            *[ms(r.phase_p(name)) for name in phases],
        )
    console.print(table)
    if left_out:
        console.print(
            Text(f"{plural(left_out, 'phase column')} left out: widen the terminal", "dim")
        )
    _lost(opened)


stats.__doc__ = (stats.__doc__ or "") + "\n\n" + STATS_EXAMPLES


# --- export / import ------------------------------------------------------------------------

EXPORT_EXAMPLES = """
[bold]Examples[/]

  djtrace export > traces.jsonl                 [dim]# every trace, oldest first[/]
  djtrace export -o slow.jsonl --slower-than 500 --since 1d
  djtrace export --to jsonl --path '/api/*'
"""


def export(
    to: Annotated[
        str,
        typer.Option("--to", help="Format: " + ", ".join(FORMATS) + "."),
    ] = "jsonl",
    output: Annotated[
        str | None,
        typer.Option("-o", "--output", help="Output file (or URL, for formats that send)."),
    ] = None,
    store: StoreOption = None,
    path: PathFilter = None,
    status: StatusFilter = None,
    method: MethodFilter = None,
    slower_than: SlowerFilter = None,
    since: SinceFilter = None,
    pid: PidFilter = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="The N newest.")] = None,
) -> None:
    """Export traces from the store (JSON Lines by default, oldest first)."""
    fmt = FORMATS.get(to)
    if fmt is None:
        raise CliError(f"unknown export format {to!r} (available: {', '.join(sorted(FORMATS))})")
    filters = make_filters(path, status, method, slower_than, since, pid)
    file = store_path(store)

    # The newest N ids, oldest first; then one trace at a time, so memory stays flat.
    ids, opened = with_store(
        file, lambda s: [r.id for r in reversed(s.summaries(filters, "time", limit))]
    )
    unreadable = 0

    def stream() -> Iterator[Trace]:
        nonlocal unreadable
        for trace_id in ids:
            try:
                yield opened.get(trace_id)
            except StoreError as exc:  # a damaged row: the others still go out
                unreadable += 1
                if unreadable <= 5:
                    warn(str(exc))

    try:
        count = fmt.load()(stream(), output)
    except OSError as exc:
        where = f" to {output}" if output not in (None, "-") else ""
        raise CliError(f"export --to {to}{where} failed: {exc.strerror or exc}", code=1) from None
    if output not in (None, "-"):
        Console(stderr=True, highlight=False).print(f"exported {count} traces to {output}")
    if unreadable:
        warn(f"{plural(unreadable, 'unreadable trace')} left out")
        opened.close()
        raise typer.Exit(1)
    _lost(opened)


export.__doc__ = (export.__doc__ or "") + "\n\n" + EXPORT_EXAMPLES

IMPORT_EXAMPLES = """
[bold]Examples[/]

  djtrace import traces.jsonl
  djtrace import ci-run.jsonl --store /tmp/ci.sqlite3
"""

_MAX_REPORTED = 20


def import_traces(
    file: Annotated[Path, typer.Argument(metavar="FILE.jsonl", help="JSON Lines, one trace each.")],
    store: StoreOption = None,
) -> None:
    """Load traces from a JSON Lines file into the store; bad lines are reported and skipped."""
    try:
        handle = open(file, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or exc}") from None
    target = store_path(store)
    try:
        opened = TraceStore.open(target, create=True)
    except StoreError as exc:
        handle.close()
        raise CliError(str(exc)) from None
    good = bad = added = 0
    batch: list[Trace] = []
    try:
        with handle:
            for number, item in jsonl.read(handle):
                if isinstance(item, Trace):
                    good += 1
                    batch.append(item)
                    if len(batch) >= 200:
                        added += opened.add(batch)
                        batch = []
                    continue
                bad += 1
                if bad <= _MAX_REPORTED:
                    warn(f"{file}:{number}: skipped: {item}")
            if batch:
                added += opened.add(batch)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    finally:
        opened.close()
    if bad > _MAX_REPORTED:
        warn(f"… and {bad - _MAX_REPORTED} more bad lines")
    console = Console(highlight=False)
    already = good - added
    console.print(
        f"imported {added} traces into {target}"
        + (f" ({already} already there)" if already else "")
        + (f"; skipped {bad} bad lines" if bad else "")
    )
    if bad:
        raise typer.Exit(1)


import_traces.__doc__ = (import_traces.__doc__ or "") + "\n\n" + IMPORT_EXAMPLES
