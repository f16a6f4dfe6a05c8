"""`--break-on` and `--nth` for the commands that run requests in-process (request, replay)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
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
