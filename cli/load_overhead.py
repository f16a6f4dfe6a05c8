"""Tracing must not change the answer: the knee stage rerun against the same server
started without capture, and the throughput difference reported.

The untraced rerun is one stage at another moment on a shared machine, so its difference
carries that moment's noise too; the report gives both throughputs, not just the ratio.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from djtrace.cli.load_server import Server, bind_command, free_port
from djtrace.cli.load_targets import log_in
from djtrace.lab.engine import EnginePlan, StagePlan, Target
from rich.console import Console
from rich.text import Text


def knee_or_peak(run: dict[str, Any]) -> dict[str, Any] | None:
    summary = run.get("summary") or {}
    index = summary.get("knee_stage") or summary.get("peak_stage")
    return next((s for s in run["stages"] if s["index"] == index), None)


def measure_overhead(
    console: Console,
    run: dict[str, Any],
    command: list[str],
    user: str | None,
    login_url: str,
    start_timeout: float,
    drive: Any,
) -> dict[str, Any] | None:
    """Rerun the knee (or peak) closed stage untraced; None when there is nothing to rerun."""
    stage = knee_or_peak(run)
    if stage is None or stage["kind"] != "closed" or not stage["count"]:
        return None
    planned = next(s for s in run["settings"]["stages"] if s["index"] == stage["index"])
    console.print(
        Text(
            f"djtrace load: rerunning the knee stage ({stage['concurrency']} concurrent) with "
            "the server started without capture, for tracing's own effect",
            "dim",
        ),
        soft_wrap=True,
    )
    bound, port = bind_command(command, free_port())
    base = f"http://127.0.0.1:{port}"
    targets = [Target(**t) for t in run["settings"]["targets"]]
    with tempfile.TemporaryDirectory(prefix="djtrace-load-untraced-") as scratch:
        server = Server(bound, Path(scratch) / "unused", Path(scratch), {}, traced=False)
        try:
            server.wait_until_serving(base + targets[0].path, start_timeout)
            cookies = log_in(base, login_url, user) if user else {}
            plan = EnginePlan(
                base_url=base,
                run_id=f"{run['run_id']}-untraced",
                targets=targets,
                stages=[StagePlan(**{**planned, "index": stage["index"]})],
                timeout_s=run["settings"]["timeout_s"],
                max_inflight=run["settings"]["max_inflight"],
                cookies=cookies,
            )
            results, interrupted, error = drive(console, plan)
        finally:
            server.stop()
    if error or interrupted or not results or not results[0]["count"]:
        return None
    untraced = results[0]["throughput"]
    traced = stage["throughput"]
    return {
        "stage": stage["index"],
        "concurrency": stage["concurrency"],
        "traced": traced,
        "untraced": untraced,
        "difference": 1 - traced / untraced if untraced else None,
        "untraced_latency": results[0]["latency"],
        "sample": run["settings"].get("sample"),
    }
