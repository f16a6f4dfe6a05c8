"""`--break-on` and `--nth` for `request` and `replay` (in this process) and `capture` (in the
server's processes, which arm them from the environment: djtrace.breakpoints.arm_from_env)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from djtrace.cli.errors import CliError

BreakOnOption = Annotated[
    list[str] | None,
    typer.Option(
        "--break-on",
        metavar="EVENT",
        help="Stop in pdb (or PYTHONBREAKPOINT's debugger) in your code when this happens, with"
        " the tree so far: 'sql~/REGEX/', 'sql>50ms', 'n+1', 'view>200ms', 'cache.miss~/REGEX/'"
        " (repeatable; needs a terminal).",
        show_default=False,
    ),
]
NthOption = Annotated[
    int,
    typer.Option("--nth", min=1, help="With --break-on: stop at the Nth match, not the first."),
]

EXAMPLES = "".join(
    f"  {line}\n"
    for line in (
        "djtrace request /books/ --break-on n+1             [dim]# stop where the N+1 starts[/]",
        "djtrace request /books/ --break-on 'sql~/bookstore_author/' --nth 3",
        "djtrace request /cached/ --break-on 'cache.miss~/count/'",
        "djtrace request /books/ --break-on 'view>50ms' --asgi",
    )
)


def parse_break_on(specs: list[str] | None, nth: int) -> list[str]:
    """Check the breakpoints and the terminal before anything runs: one-line errors."""
    from djtrace.breakpoints import BreakpointError, check_terminal, parse

    if not specs:
        if nth != 1:
            raise CliError("--nth counts --break-on matches: give --break-on too")
        return []
    try:
        for spec in specs:
            parse(spec)
        check_terminal()
    except BreakpointError as exc:
        raise CliError(str(exc)) from None
    return specs


@contextlib.contextmanager
def armed(specs: list[str], nth: int) -> Iterator[None]:
    """The breakpoints armed around the block (nothing when there are none)."""
    if not specs:
        yield
        return
    from djtrace.breakpoints import BreakpointError, Breakpoints

    try:
        breakpoints = Breakpoints(specs, nth)
        breakpoints.arm()
    except BreakpointError as exc:
        raise CliError(str(exc)) from None
    try:
        yield
    finally:
        breakpoints.disarm()
    if not breakpoints.stops:
        typer.echo(f"djtrace: --break-on {' / '.join(specs)} never matched (--nth {nth})", err=True)


WorkerOption = Annotated[
    int | None,
    typer.Option(
        "--break-worker",
        metavar="PID",
        help="With --break-on under capture: only this server process stops (default: the"
        " first process to hit a breakpoint; the others go on).",
    ),
]


def capture_env(specs: list[str], nth: int, worker: int | None, scratch: Path) -> dict[str, str]:
    """What the captured server's processes need to arm the breakpoints themselves."""
    from djtrace.breakpoints import (
        ENV_BREAK_CLAIM,
        ENV_BREAK_NTH,
        ENV_BREAK_ON,
        ENV_BREAK_WORKER,
    )

    if not specs:
        if worker is not None:
            raise CliError("--break-worker names the process for --break-on: give --break-on too")
        return {}
    return {
        ENV_BREAK_ON: "\n".join(specs),
        ENV_BREAK_NTH: str(nth),
        ENV_BREAK_WORKER: str(worker) if worker is not None else "",
        ENV_BREAK_CLAIM: str(scratch / "break-claimed-by"),
    }
