"""Getting the user's Django project (or the bundled sample_site) ready to trace."""

from __future__ import annotations

import os
import sys
from importlib import import_module

from djtrace.cli.errors import CliError, describe

SAMPLE_SETTINGS = "djtrace.sample_site.settings"


def setup_django(settings: str | None = None, pythonpath: str | None = None) -> str:
    """Configure Django like manage.py would, install djtrace's hooks; return the settings module.

    Without --settings or DJANGO_SETTINGS_MODULE this is the bundled sample_site, whose
    database is created and seeded on first use in the user's data directory.
    """
    if pythonpath:
        path = os.path.abspath(pythonpath)
        if not os.path.isdir(path):
            raise CliError(f"--pythonpath {pythonpath!r} is not a directory")
        sys.path.insert(0, path)
    elif os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python manage.py` would see the project
    module = settings or os.environ.get("DJANGO_SETTINGS_MODULE") or SAMPLE_SETTINGS
    try:
        import_module(module)
    except ModuleNotFoundError as exc:
        hint = "" if pythonpath else " (is the project on the path? try --pythonpath)"
        raise CliError(f"cannot import settings module {module!r}: {exc}{hint}") from None
    except Exception as exc:
        raise CliError(
            f"settings module {module!r} failed to load: {type(exc).__name__}: {exc}"
        ) from None
    os.environ["DJANGO_SETTINGS_MODULE"] = module

    import django
    from django.core.exceptions import ImproperlyConfigured

    try:
        django.setup()
    except (ImproperlyConfigured, ImportError, LookupError, RuntimeError) as exc:
        raise CliError(f"Django setup failed for {module!r}: {type(exc).__name__}: {exc}") from None

    from djtrace import install

    install()
    if module == SAMPLE_SETTINGS:
        from djtrace.sample_site.seed import ensure_database

        try:
            ensure_database()
        except Exception as exc:  # e.g. DJTRACE_SAMPLE_DB=postgres with no server running
            raise CliError(f"sample_site's database is not usable: {describe(exc)}") from None
    return module
