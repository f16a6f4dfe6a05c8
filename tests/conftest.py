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
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djtrace.sample_site.settings")
    for name in ("DJTRACE_SAMPLE_DB", "DJTRACE_SAMPLE_CACHE", "DJTRACE_SAMPLE_SESSION_ENGINE"):
        os.environ.pop(name, None)  # the in-process suite runs on the embedded defaults

    import django

    django.setup()
    from djtrace.sample_site.seed import ensure_database

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
        [sys.executable, "-m", "djtrace.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd or ROOT,
        timeout=timeout,
    )


@pytest.fixture
def djtrace() -> Iterator:
    yield run_djtrace


# --- real services (PostgreSQL, Redis) --------------------------------------------------------

PG_HOST, PG_PORT, PG_USER = "127.0.0.1", 5432, "postgres"
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379


def _service_missing(what: str, exc: BaseException) -> None:
    """Skip (on a user's machine) or fail (in CI, DJTRACE_REQUIRE_SERVICES=1) without it."""
    reason = f"{what} is not reachable ({type(exc).__name__}: {exc}); start it to run this test"
    if os.environ.get("DJTRACE_REQUIRE_SERVICES") == "1":
        pytest.fail(f"DJTRACE_REQUIRE_SERVICES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres() -> dict[str, object]:
    """Connection settings of the real PostgreSQL at 127.0.0.1:5432 (trust auth, user postgres)."""
    conninfo: dict[str, object] = {"host": PG_HOST, "port": PG_PORT, "user": PG_USER}
    try:
        import psycopg

        with psycopg.connect(dbname="postgres", connect_timeout=3, **conninfo) as conn:
            conn.execute("SELECT 1")
    except Exception as exc:
        _service_missing(f"PostgreSQL at {PG_HOST}:{PG_PORT}", exc)
    return conninfo


@pytest.fixture(scope="session")
def redis() -> str:
    """The URL of the real Redis at 127.0.0.1:6379 (append a db number)."""
    try:
        import redis as redis_client

        redis_client.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_timeout=3).ping()
    except Exception as exc:
        _service_missing(f"Redis at {REDIS_HOST}:{REDIS_PORT}", exc)
    return f"redis://{REDIS_HOST}:{REDIS_PORT}"
