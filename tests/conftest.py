"""The suite runs real requests through sample_site's real stack.

sample_site's SQLite database lives in a temporary data directory made for the session,
so the suite never touches the user's own djtrace data.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_DATA = tempfile.mkdtemp(prefix="djtrace-tests-")


def pytest_configure(config: pytest.Config) -> None:
    os.environ["DJTRACE_SAMPLE_DATA"] = _DATA
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sample_site.settings")
    for name in ("DJTRACE_SAMPLE_DB", "DJTRACE_SAMPLE_CACHE", "DJTRACE_SAMPLE_SESSION_ENGINE"):
        os.environ.pop(name, None)  # the in-process suite runs on the embedded defaults

    import django

    django.setup()
    from sample_site.seed import ensure_database

    ensure_database()


def pytest_unconfigure(config: pytest.Config) -> None:
    shutil.rmtree(_DATA, ignore_errors=True)


@pytest.fixture
def client():
    from django.test import Client

    return Client(raise_request_exception=False)


@pytest.fixture
def data_dir() -> str:
    return _DATA


def run_djtrace(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the real `djtrace` command line in a child process, as a user would."""
    full_env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or ROOT,
        timeout=timeout,
    )


@pytest.fixture
def djtrace() -> Iterator:
    yield run_djtrace
