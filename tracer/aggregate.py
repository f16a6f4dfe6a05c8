"""Aggregates over many traces: per-route percentiles of the duration and of each phase kind.

Works on plain summary values (as the trace store keeps them), not on whole traces, so a
store of thousands of traces aggregates without decoding a single span.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from djtrace.analysis import CATEGORIES

NO_ROUTE = "(no route)"


def percentile(sorted_values: Sequence[int], q: float) -> int:
    """Nearest-rank percentile (q in 0..100) of already sorted values; 0 when empty."""
    if not sorted_values:
        return 0
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class RouteStats:
    method: str
    route: str
    durations: list[int] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)
    phases: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    @property
    def count(self) -> int:
        return len(self.durations)

    def p(self, q: float) -> int:
        return percentile(self.durations, q)

    @property
    def mean_queries(self) -> float:
        return sum(self.queries) / len(self.queries) if self.queries else 0.0

    def phase_p(self, name: str, q: float = 95) -> int:
        """Percentile of one phase kind's time; a trace without that phase counts as 0."""
        values = sorted(self.phases.get(name, []) + [0] * (self.count - len(self.phases[name])))
        return percentile(values, q)


def by_route(
    rows: Iterable[tuple[str | None, str | None, int, int, dict[str, int]]],
) -> list[RouteStats]:
    """Group (method, route, duration, queries, phases) rows by method and route."""
    groups: dict[tuple[str, str], RouteStats] = {}
    for method, route, duration, queries, phases in rows:
        key = (method or "?", route if route is not None else NO_ROUTE)
        stats = groups.get(key)
        if stats is None:
            stats = groups[key] = RouteStats(*key)
        stats.durations.append(duration)
        stats.queries.append(queries)
        for name, ns in phases.items():
            stats.phases[name].append(ns)
    for stats in groups.values():
        stats.durations.sort()
    return list(groups.values())


def phase_names(stats: Iterable[RouteStats], q: float = 95) -> list[str]:
    """The phase kinds worth a column: non-zero at `q` for some route, in pipeline order."""
    stats = list(stats)
    return [n for n in CATEGORIES if any(s.phase_p(n, q) for s in stats)]
