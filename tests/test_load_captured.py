"""`djtrace load http://127.0.0.1:PORT/…` against a server already under `djtrace capture`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.capture_support import capture, free_port, gunicorn_args
from tests.conftest import run_djtrace


def test_load_of_a_captured_server_joins_its_traces_and_weighs_the_paths(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "run.json"
    with capture(tmp_path, gunicorn_args(port, 1, 2), port, "--quiet") as server:
        result = run_djtrace(
            "load", f"{server.base}/lab/io/?ms=5", f"{server.base}/api/books/=3",
            "-c", "2", "--duration", "1.5", "--warmup", "0.3", "--seed", "7",
            "--store", str(server.store), "--json", str(out),
            timeout=120,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads(out.read_text())
    assert run["server"]["command"] is None and run["server"]["base_url"] == server.base
    (stage,) = run["stages"]
    assert stage["analysis"]["join_share"] > 0.9
    # /api/books/ weighs 3 against 1: about three requests in four go there.
    by_target = [row[1] for row in stage["requests"]]
    share = by_target.count(1) / len(by_target)
    assert 0.6 < share < 0.9
    routes = {r["target"]: r["phases"].get("SQL", 0) > 0 for r in stage["joined"]}
    assert routes == {0: False, 1: True}  # the JSON view queries, the I/O view does not
    # No server was started, so there is nothing untraced to compare with.
    assert "overhead" not in run["summary"]
    # The run was kept in the capture's store.
    listed = run_djtrace("load", "--runs", "--store", str(server.store))
    assert run["run_id"] in listed.stdout
