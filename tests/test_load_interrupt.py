"""Ctrl-C during a load run: what was measured is still reported, and the server is stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.capture_support import PATIENCE_S
from tests.conftest import ROOT
from tests.load_support import gunicorn_command, stored_traces


def test_ctrl_c_reports_the_stages_measured_and_stops_the_server(tmp_path: Path) -> None:
    store, out = tmp_path / "traces.sqlite3", tmp_path / "run.json"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "djtrace.cli",
            "load",
            "/lab/io/?ms=20",
            "-c",
            "2,4",
            "--duration",
            "60",
            "--warmup",
            "0",
            "--store",
            str(store),
            "--json",
            str(out),
            "--",
            *gunicorn_command("-w", "1", "--threads", "2"),
        ],
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
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr
    assert "stopped early" in stdout
    run = json.loads(out.read_text())
    assert run["interrupted"] is True
    (stage,) = run["stages"]  # the second stage never started
    assert stage["interrupted"] and stage["count"] >= 20
    assert stage["analysis"]["joined"] >= 20
    # The server djtrace started is gone: nothing listens on its port any more.
    port = int(run["server"]["base_url"].rsplit(":", 1)[1])
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
    assert run["server"]["exit_code"] is not None
