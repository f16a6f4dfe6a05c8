"""Running `djtrace load` against real servers it starts on loopback, for the lab's tests."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import gunicorn.config

from tests.conftest import ROOT, run_djtrace

#: A hang guard for a whole load run (server start, stages, stop), not a performance limit.
RUN_PATIENCE_S = 240


def gunicorn_command(*options: str) -> list[str]:
    """gunicorn serving sample_site, without a bind: djtrace load chooses the port."""
    args = [sys.executable, "-m", "gunicorn", "djtrace.sample_site.wsgi", "--chdir", str(ROOT)]
    if any(s.name == "control_socket_disable" for s in gunicorn.config.KNOWN_SETTINGS):
        args.append("--no-control-socket")  # gunicorn 24+: one shared socket path per user
    return [*args, *options]


def stored_traces(store: Path) -> int:
    """How many traces the store holds so far (0 before capture has made it)."""
    from djtrace.exporters.store import StoreError, TraceStore

    try:
        with TraceStore.open(store) as opened:
            return opened.count()
    except StoreError:
        return 0


def uvicorn_command(*options: str) -> list[str]:
    return [sys.executable, "-m", "uvicorn", "djtrace.sample_site.asgi:application", *options]


def load_run(
    tmp: Path,
    paths: list[str],
    command: list[str],
    *options: str,
    env: dict[str, str] | None = None,
) -> tuple[dict[str, Any], str]:
    """Run `djtrace load PATHS OPTIONS -- COMMAND`; the run document and what it printed."""
    out = tmp / "run.json"
    result = run_djtrace(
        "load",
        *paths,
        "--store",
        str(tmp / "traces.sqlite3"),
        "--json",
        str(out),
        *options,
        "--",
        *command,
        env=env,
        timeout=RUN_PATIENCE_S,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text()), result.stdout
