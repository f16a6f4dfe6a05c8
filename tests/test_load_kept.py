"""A kept load run, read back from the store: `--show RUN` with the options that go with it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import run_djtrace
from tests.load_support import gunicorn_command, load_run


def test_show_with_json_writes_the_kept_runs_document(tmp_path: Path) -> None:
    run, _ = load_run(
        tmp_path,
        ["/lab/io/?ms=5"],
        gunicorn_command("-w", "1"),
        "-c", "1", "-d", "0.5", "--warmup", "0", "--no-overhead-check",
    )  # fmt: skip
    again = tmp_path / "again.json"
    shown = run_djtrace(
        "load", "--show", "last", "--json", str(again),
        "--store", str(tmp_path / "traces.sqlite3"),
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert run["run_id"] in shown.stdout
    written = json.loads(again.read_text())
    assert written["run_id"] == run["run_id"]
    assert [s["count"] for s in written["stages"]] == [s["count"] for s in run["stages"]]
    assert written["summary"]["answer"] == run["summary"]["answer"]


def test_show_with_json_under_a_file_is_a_one_line_error(tmp_path: Path) -> None:
    load_run(
        tmp_path,
        ["/lab/io/?ms=5"],
        gunicorn_command("-w", "1"),
        "-c", "1", "-d", "0.5", "--warmup", "0", "--no-overhead-check",
    )  # fmt: skip
    shown = run_djtrace(
        "load", "--show", "last", "--json", str(tmp_path / "traces.sqlite3" / "run.json"),
        "--store", str(tmp_path / "traces.sqlite3"),
    )  # fmt: skip
    assert shown.returncode == 2
    (line,) = shown.stderr.splitlines()
    assert line.startswith("error: --json ") and "cannot make" in line
