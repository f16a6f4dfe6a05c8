"""`djtrace load analyze`: the load report for traffic another tool sent (wrk, k6, locust…),
from the traces a captured server stored during a window (lab/analyze_window.py)."""

from __future__ import annotations

import inspect
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from djtrace.cli.errors import CliError
from djtrace.cli.load_charts import render_charts
from djtrace.cli.load_cmd import JsonOption, ReportOption, SloOption, TimelineOption
from djtrace.cli.load_render import render_run
from djtrace.cli.render import flags_read_as_flags, plural, reflow_help, report_console
from djtrace.cli.report_cmd import write_report
from djtrace.cli.store_access import PathFilter, StoreOption, store_path, warn
from djtrace.cli.timeline_cmd import parse_offset, show_run_timeline
from djtrace.cli.timeline_data import DEFAULT_LIMIT, make_selection, read_window
from djtrace.exporters.run_store import save_run
from djtrace.exporters.store import StoreError, TraceStore
from djtrace.lab import analysis
from djtrace.lab.analyze_window import MIN_STAGE_REQUESTS, observed_run
from rich.console import Console
from rich.text import Text
from typer.core import TyperCommand

if TYPE_CHECKING:  # typer 0.29+ carries its own click and does not install `click`
    import click

ANALYZE_EXAMPLES = """
[bold]Examples[/]

  wrk -c8 -d10s http://127.0.0.1:8000/books/   [dim]# a server under capture[/]
  djtrace load analyze --since 1m              [dim]# a stage per burst[/]
  djtrace load analyze --since 10m --until 5m --path '/books/*'
  djtrace load analyze --tag nightly-k6 --report k6.html
"""


def analyze(
    store: StoreOption = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="The window's start: 30s, 10m (ago) or an ISO time."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="The window's end: 1m (ago) or an ISO time.")
    ] = None,
    tag: Annotated[
        str | None,
        typer.Option("--tag", help="Only requests whose X-Djtrace-Load header names this run."),
    ] = None,
    path: PathFilter = None,
    gap: Annotated[
        str,
        typer.Option("--gap", help="Untagged traffic: a pause this long (e.g. 1s) ends a stage."),
    ] = "1s",
    slo: SloOption = 200.0,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Read at most the newest N requests.")
    ] = DEFAULT_LIMIT * 10,
    json_file: JsonOption = None,
    timeline: TimelineOption = False,
    report: ReportOption = None,
) -> None:
    """The load report for another tool's traffic, from the traces of a window.

    Requests are joined by their X-Djtrace-Load header when the tool sends
    one (then the time before Django is known), and grouped into stages by
    time otherwise: a pause longer than --gap starts a new stage. The report
    reads as `djtrace load`'s does, and the run is kept in the store.
    """
    if since is None and tag is None:
        raise CliError("say which traffic: --since 10m (a window), or --tag RUN (tagged requests)")
    gap_ns = parse_offset(gap, "--gap")
    selection = make_selection(since, until, tag, None, path)
    file = store_path(store)
    window = read_window(file, selection, limit)
    if window.unreadable:
        warn(f"{plural(window.unreadable, 'unreadable trace')} left out")
    console = report_console()
    if not window.traces:
        raise CliError(f"no requests in this window of {file}", code=1)
    run_id = "observed-" + time.strftime("%Y%m%d-%H%M%S")
    run = observed_run(window.traces, run_id, str(file.absolute()), gap_ns)
    if not run["stages"]:
        raise CliError(
            f"only {plural(len(window.traces), 'request')} in this window, in bursts too small "
            f"to be stages (fewer than {MIN_STAGE_REQUESTS} requests each)",
            code=1,
        )
    run["summary"] = analysis.sweep_analysis(run["stages"], slo)
    _keep(console, run, file, json_file)
    render_run(console, run)
    console.print(render_charts(run, console.width, console.color_system is None))
    tagged = sum(s["tagged"] for s in run["stages"])
    console.print(
        Text(
            "  observed from stored traces: "
            + (
                f"{tagged} requests carried a send time; latency runs from it"
                if tagged
                else "no send times (no X-Djtrace-Load header): latency is inside Django "
                "only, stages are bursts of traffic, and c N is the mean in flight"
            )
            + "; gen: not measured (another tool sent the load)",
            "dim",
        ),
        soft_wrap=True,
    )
    if window.matched > len(window.traces):
        warn(f"only the newest {len(window.traces)} of {window.matched} requests (--limit)")
    if timeline:
        show_run_timeline(console, file, run)
    if report is not None:
        write_report(console, file, run, report)


def _keep(console: Console, run: dict[str, Any], file: Path, json_file: Path | None) -> None:
    try:
        with TraceStore.open(file) as opened:
            save_run(opened, run, "analyze " + ", ".join(sorted(_paths(run))[:3]))
    except StoreError as exc:
        console.print(Text(f"djtrace load analyze: the run was not kept: {exc}", "yellow"))
    if json_file is not None:
        try:
            json_file.write_text(json.dumps(run, separators=(",", ":")))
        except OSError as exc:
            raise CliError(f"cannot write {json_file}: {exc.strerror or exc}") from None


def _paths(run: dict[str, Any]) -> set[str]:
    return {r["target"] for s in run["stages"] for r in s.get("joined") or []}


analyze.__doc__ = inspect.cleandoc(analyze.__doc__ or "") + "\n\n" + ANALYZE_EXAMPLES

_analyze_app = typer.Typer(add_completion=False, rich_markup_mode="rich")
_analyze_app.command("analyze")(analyze)

_EPILOG = (
    "Load from another tool (wrk, k6, locust): [bold]djtrace load analyze --since 10m[/] "
    "builds this report from the traces of a window (see its --help)."
)


class LoadCommand(TyperCommand):
    """`djtrace load`, which also answers to `djtrace load analyze …`: a first argument of
    `analyze` hands the rest of the line to the analyze command (load's own arguments are
    paths, URLs or a server command, never that word)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.epilog = ((self.epilog or "") + "\n\n" + _EPILOG).strip()

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        if args and args[0] == "analyze":
            command = typer.main.get_command(_analyze_app)
            # Built here, not by the group that does it for every other command.
            flags_read_as_flags(command.get_params(typer.Context(command)))
            command.help = reflow_help(command.help)
            name = f"{info_name} analyze" if info_name else "analyze"
            return command.make_context(name, list(args[1:]), parent=parent, **extra)
        return super().make_context(info_name, args, parent=parent, **extra)
