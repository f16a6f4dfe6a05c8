"""Running `djtrace load` against real servers it starts on loopback, for the lab's tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gunicorn.config

from tests.capture_support import PATIENCE_S
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


def interrupted_load(store: Path, *args: str) -> tuple[int, str, str]:
    """Run `djtrace load ARGS --store STORE`, press Ctrl-C once 30 traces are stored; its
    exit status, stdout and stderr."""
    process = subprocess.Popen(
        [sys.executable, "-m", "djtrace.cli", "load", "--store", str(store), *args],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "120", "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + PATIENCE_S
        while stored_traces(store) < 30 and time.monotonic() < deadline:
            assert process.poll() is None, process.communicate()
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)  # what a terminal's Ctrl-C sends djtrace
        stdout, stderr = process.communicate(timeout=PATIENCE_S)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, stdout, stderr


def analyzed(tmp: Path, traces: list[Any], *options: str) -> tuple[dict[str, Any], str]:
    """Store `traces`, run `djtrace load analyze OPTIONS` over them; the run document and
    what it printed."""
    from djtrace.exporters.store import TraceStore

    store, out = tmp / "traces.sqlite3", tmp / "run.json"
    with TraceStore.open(store, create=True) as opened:
        opened.add(traces)
    result = run_djtrace("load", "analyze", *options, "--store", str(store), "--json", str(out))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    return json.loads(out.read_text()), result.stdout


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
