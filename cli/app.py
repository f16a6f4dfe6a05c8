"""The `djtrace` command line."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from cli.errors import CliError
from cli.request_cmd import request

app = typer.Typer(
    name="djtrace",
    no_args_is_help=True,
    rich_markup_mode="rich",
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("request")(request)


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
