"""A user's Django project written into a temporary folder, as `django-admin startproject`
would lay it out: manage.py beside the `shop` package.

With `shadowing`, the project also has its own top-level `cli`, `tracer`, `exporters`,
`sample_site` and `djtrace_*` modules (names djtrace's repository folders use), and its
view answers 500 unless each import found the project's own module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

MANAGE_PY = """\
#!/usr/bin/env python
import os
import sys


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
"""

SETTINGS = """\
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "user-project-secret"
DEBUG = False
ALLOWED_HOSTS = ["shop.example", "127.0.0.1", "testserver"]
ROOT_URLCONF = "shop.urls"
INSTALLED_APPS = {apps!r}
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES = {{
    "default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
}}
USE_TZ = True
"""

URLS = """\
from django.urls import path

from shop import views

urlpatterns = [path("hello/", views.hello), path("boom/", views.boom)]
"""

PLAIN_VIEWS = """\
from django.db import connection
from django.http import HttpResponse


def hello(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("hello from shop")


def boom(request):
    raise RuntimeError("shop's deliberate failure")
"""

SHADOWING_VIEWS = """\
from pathlib import Path

from django.conf import settings
from django.db import connection
from django.http import HttpResponse

import cli
import djtrace_helpers
import exporters
import sample_site
import tracer


def hello(request):
    for module in (cli, tracer, exporters, sample_site, djtrace_helpers):
        if not Path(module.__file__).resolve().is_relative_to(settings.BASE_DIR):
            raise RuntimeError(f"{module.__name__} is not the project's: {module.__file__}")
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    words = [cli.WORD, tracer.WORD, exporters.WORD, sample_site.WORD, djtrace_helpers.WORD]
    return HttpResponse(" ".join(words))


def boom(request):
    raise RuntimeError("shop's deliberate failure")
"""

WSGI = """\
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
application = get_wsgi_application()
"""

#: What the shadowing project's /hello/ answers when every import found its own module.
SHADOWING_BODY = "user-cli user-tracer user-exporters user-sample_site user-djtrace_helpers"


def write_project(root: Path, shadowing: bool = False, djtrace_app: bool = False) -> Path:
    """The project in `root` (made if needed); returns `root`."""
    apps = ["django.contrib.contenttypes"] + (["djtrace"] if djtrace_app else [])
    files = {
        "manage.py": MANAGE_PY,
        "shop/__init__.py": "",
        "shop/settings.py": SETTINGS.format(apps=apps),
        "shop/urls.py": URLS,
        "shop/views.py": SHADOWING_VIEWS if shadowing else PLAIN_VIEWS,
        "shop/wsgi.py": WSGI,
    }
    if shadowing:
        files.update(
            {
                "cli/__init__.py": 'WORD = "user-cli"\n',
                # A module, not a package: "'tracer' is not a package" if anyone imports
                # tracer.something from it.
                "tracer.py": 'WORD = "user-tracer"\n\n\ndef trace():\n    return "not djtrace"\n',
                "exporters/__init__.py": 'WORD = "user-exporters"\n',
                "sample_site/__init__.py": 'WORD = "user-sample_site"\n',
                "djtrace_helpers.py": 'WORD = "user-djtrace_helpers"\n',
            }
        )
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def project_env(**extra: str) -> dict[str, str]:
    """The environment of a user in a shell: no DJANGO_SETTINGS_MODULE (the suite sets one
    for itself) and no COLUMNS."""
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "COLUMNS")}
    env.update({"NO_COLOR": "1", **extra})
    return env


def python_in(
    cwd: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """`python ARGS` run by a user whose shell is in `cwd`."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=project_env(**env),
        timeout=timeout,
    )


def djtrace_in(
    cwd: Path, *args: str, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """`djtrace ARGS` run by a user whose shell is in `cwd`."""
    return python_in(cwd, "-m", "djtrace.cli", *args, timeout=timeout, **env)
