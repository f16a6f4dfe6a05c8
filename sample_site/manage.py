#!/usr/bin/env python
"""Django's command-line utility for the sample site: `python sample_site/manage.py runserver`."""

import os
import sys
from pathlib import Path


def main() -> None:
    # Run as a script, sys.path[0] is sample_site/ itself; the repo root is needed to import it.
    repo_root = str(Path(__file__).resolve().parent.parent)
    if repo_root not in sys.path:
        sys.path.insert(0, repo_root)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_site.settings")
    from django.core.management import execute_from_command_line

    if len(sys.argv) > 1 and sys.argv[1] == "runserver":
        # runserver checks migrations before loading the app: seed first on a fresh machine.
        import django

        from sample_site.seed import ensure_database

        django.setup()
        ensure_database()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
