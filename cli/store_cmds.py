"""Browsing the trace store: `djtrace list`, `show`, `stats`, `export` and `import`."""

from __future__ import annotations

import datetime as dt
import inspect
import json
from collections.abc import Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from djtrace import aggregate
from djtrace.body import redact_request
from djtrace.cli.errors import CliError
from djtrace.cli.render import (
    DEFAULT_HIDE_UNDER_MS,
    WidthOption,
    ms,
    plural,
    render_trace,
    report_console,
    share_style,
    tree_console,
)
from djtrace.cli.store_access import (
    MethodFilter,
    PathFilter,
    PidFilter,
    SinceFilter,
    SlowerFilter,
    StatusFilter,
    StoreOption,
    check_ms,
    finish,
    load_trace,
    make_filters,
    store_path,
    warn,
    with_store,
)
from djtrace.cli.store_json import echo_json, route_dict, summary_dict
from djtrace.cli.table_fit import Col, fit
from djtrace.exporters import jsonl
from djtrace.exporters.formats import FORMATS
from djtrace.exporters.store import Filters, StoreError, TraceStore, default_max_traces
from djtrace.model import Trace
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text


class Sort(str, Enum):
    time = "time"
    duration = "duration"
    queries = "queries"


class Format(str, Enum):
    tree = "tree"
    json = "json"


class TableFormat(str, Enum):
    table = "table"
    json = "json"


TableFormatOption = Annotated[
    TableFormat,
    typer.Option(
        "--format",
        help="table (rich) or json (an array of objects, for scripts: times in ms).",
    ),
]


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


# --- list ---------------------------------------------------------------------------------

LIST_EXAMPLES = """
[bold]Examples[/]

  djtrace list                                   [dim]# the 50 newest requests[/]
  djtrace list --sort duration --limit 10        [dim]# the 10 slowest[/]
  djtrace list --path '/books/*' --status 5xx --since 10m
  djtrace list --slower-than 200 --method POST --pid 4521
  djtrace list --format json | jq -r '.[].id'    [dim]# for scripts[/]
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
    fmt: TableFormatOption = TableFormat.table,
) -> None:
    """List the captured requests in the trace store, newest first."""
    filters = make_filters(path, status, method, slower_than, since, pid)
    file = store_path(store)
    (rows, total), opened = with_store(
        file, lambda s: (s.summaries(filters, sort.value, limit), s.count(filters))
    )
    if fmt is TableFormat.json:
        echo_json([summary_dict(row) for row in rows])
        _lost(opened)
        return
    console = report_console()
    if not rows:
        console.print(Text(no_match(file, filters), "dim"), soft_wrap=True)
        _lost(opened)
        return
    cells = [
        {
            "id": row.id[:10],
            "when": when(row.started_at),
            "request": f"{row.method or ''} {row.path or ''}"
            + (f"?{row.query}" if row.query else ""),
            "status": status_text(row.status),
            "time": Text(ms(row.duration)),
            "queries": str(row.queries),
            "route": row.route or "",
            "worker": worker(row.pid, row.thread),
        }
        for row in rows
    ]

    def column(name: str, **kwargs: Any) -> Col:
        return Col(name, [str(c[name]) for c in cells], **kwargs)

    layout = fit(
        [
            column("id"),
            column("when"),
            column("request", text=True, min_width=16),
            column("status"),
            column("time"),
            column("queries"),
            column("route", text=True, min_width=10, drop=1),
            column("worker", text=True, min_width=10, drop=2),
        ],
        console.width,
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    styles = {"id": "cyan", "route": "dim", "worker": "dim"}
    for name, width in layout.widths.items():
        table.add_column(
            name,
            style=styles.get(name),
            justify="right" if name in ("status", "time", "queries") else "left",
            width=width,
            no_wrap=True,
            overflow="ellipsis",
        )
    longest = max(r.duration for r in rows)
    for row, values in zip(rows, cells, strict=True):
        values["time"].stylize(share_style(row.duration, longest))
        table.add_row(*[values[name] for name in layout.widths])
    print_unshrunk(console, table, layout.total)
    shown_count = plural(total, "trace")
    if total > len(rows):
        shown_count = f"{len(rows)} of {shown_count}"
    note = f"{shown_count} in {file} · `djtrace show ID` for one as a tree"
    if layout.dropped:
        note += f" · {' and '.join(layout.dropped)} left out: widen the terminal (or set COLUMNS)"
    console.print(Text(note, "dim"), soft_wrap=True)
    _lost(opened)


def print_unshrunk(console: Console, table: Table, width: int) -> None:
    """Print `table` at `width` even on a narrower terminal (its lines wrap there): rich
    would otherwise squeeze the number columns, and a cut number is a wrong number."""
    terminal = console.width
    console.width = max(terminal, width)
    try:
        console.print(table)
    finally:
        console.width = terminal


def no_match(file: Path, filters: Filters) -> str:
    if filters != Filters():
        return f"no traces match these filters in {file}"
    return f"no traces in {file} yet"


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
    width: WidthOption = None,
) -> None:
    """Show one captured request as the same timing tree `djtrace request` draws."""
    trace, _, damaged = load_trace(ref, store, make_filters(path) if path else None)
    if fmt is Format.json:
        typer.echo(json.dumps(trace.to_dict(), indent=2))
    else:
        console = tree_console(width)
        console.print(Text(f"trace {trace.id}", "dim"))
        console.print(render_trace(trace, hide_under_ms=check_ms(hide_under)))
    finish(damaged)


show.__doc__ = (show.__doc__ or "") + "\n\n" + SHOW_EXAMPLES


# --- stats --------------------------------------------------------------------------------

STATS_EXAMPLES = """
[bold]Examples[/]

  djtrace stats
  djtrace stats --since 1h --path '/api/*'
  djtrace stats --sort count
  djtrace stats --by route        # by URL pattern only: a catch-all route's pages together
  djtrace stats --by path         # by the path requested: /books/1/ apart from /books/2/
  djtrace stats --format json | jq '.[] | {route, p95_ms}'
"""

#: Phase column headings, short so more of them fit; the abbreviations shown are explained.
_HEADING = {
    "middleware (before)": "mw in",
    "URL resolve": "URL",
    "templates": "tmpl",
    "error response": "error",
    "middleware (after)": "mw out",
    "response": "resp",
}
_MEANING = {
    "mw in": "middleware before the view",
    "tmpl": "templates",
    "error": "error response (exception → response)",
    "mw out": "middleware after the view",
    "resp": "response (render, send, close)",
}
_ROUTE_MIN = 14  # the route column never gets narrower than this (then: an ellipsis)
_ROUTE_KEEP = 60  # a phase column is shown only while the route column keeps this much


def _phase_columns(
    routes: list[aggregate.RouteStats], base: list[Col], width: int
) -> tuple[list[Col], int]:
    """The phase columns that fit after `base`, most important first (the largest p95 for
    any route; ties in pipeline order), shown in pipeline order; and how many did not fit.
    A column that would show 0.00 ms on every row is never shown."""
    candidates = []
    for order, name in enumerate(aggregate.phase_names(routes)):
        values = [r.phase_p(name) for r in routes]
        if all(ms(v) == ms(0) for v in values):
            continue
        heading = _HEADING.get(name, name)
        cells = [ms(v) if v else "—" for v in values]
        candidates.append((-max(values), order, Col(heading, cells), name))
    candidates.sort(key=lambda c: c[:2])
    chosen: list[tuple[int, Col, str]] = []
    for _, order, col, name in candidates:
        trial = [c for _, c, _ in sorted([*chosen, (order, col, name)], key=lambda c: c[0])]
        layout = fit([*base, *trial], width)
        keep = min(base[0].natural, _ROUTE_KEEP)  # which route (view, path) a row is comes first
        if layout.total > width or layout.widths[base[0].header] < keep:
            break
        chosen.append((order, col, name))
    chosen.sort(key=lambda c: c[0])
    return [c for _, c, _ in chosen], len(candidates) - len(chosen)


class StatsBy(str, Enum):
    page = "page"
    route = "route"
    view = "view"
    path = "path"


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
    by: Annotated[
        StatsBy,
        typer.Option(
            "--by",
            help="Group by page (the route, split by view where one route serves several: "
            "a DRF action, a catch-all route's views), route (URL pattern), view or path.",
        ),
    ] = StatsBy.page,
    fmt: TableFormatOption = TableFormat.table,
) -> None:
    """Per route: how many requests, p50/p95/p99, mean queries, and the p95 of each phase kind.

    Phase columns are the phase kinds with the largest p95 first, as many as the terminal
    fits; "unaccounted" is time no hook saw (as in `djtrace request`'s phase table).
    """
    filters = make_filters(path, status, method, slower_than, since, pid)
    file = store_path(store)
    rows, opened = with_store(file, lambda s: s.group_rows(filters, by.value))
    console = report_console()
    if not rows:
        if fmt is TableFormat.json:
            echo_json([])
        else:
            console.print(Text(no_match(file, filters), "dim"), soft_wrap=True)
        _lost(opened)
        return
    routes = aggregate.by_group(rows, by.value)
    key = {
        StatsSort.p95: lambda r: -r.p(95),
        StatsSort.p50: lambda r: -r.p(50),
        StatsSort.count: lambda r: -r.count,
        StatsSort.queries: lambda r: -r.mean_queries,
    }[sort]
    routes.sort(key=key)
    if fmt is TableFormat.json:
        names = aggregate.phase_names(routes)
        echo_json([route_dict(r, names) for r in routes])
        _lost(opened)
        return
    heading = by.value if by in (StatsBy.view, StatsBy.path) else "route"
    base = [
        Col(heading, [f"{r.method} {r.route}" for r in routes], text=True, min_width=_ROUTE_MIN),
        Col("n", [str(r.count) for r in routes]),
        *[Col(f"p{q}", [ms(r.p(q)) for r in routes]) for q in (50, 95, 99)],
        Col("queries", [f"{r.mean_queries:.1f}" for r in routes]),
    ]
    phases, left_out = _phase_columns(routes, base, console.width)
    layout = fit([*base, *phases], console.width)
    table = Table(
        title=f"{plural(len(rows), 'request')} · per {heading} · phase columns: that phase's p95",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
    )
    for i, (name, width) in enumerate(layout.widths.items()):
        table.add_column(
            name,
            justify="left" if i == 0 else "right",
            width=width,
            no_wrap=True,
            overflow="ellipsis",
            style="dim" if i >= len(base) else None,
        )
    slowest = max(r.p(95) for r in routes)
    columns = [*base, *phases]
    for i, r in enumerate(routes):
        cells: list[str | Text] = [c.cells[i] for c in columns]
        cells[3] = Text(ms(r.p(95)), share_style(r.p(95), slowest))
        table.add_row(*cells)
    print_unshrunk(console, table, layout.total)
    notes = [f"{short}: {meaning}" for short, meaning in _MEANING.items() if short in layout.widths]
    if left_out:
        notes.append(
            f"{plural(left_out, 'phase column')} left out: widen the terminal (or set COLUMNS)"
        )
    if notes:
        console.print(Text(" · ".join(notes), "dim"), soft_wrap=True)
    _lost(opened)


stats.__doc__ = inspect.cleandoc(stats.__doc__ or "") + "\n\n" + STATS_EXAMPLES


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
    except BrokenPipeError:
        raise  # the reader went away (`| head`): main() ends quietly
    except OSError as exc:
        where = f" to {output}" if output not in (None, "-") else ""
        raise CliError(f"export --to {to}{where} failed: {exc.strerror or exc}", code=1) from None
    if output not in (None, "-"):
        Console(stderr=True, highlight=False).print(
            f"exported {plural(count, 'trace')} to {output}", soft_wrap=True
        )
    if unreadable:
        warn(f"{plural(unreadable, 'unreadable trace')} left out")
        opened.close()
        raise typer.Exit(1)
    _lost(opened)


export.__doc__ = (export.__doc__ or "") + "\n\n" + EXPORT_EXAMPLES

IMPORT_EXAMPLES = """
[bold]Examples[/]

  djtrace import traces.jsonl                    [dim]# from `djtrace export`[/]
  djtrace import books.json                      [dim]# from `djtrace request --format json`[/]
  djtrace import ci-run.jsonl --store /tmp/ci.sqlite3
"""

_MAX_REPORTED = 20


class _Import:
    """Traces go to the store in batches; the store is created only when one arrives."""

    def __init__(self, target: Path) -> None:
        self.target = target
        self.store: TraceStore | None = None
        if target.exists():  # not a store, or from a newer djtrace: say so before reading
            self.store = self._open()
        self.batch: list[Trace] = []
        self.added = 0
        self.new_ids: set[str] = set()  # traces the store did not hold before

    def _open(self) -> TraceStore:
        try:
            return TraceStore.open(self.target, create=True)
        except StoreError as exc:
            raise CliError(str(exc)) from None

    def add(self, trace: Trace) -> None:
        trace.request = redact_request(trace.request)  # written by an older djtrace, or by hand
        self.batch.append(trace)
        if len(self.batch) >= 200:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        if self.store is None:
            self.store = self._open()
        ids = [t.id for t in self.batch]
        try:
            there = self.store.existing(ids)
            self.added += self.store.add(self.batch)
        except StoreError as exc:
            raise CliError(str(exc)) from None
        self.new_ids.update(i for i in ids if i not in there)
        self.batch = []

    def kept(self) -> int:
        """How many of the new traces the store still holds (it keeps only the newest)."""
        if self.store is None or not self.new_ids:
            return 0
        try:
            return len(self.store.existing(sorted(self.new_ids)))
        except StoreError as exc:
            raise CliError(str(exc)) from None

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def import_traces(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="JSON Lines (one trace each), or one trace document or a JSON array of them.",
        ),
    ],
    store: StoreOption = None,
) -> None:
    """Load traces into the store from JSON Lines (`djtrace export`) or a trace document
    (`djtrace request --format json`); bad lines are reported and skipped."""
    if file.is_dir():
        raise CliError(f"{file} is a directory, not a file of traces")
    try:
        handle = open(file, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or exc}") from None
    target = store_path(store)
    reader = jsonl.TraceReader(handle)
    good = bad = 0
    reported: list[tuple[int, jsonl.Bad]] = []  # the first few bad lines
    objects = False  # some line was a JSON object (else the file is not JSON Lines at all)
    sink = _Import(target)
    try:
        with handle:
            for number, item in reader:
                if isinstance(item, Trace):
                    good += 1
                    sink.add(item)
                    continue
                bad += 1
                objects = objects or item.json_object
                if len(reported) < _MAX_REPORTED:
                    reported.append((number, item))
            sink.flush()
            kept = sink.kept()
    finally:
        sink.close()
    if not good and not objects:
        raise CliError(f"{file} is not a JSON Lines file of djtrace traces; nothing imported")
    if not good and bad == 1:
        raise CliError(f"{file}: {reported[0][1]}; nothing imported")
    for number, item in reported:
        label = {"line": f":{number}", "item": f" item {number}"}.get(reader.unit, "")
        warn(f"{file}{label}: skipped: {item}")
    if bad > len(reported):
        warn(f"… and {bad - len(reported)} more bad {reader.unit}s")
    if not good:
        raise CliError(f"no trace in {file}; nothing imported")
    already = good - sink.added
    imported = f"imported {plural(sink.added, 'trace')} into {target}"
    if kept < sink.added:  # the oldest went again: the store keeps only the newest
        imported = (
            f"imported {kept} of {plural(sink.added, 'new trace')} into {target}: it keeps "
            f"the newest {default_max_traces()} ($DJTRACE_STORE_MAX)"
        )
    Console(highlight=False).print(
        imported
        + (f" ({already} already there)" if already else "")
        + (f"; skipped {plural(bad, f'bad {reader.unit}')}" if bad else ""),
        soft_wrap=True,
    )
    if bad:
        raise typer.Exit(1)


import_traces.__doc__ = inspect.cleandoc(import_traces.__doc__ or "") + "\n\n" + IMPORT_EXAMPLES
