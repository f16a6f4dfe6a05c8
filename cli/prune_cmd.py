"""`djtrace prune`: make room in the trace store (older than an age, or all but the newest N)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import typer
from djtrace.cli.errors import CliError
from djtrace.cli.render import plural
from djtrace.cli.store_access import StoreOption, parse_since, store_path, with_store
from rich.console import Console

EXAMPLES = """
[bold]Examples[/]

  djtrace prune --older-than 7d                  [dim]# what was recorded over a week ago[/]
  djtrace prune --keep 1000                      [dim]# all but the 1000 newest[/]
  djtrace prune --older-than 2h --keep 500 --store /tmp/ci.sqlite3
"""


def prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Delete traces recorded before this: an age (30m, 12h, 7d, 2w) or an ISO date.",
            show_default=False,
        ),
    ] = None,
    keep: Annotated[
        int | None,
        typer.Option(
            "--keep",
            metavar="N",
            min=0,
            help="Delete all but the N newest traces.",
            show_default=False,
        ),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Delete old traces from the store; the others stay as they were.

    A running `djtrace capture` may go on writing meanwhile. The store also keeps itself to
    the newest 10,000 traces ($DJTRACE_STORE_MAX) as it is written.
    """
    if older_than is None and keep is None:
        raise CliError("say what to delete: --older-than AGE (e.g. 7d) and/or --keep N")
    before = None
    if older_than is not None:
        try:
            before = parse_since(older_than, dt.datetime.now().astimezone())
        except CliError:
            raise CliError(
                f"--older-than {older_than!r}: use an age like 30m, 12h, 7d, 2w, or an ISO date"
            ) from None
    file = store_path(store)
    (removed, left), opened = with_store(file, lambda s: (s.prune(before, keep), s.count()))
    opened.close()
    Console(highlight=False).print(
        f"pruned {plural(removed, 'trace')} from {file}; {plural(left, 'trace')} left",
        soft_wrap=True,
    )


prune.__doc__ = (prune.__doc__ or "") + "\n\n" + EXAMPLES
