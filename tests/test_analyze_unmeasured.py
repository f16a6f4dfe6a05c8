"""`djtrace load analyze` shows what another tool's load leaves unmeasured as unknown ("–"),
never as a measured zero: the body's way back to the client, and the generator's CPU."""

from __future__ import annotations

import time
from pathlib import Path

from tests.load_support import analyzed


def test_tagged_traffic_from_another_tool_has_no_after_and_no_generator_share(
    client, tmp_path: Path
) -> None:
    from djtrace import trace
    from djtrace.lab.tag import format_tag

    with trace() as session:
        for seq in range(6):
            tag = format_tag("k6-run", 1, seq, time.time_ns())
            client.get("/lab/io/?ms=5", HTTP_X_DJTRACE_LOAD=tag)
    run, out = analyzed(tmp_path, session.traces, "--tag", "k6-run")
    (stage,) = run["stages"]
    assert "after (body to client)" not in stage["analysis"]["split"]
    assert "before Django" in stage["analysis"]["split"]  # the tag's send time: known
    row = next(line for line in out.splitlines() if line.lstrip().startswith("c "))
    cells = row.split()
    # load req/s p50 p95 p99 max err before inside after busy X·W gen
    assert cells[-1] == "–", row  # gen: another tool sent the load
    assert cells[-4] == "–", row  # after: the client's receipt is not stored
