"""The `djtrace` command line."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from cli.capture_cmd import capture
from cli.diff_cmd import diff
from cli.errors import CliError
from cli.replay_cmd import replay
from cli.request_cmd import request
from cli.store_cmds import export, import_traces, list_traces, show, stats

app = typer.Typer(
    name="djtrace",
    no_args_is_help=True,
    rich_markup_mode="rich",
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("request")(request)
# capture: everything after the first argument (or after --) belongs to the server command.
app.command("capture", context_settings={"allow_interspersed_args": False})(capture)
app.command("list")(list_traces)
app.command("show")(show)
app.command("stats")(stats)
app.command("diff")(diff)
app.command("replay")(replay)
app.command("export")(export)
app.command("import")(import_traces)


@app.callback()
def djtrace() -> None:
    """Where did this Django request's time go? Trace every phase of the pipeline.

    Start with [bold]djtrace request /books/[/] (the bundled sample_site) or
    [bold]djtrace request /your/path/ --settings mysite.settings[/].
    """


def main() -> None:
    try:
        app(prog_name="djtrace")
    except CliError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.code)
