"""Two runs side by side, stage by stage (before and after a change)."""

from __future__ import annotations

from typing import Any

from djtrace.lab.analysis import AFTER, BEFORE, INSIDE
from djtrace.lab.document import stage_key, stage_label


def _mean(stage: dict[str, Any], part: str) -> int | None:
    split = (stage.get("analysis") or {}).get("split") or {}
    return split[part]["mean"] if part in split else None


def compare_runs(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per stage load present in both runs: A's and B's figures and B/A ratios."""
    by_key = {stage_key(s): s for s in b["stages"]}
    rows = []
    for sa in a["stages"]:
        sb = by_key.get(stage_key(sa))
        if sb is None:
            continue
        row: dict[str, Any] = {"stage": stage_label(sa), "a": {}, "b": {}}
        for side, stage in (("a", sa), ("b", sb)):
            row[side] = {
                "throughput": stage["throughput"],
                "p50": stage["latency"]["p50"],
                "p95": stage["latency"]["p95"],
                "p99": stage["latency"]["p99"],
                "errors": sum(stage["errors"].values()),
                BEFORE: _mean(stage, BEFORE),
                INSIDE: _mean(stage, INSIDE),
                AFTER: _mean(stage, AFTER),
            }
        ta, tb = row["a"]["throughput"], row["b"]["throughput"]
        row["throughput_ratio"] = tb / ta if ta else None
        rows.append(row)
    return rows
