"""Aggregates over many traces: per-page percentiles of the duration and of each phase kind.

A page is what identifies it to its developer: its route and the view that served it (a
DRF viewset's action: `BookViewSet.list`). One route served by several views, as a
catch-all route is, is split by view; a route with one view is shown as the route.

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
    phased: int = 0  # traces with a phase breakdown (a light trace has none)

    @property
    def count(self) -> int:
        return len(self.durations)

    def p(self, q: float) -> int:
        return percentile(self.durations, q)

    @property
    def mean_queries(self) -> float:
        return sum(self.queries) / len(self.queries) if self.queries else 0.0

    def phase_p(self, name: str, q: float = 95) -> int:
        """Percentile of one phase kind's time over the traces with a breakdown; one without
        that phase counts as 0."""
        values = sorted(self.phases.get(name, []) + [0] * (self.phased - len(self.phases[name])))
        return percentile(values, q)


def by_route(
    rows: Iterable[tuple[str | None, str | None, int, int, dict[str, int] | None]],
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
        if phases is not None:
            stats.phased += 1
            for name, ns in phases.items():
                stats.phases[name].append(ns)
    for stats in groups.values():
        stats.durations.sort()
    return list(groups.values())


def _short_view(view: str) -> str:
    """`app.views.BookViewSet.list` -> `BookViewSet.list`; `app.views.index` -> `views.index`."""
    parts = view.split(".")
    for i, part in enumerate(parts):
        if part[:1].isupper():  # the class: from there on
            return ".".join(parts[i:])
    return ".".join(parts[-2:])


def by_group(
    rows: Iterable[tuple[str | None, tuple[str | None, ...], int, int, dict[str, int] | None]],
    by: str = "page",
) -> list[RouteStats]:
    """Group (method, key, duration, queries, phases) rows (TraceStore.group_rows) by method
    and key. For "page" the key is (route, view), labelled by the route alone unless one
    method of the route has several views among the rows (a catch-all route's pages);
    otherwise the key is one value, its own label."""
    keyed: list[tuple[str | None, str, int, int, dict[str, int] | None]] = []
    rows = list(rows)
    views_of: dict[tuple[str | None, str | None], set[str | None]] = defaultdict(set)
    if by == "page":
        for method, key, *_rest in rows:
            views_of[(method, key[0])].add(key[1])
    for method, key, duration, queries, phases in rows:
        if by == "page":
            route, view = key
            label = route if route is not None else NO_ROUTE
            if len(views_of[(method, route)]) > 1 and view:
                label = f"{label} · {_short_view(view)}"
        else:
            label = key[0] if key[0] is not None else f"(no {by})"
        keyed.append((method, label, duration, queries, phases))
    return by_route(keyed)


def phase_names(stats: Iterable[RouteStats], q: float = 95) -> list[str]:
    """The phase kinds worth a column: non-zero at `q` for some route, in pipeline order."""
    stats = list(stats)
    return [n for n in CATEGORIES if any(s.phase_p(n, q) for s in stats)]
