"""The `djtrace` command line."""

from __future__ import annotations

import os
import platform
import signal
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Annotated, Any, NoReturn

import typer
from djtrace.cli.capture_cmd import capture
from djtrace.cli.diff_cmd import diff
from djtrace.cli.errors import CliError
from djtrace.cli.load_analyze import LoadCommand
from djtrace.cli.load_cmd import load
from djtrace.cli.prune_cmd import prune
from djtrace.cli.render import flags_read_as_flags, reflow_help
from djtrace.cli.replay_cmd import replay
from djtrace.cli.request_cmd import request
from djtrace.cli.store_cmds import export, import_traces, list_traces, show, stats
from djtrace.cli.timeline_cmd import timeline
from rich.console import Console
from typer.core import TyperGroup


class DjtraceGroup(TyperGroup):
    """The command group; every command's flags (those registered later too) read as flags."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        flags_read_as_flags(params)
        return params

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            flags_read_as_flags(command.get_params(ctx))
            command.help = reflow_help(command.help)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self.help = reflow_help(self.help)
        super().format_help(ctx, formatter)


app = typer.Typer(
    name="djtrace",
    cls=DjtraceGroup,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
app.command("request")(request)
# capture: everything after the first argument (or after --) belongs to the server command.
app.command("capture", context_settings={"allow_interspersed_args": False})(capture)
# load: paths, then after -- the server command (read whole, like capture's);
# `djtrace load analyze …` is the analyze command (cli/load_analyze.py).
app.command("load", cls=LoadCommand)(load)
app.command("list")(list_traces)
app.command("show")(show)
app.command("stats")(stats)
app.command("diff")(diff)
app.command("replay")(replay)
app.command("export")(export)
app.command("import")(import_traces)
app.command("prune")(prune)
app.command("timeline")(timeline)


def version_line() -> str:
    try:
        ours = version("djtrace")
    except PackageNotFoundError:  # run from a source tree that was never installed
        ours = "unknown"
    import django

    return f"djtrace {ours} (Python {platform.python_version()}, Django {django.get_version()})"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def djtrace(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            help="Show djtrace's version (and Python's and Django's) and exit.",
            callback=_show_version,
            is_eager=True,
        ),
    ] = False,
) -> None:
    """Where did this Django request's time go? Trace every phase of the pipeline.

    Start in your project's folder with [bold]djtrace request /your/path/[/] (its manage.py
    says which settings), or try [bold]djtrace request /books/[/] anywhere else (the bundled
    sample_site). Inside a project with "djtrace" in INSTALLED_APPS, [bold]python manage.py
    djtrace …[/] offers the same commands.
    """


# typer 0.29 carries its own copy of click; older typers use click itself. Either way the
# classes are found from typer's public BadParameter.
_CLICK_ERROR: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)
_ABORTS: tuple[type[BaseException], ...] = tuple(
    {typer.Abort, getattr(sys.modules[_CLICK_ERROR.__module__], "Abort", typer.Abort)}
)


def main(args: Sequence[str] | None = None, prog_name: str = "djtrace") -> None:
    """The command line (`args`: sys.argv[1:] by default); ends the process with its status."""
    # rich answers a closed pipe with SystemExit(1); a closed pipe is not a failure.
    Console.on_broken_pipe = lambda console: _output_closed()  # type: ignore[method-assign]
    extra: dict[str, Any] = {} if args is None else {"args": list(args)}
    try:
        status = app(prog_name=prog_name, standalone_mode=False, **extra)
    except CliError as exc:
        _error(str(exc))
        sys.exit(exc.code)
    except _CLICK_ERROR as exc:
        # A usage error in one line, like every other error, not click's boxed page.
        ctx = getattr(exc, "ctx", None)
        see = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        _error(exc.format_message() + see)
        sys.exit(exc.exit_code)
    except _ABORTS:
        _error("aborted")
        sys.exit(1)
    except BrokenPipeError:
        _output_closed()
    except SystemExit:
        # click (typer's copy) answers a closed pipe by wrapping stdout in its
        # PacifyFlushWrapper and exiting 1; end as `cat` would instead.
        if type(sys.stdout).__name__ == "PacifyFlushWrapper":
            _output_closed()
        raise
    if isinstance(status, int) and status:  # --help and the like return their status
        sys.exit(status)


def _error(message: str) -> None:
    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)


def _output_closed() -> NoReturn:
    """The reader of our output went away (`djtrace list | head -1`): stop quietly, with
    the exit status of a process ended by SIGPIPE, as well-behaved Unix tools do."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.__stdout__.fileno())  # the final flush at exit must not fail again
    sys.exit(128 + signal.SIGPIPE)
