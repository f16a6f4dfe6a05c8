"""Ctrl-C during `djtrace load --compare`: the configurations measured so far are shown,
the rest are not started, and the exit status is 130 as for a single run."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.capture_support import PATIENCE_S
from tests.conftest import ROOT
from tests.load_support import gunicorn_command, stored_traces


def test_ctrl_c_during_compare_stops_every_configuration_with_status_130(tmp_path: Path) -> None:
    store = tmp_path / "traces.sqlite3"
    first = shlex.join(gunicorn_command("-w", "1"))
    second = shlex.join(gunicorn_command("-w", "2"))
    process = subprocess.Popen(
        [
            sys.executable, "-m", "djtrace.cli", "load", "/lab/io/?ms=20",
            "-c", "2,4", "--duration", "60", "--warmup", "0", "--store", str(store),
            "--compare", first, second,
        ],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "120", "NO_COLOR": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
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
    assert process.returncode == 130, stdout[-2000:] + stderr[-2000:]
    assert "Traceback" not in stderr
    assert "configuration B" not in stdout  # not started after the Ctrl-C
    assert "the only stage measured before the run was stopped" in " ".join(stdout.split())
    assert "sweep several" not in stdout
