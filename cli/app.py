"""The `djtrace` command line."""

from __future__ import annotations

import os
import signal
import sys
from typing import NoReturn

import typer
from djtrace.cli.capture_cmd import capture
from djtrace.cli.diff_cmd import diff
from djtrace.cli.errors import CliError
from djtrace.cli.replay_cmd import replay
from djtrace.cli.request_cmd import request
from djtrace.cli.store_cmds import export, import_traces, list_traces, show, stats
from rich.console import Console

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
    # rich answers a closed pipe with SystemExit(1); a closed pipe is not a failure.
    Console.on_broken_pipe = lambda console: _output_closed()  # type: ignore[method-assign]
    try:
        app(prog_name="djtrace")
    except CliError as exc:
        Console(stderr=True).print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.code)
    except BrokenPipeError:
        _output_closed()
    except SystemExit:
        # click (typer's copy) answers a closed pipe by wrapping stdout in its
        # PacifyFlushWrapper and exiting 1; end as `cat` would instead.
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":
            _output_closed()
        raise


def _output_closed() -> NoReturn:
    """The reader of our output went away (`djtrace list | head -1`): stop quietly, with
    the exit status of a process ended by SIGPIPE, as well-behaved Unix tools do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.__stdout__.fileno())  # the final flush at exit must not fail again
    sys.exit(128 + signal.SIGPIPE)
