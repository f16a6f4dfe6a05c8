#!/usr/bin/env python
"""Django's command-line utility for the sample site: `python sample_site/manage.py runserver`."""

import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djtrace.sample_site.settings")
    from django.core.management import execute_from_command_line

    if len(sys.argv) > 1 and sys.argv[1] == "runserver":
        # runserver checks migrations before loading the app: seed first on a fresh machine.
        import django
        from djtrace.sample_site.seed import ensure_database

        django.setup()
        ensure_database()
    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
