"""Ctrl-C during a load run: what was measured is still reported, and the server is stopped."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.load_support import gunicorn_command, interrupted_load


def test_ctrl_c_reports_the_stages_measured_and_stops_the_server(tmp_path: Path) -> None:
    store, out = tmp_path / "traces.sqlite3", tmp_path / "run.json"
    code, stdout, stderr = interrupted_load(
        store, "/lab/io/?ms=20", "-c", "2,4", "--duration", "60", "--warmup", "0",
        "--json", str(out), "--", *gunicorn_command("-w", "1", "--threads", "2"),
    )  # fmt: skip
    assert code == 130, stderr[-3000:]
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
