"""`python manage.py djtrace …`: the `djtrace` command line from inside a project.

Everything after `djtrace` goes to the same commands as the `djtrace` executable
(`python manage.py djtrace request /books/`, `… djtrace list --since 1h`); the project is
the one manage.py set up, its settings and its sys.path.
"""

from __future__ import annotations

import os
from argparse import REMAINDER, ArgumentParser
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "djtrace's commands (request, capture, list, show, stats, …) in this project."
    requires_system_checks: list[str] = []  # `djtrace request` runs the project's own checks

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("args", nargs=REMAINDER, help="A djtrace command and its options.")

    def run_from_argv(self, argv: list[str]) -> None:
        # Django's own parser would claim --help, --settings and the rest: djtrace's parse them
        # (manage.py has already acted on --settings and --pythonpath).
        from djtrace.cli import project
        from djtrace.cli.app import main

        project.launched_by = Path(argv[0]).resolve()
        main(argv[2:], prog_name=f"{os.path.basename(argv[0])} djtrace")

    def handle(self, *args: str, **options: Any) -> None:
        """`call_command("djtrace", "request", "/books/")`: a failure raises CommandError."""
        from djtrace.cli.app import main

        try:
            main(list(args), prog_name="djtrace")
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise CommandError(f"djtrace {' '.join(args)} exited {exc.code}") from None
