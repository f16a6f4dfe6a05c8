"""Server configurations side by side (`djtrace load … --compare CMD1 CMD2 …`): the same sweep
against each, and per configuration its throughput and p95/p99 at each concurrency, its
knee, its peak and what gave first. Pure functions over the runs' documents."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class Level:
    throughput: float
    p95: int
    p99: int
    errors: int


@dataclass
class Configuration:
    letter: str
    command: str
    run_id: str
    levels: dict[int, Level] = field(default_factory=dict)  # concurrency → figures
    knee: int | None = None  # concurrency of the knee stage (None: still rising)
    peak: float = 0.0
    peak_at: int | None = None
    gave_first: str | None = None  # the part of the latency that grew most, and why
    answer: str = ""


def configuration(letter: str, command: str, run: dict[str, Any]) -> Configuration:
    summary = run.get("summary") or {}
    closed = [s for s in run["stages"] if s["kind"] == "closed" and s["count"]]
    config = Configuration(letter, command, run["run_id"], answer=summary.get("answer", ""))
    for stage in closed:
        config.levels[stage["concurrency"]] = Level(
            throughput=stage["throughput"],
            p95=int(stage["latency"]["p95"]),
            p99=int(stage["latency"]["p99"]),
            errors=sum(stage["errors"].values()),
        )
        if stage["index"] == summary.get("knee_stage"):
            config.knee = stage["concurrency"]
    if config.levels:
        config.peak_at, best = max(config.levels.items(), key=lambda item: item[1].throughput)
        config.peak = best.throughput
    grew = summary.get("grew_most")
    if grew:
        config.gave_first = f"{grew['component']}: {grew['why']}"
    return config


def compare(runs: list[tuple[str, dict[str, Any]]]) -> list[Configuration]:
    """(command, run) per configuration, in the order they ran → lettered configurations."""
    return [
        configuration(LETTERS[i % len(LETTERS)], command, run)
        for i, (command, run) in enumerate(runs)
    ]


def levels(configs: list[Configuration]) -> list[int]:
    return sorted({c for config in configs for c in config.levels})


def verdict(configs: list[Configuration]) -> str:
    """One line: which configuration served most, by how much, and where each levels off."""
    ranked = sorted((c for c in configs if c.levels), key=lambda c: c.peak, reverse=True)
    if not ranked:
        return "No configuration completed a stage."
    best = ranked[0]
    parts = [f"{best.letter} peaks highest: {best.peak:.0f} req/s at {best.peak_at} concurrent"]
    for other in ranked[1:]:
        ratio = best.peak / other.peak if other.peak else float("inf")
        parts.append(f"{other.letter} {other.peak:.0f} req/s ({best.letter} serves {ratio:.2f}×)")
    return "; ".join(parts) + "."
