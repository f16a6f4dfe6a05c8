"""Ctrl-C during `djtrace load --compare`: the configurations measured so far are shown,
the rest are not started, and the exit status is 130 as for a single run."""

from __future__ import annotations

import shlex
from pathlib import Path

from tests.load_support import gunicorn_command, interrupted_load


def test_ctrl_c_during_compare_stops_every_configuration_with_status_130(tmp_path: Path) -> None:
    store = tmp_path / "traces.sqlite3"
    first = shlex.join(gunicorn_command("-w", "1"))
    second = shlex.join(gunicorn_command("-w", "2"))
    code, stdout, stderr = interrupted_load(
        store, "/lab/io/?ms=20", "-c", "2,4", "--duration", "60", "--warmup", "0",
        "--compare", first, second,
    )  # fmt: skip
    assert code == 130, stdout[-2000:] + stderr[-2000:]
    assert "Traceback" not in stderr
    assert "configuration B" not in stdout  # not started after the Ctrl-C
    assert "the only stage measured before the run was stopped" in " ".join(stdout.split())
    assert "sweep several" not in stdout
