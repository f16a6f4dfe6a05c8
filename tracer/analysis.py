"""Pure functions over a finished Trace: self time, middleware halves, where the time went
by phase kind, query fingerprints, findings (N+1, duplicates, errors) and the folded tree
that renderers draw. Nothing here runs on the request path.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from djtrace.model import Span, Trace

#: Similar queries from one source line at or above this count are an N+1 finding.
N_PLUS_ONE_THRESHOLD = 3

#: Rows of the phase table, in pipeline order.
CATEGORIES = (
    "middleware (before)",
    "URL resolve",
    "view",
    "SQL",
    "templates",
    "cache",
    "sessions",
    "signals",
    "thread hops",
    "other",
    "error response",
    "middleware (after)",
    "response",
    "unaccounted",
)

_CATEGORY_OF_PHASE = {
    "url.resolve": "URL resolve",
    "view": "view",
    "template": "templates",
    "cache": "cache",
    "session": "sessions",
    "signal": "signals",
    "signal.receiver": "signals",
    "async.hop": "thread hops",  # a sync_to_async/async_to_sync's own time: the handoff
    "exception": "error response",
    "middleware.process_view": "middleware (before)",
    "middleware.process_template_response": "middleware (after)",
    "middleware.process_exception": "middleware (after)",
}


#: Phases whose own time is the code of whatever opened them (an atomic block runs view,
#: session or receiver code; its BEGIN/COMMIT are db.* spans of their own).
INHERIT_CATEGORY = frozenset({"db.transaction"})


# Findings that note what a trace cannot show, with no time of their own.
NOTE_KINDS = frozenset({"hook", "unclosed"})


def _inherited_category(span: Span, by_id: dict[int, Span]) -> str:
    parent = by_id.get(span.parent) if span.parent is not None else None
    while parent is not None and parent.phase in INHERIT_CATEGORY:
        parent = by_id.get(parent.parent) if parent.parent is not None else None
    if parent is None or parent.phase == "request":
        return "other"
    if parent.phase == "middleware":
        inner_end = parent.attrs.get("inner_end")
        after = inner_end is not None and span.start >= inner_end
        return "middleware (after)" if after else "middleware (before)"
    return category(parent.phase)


def category(phase: str) -> str:
    if phase in _CATEGORY_OF_PHASE:
        return _CATEGORY_OF_PHASE[phase]
    if phase.startswith("db."):
        return "SQL"
    if phase.startswith("response."):
        return "response"
    return "other"


def children_of(trace: Trace) -> dict[int | None, list[Span]]:
    """Each span's children, by start time; key None holds the top-level spans."""
    kids: dict[int | None, list[Span]] = defaultdict(list)
    known = {s.id for s in trace.spans}
    for span in trace.spans:
        kids[span.parent if span.parent in known else None].append(span)
    for spans in kids.values():
        spans.sort(key=lambda s: s.start)
    return kids


def self_times(trace: Trace, kids: dict[int | None, list[Span]] | None = None) -> dict[int, int]:
    """Each span's own time: its duration less its children's (never below zero)."""
    kids = kids if kids is not None else children_of(trace)
    return {
        s.id: max(0, s.duration - sum(max(c.duration, 0) for c in kids.get(s.id, ())))
        for s in trace.spans
    }


def middleware_halves(span: Span, children: list[Span]) -> tuple[int, int]:
    """A middleware's self time before it called the next layer, and after it returned."""
    inner_start = span.attrs.get("inner_start")
    inner_end = span.attrs.get("inner_end")
    if inner_start is None or inner_end is None:  # it answered without calling inward
        own = span.duration - sum(max(c.duration, 0) for c in children)
        return max(0, own), 0
    before = inner_start - span.start
    after = span.end - inner_end
    for child in children:
        if child.start < inner_start:
            before -= max(child.duration, 0)
        elif child.start >= inner_end:
            after -= max(child.duration, 0)
    return max(0, before), max(0, after)


def breakdown(trace: Trace) -> list[tuple[str, int]]:
    """Where the request's time went by phase kind; the rows add up to the total.

    "unaccounted" is what no span covers (handler and server overhead); it is negative
    only when spans ran in parallel on several threads.
    """
    kids = children_of(trace)
    own = self_times(trace, kids)
    totals: dict[str, int] = dict.fromkeys(CATEGORIES, 0)
    by_id: dict[int, Span] = {}
    for span in trace.spans:
        if span.phase == "request" and span.parent is None:
            continue
        if span.phase == "middleware":
            before, after = middleware_halves(span, kids.get(span.id, []))
            totals["middleware (before)"] += before
            totals["middleware (after)"] += after
        elif span.phase in INHERIT_CATEGORY:
            by_id = by_id or {s.id: s for s in trace.spans}
            totals[_inherited_category(span, by_id)] += own[span.id]
        else:
            totals[category(span.phase)] += own[span.id]
    total = max(trace.duration, 0)
    totals["unaccounted"] = total - sum(totals.values())
    return list(totals.items())


_LITERAL = re.compile(
    r"'(?:[^']|'')*'"  # string literal
    r"|(?<![\w$.])-?\d+(?:\.\d+)?(?![\w$])"  # number not inside an identifier
    r"|%\(\w+\)s|%s|\?"  # placeholders
)
_LIST = re.compile(r"\(\s*\?(?:\s*,\s*\?)*\s*\)")
_ROWS = re.compile(r"\(\.\.\.\)(?:\s*,\s*\(\.\.\.\))+")
_SPACE = re.compile(r"\s+")


@lru_cache(maxsize=4096)
def fingerprint(sql: str) -> str:
    """The query's shape: literals and placeholders as ?, lists as (...), spaces folded."""
    shape = _LITERAL.sub("?", sql)
    shape = _LIST.sub("(...)", shape)
    shape = _ROWS.sub("(...)", shape)
    return _SPACE.sub(" ", shape).strip()


_SELECT_LIST = re.compile(r"^SELECT\s+(?:DISTINCT\s+)?(.+?)\s+FROM\s", re.IGNORECASE | re.DOTALL)


@lru_cache(maxsize=4096)
def short_sql(sql: str) -> str:
    """A one-line, readable form: identifiers unquoted, the column list elided."""
    text = _SPACE.sub(" ", sql.replace('"', "").replace("`", "")).strip()
    match = _SELECT_LIST.match(text)
    if match and len(match.group(1)) > 20:
        text = text[: match.start(1)] + "…" + text[match.end(1) :]
    return text


def _params_key(params: Any) -> str:
    return repr(params)


#: Statements that manage a transaction: counted as queries (as Django counts them), never
#: an N+1 or a duplicate (ten atomic blocks commit ten times, and that is the point).
_CONTROL = re.compile(
    r"\s*(?:BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE\s+SAVEPOINT|START\s+TRANSACTION)\b",
    re.IGNORECASE,
)
_PLACEHOLDER = re.compile(r"%\(\w+\)s|%s|\?")
# The column a placeholder is compared with: `"table"."column" = %s`, `col IN (%s`.
_COMPARED = re.compile(
    r"((?:[\"`]?\w+[\"`]?\.)?[\"`]?\w+[\"`]?)\s*(?:=|<>|!=|<=|>=|<|>|\bLIKE|\bIN\s*\()\s*\(?\s*$",
    re.IGNORECASE,
)
_MAX_VALUES = 5


def is_control(sql: str) -> bool:
    """Whether `sql` is BEGIN, COMMIT, ROLLBACK or a savepoint statement."""
    return _CONTROL.match(sql) is not None


def _place(span: Span) -> str:
    """Where a query came from, for grouping: its template line if a template ran it."""
    return f"{span.attrs.get('template') or ''}|{span.attrs.get('source') or ''}"


def _where(source: str | None, template: str | None) -> str:
    if template:
        return f"template {template}" + (f" (rendered from {source})" if source else "")
    return source or ""


def _column(sql: str, position: int) -> str | None:
    """The column the `position`-th placeholder of `sql` is compared with, if plain."""
    for index, match in enumerate(_PLACEHOLDER.finditer(sql)):
        if index == position:
            found = _COMPARED.search(sql, 0, match.start())
            return found.group(1).replace('"', "").replace("`", "") if found else None
    return None


def _differing(spans: list[Span]) -> tuple[str, list[Any]]:
    """What tells similar queries apart: the first parameter whose value differs, named by
    its column where the SQL says it, and its values in the order the queries ran."""
    rows = [s.attrs.get("params") for s in spans]
    rows = [r for r in rows if isinstance(r, (list, tuple))]
    width = min((len(r) for r in rows), default=0)
    for position in range(width):
        values = [r[position] for r in rows]
        if len({_params_key(v) for v in values}) > 1:
            name = _column(str(spans[0].attrs.get("sql", "")), position)
            return name or f"parameter {position + 1}", values
    return "parameters", [tuple(r) for r in rows] if rows else []


def _values_text(values: list[Any]) -> tuple[str, int]:
    distinct: list[Any] = []
    seen: set[str] = set()
    for value in values:
        key = _params_key(value)
        if key not in seen:
            seen.add(key)
            distinct.append(value)
    shown = ", ".join(str(v) for v in distinct[:_MAX_VALUES])
    if len(distinct) > _MAX_VALUES:
        shown += f", … ({len(distinct)} values)"
    return shown, len(distinct)


def findings(trace: Trace) -> list[dict[str, Any]]:
    """N+1 patterns, exact duplicate queries and errors, most costly first.

    One problem is one finding: queries that repeat each other exactly inside an N+1 are
    counted in it (`duplicates`), not reported again. A query a template ran (an attribute
    lookup) is placed at the template's line (`template`) as well as the user's line that
    rendered it (`source`).
    """
    found: list[dict[str, Any]] = []
    similar: dict[tuple[str, str], list[Span]] = defaultdict(list)
    exact: dict[tuple[str, str], list[Span]] = defaultdict(list)
    for span in trace.spans:
        if span.phase != "db.query":
            continue
        sql = span.attrs.get("sql", "")
        if is_control(sql):
            continue
        similar[(fingerprint(sql), _place(span))].append(span)
        exact[(sql, _params_key(span.attrs.get("params")))].append(span)
    in_n_plus_one: set[int] = set()
    for (shape, _), spans in similar.items():
        keys = [_params_key(s.attrs.get("params")) for s in spans]
        if len(spans) < N_PLUS_ONE_THRESHOLD or len(set(keys)) < 2:
            continue
        in_n_plus_one.update(s.id for s in spans)
        first = spans[0].attrs
        source, template = first.get("source") or None, first.get("template") or None
        where = _where(source, template)
        column, values = _differing(spans)
        shown, distinct = _values_text(values)
        repeats = len(spans) - len(set(keys))
        message = f"{len(spans)} similar queries{' from ' + where if where else ''}"
        message += f", one per {column}: {shown}"
        if repeats:
            message += f"; {repeats} of them repeat an earlier one exactly"
        finding: dict[str, Any] = {
            "kind": "n+1",
            "count": len(spans),
            "fingerprint": shape,
            "source": source,
            "duration": sum(s.duration for s in spans),
            "differs": column,
            "values": distinct,
            "duplicates": repeats,
            "message": message,
        }
        if template:
            finding["template"] = template
        found.append(finding)
    for (sql, _), spans in exact.items():
        if len(spans) < 2 or all(s.id in in_n_plus_one for s in spans):
            continue
        first = spans[0].attrs
        source, template = first.get("source") or None, first.get("template") or None
        where = _where(source, template)
        values = first.get("params")
        message = f"the same query with the same parameters ran {len(spans)} times"
        if values:
            message += f" ({', '.join(str(v) for v in values)})"
        if where:
            message += f" from {where}"
        finding = {
            "kind": "duplicate",
            "count": len(spans),
            "fingerprint": fingerprint(sql),
            "source": source,
            "duration": sum(s.duration for s in spans),
            "message": message,
        }
        if template:
            finding["template"] = template
        found.append(finding)
    kids = children_of(trace)
    for span in trace.spans:
        if span.error is not None and not any(c.error for c in kids.get(span.id, ())):
            found.append(
                {
                    "kind": "error",
                    "count": 1,
                    "span": span.id,
                    "phase": span.phase,
                    "name": span.name,
                    "duration": span.duration,
                    "message": f"{span.error['type']}: {span.error['message']}",
                }
            )
    for note in trace.where.get("hooks_displaced") or ():
        found.append({"kind": "hook", "count": 1, "duration": 0, "message": str(note)})
    if trace.where.get("unclosed"):
        found.append(
            {"kind": "unclosed", "count": 1, "duration": 0, "message": trace.where["unclosed"]}
        )
    found.sort(key=lambda f: (f["kind"] != "error", -f["duration"]))
    return found


@dataclass
class Node:
    """A node of the folded tree: one span, or several similar sibling spans merged."""

    phase: str
    name: str
    total: int
    own: int
    count: int
    spans: list[Span]
    children: list[Node] = field(default_factory=list)
    before: int | None = None  # middleware only
    after: int | None = None

    @property
    def first(self) -> Span:
        return self.spans[0]


def _fold_key(span: Span) -> tuple[str, str]:
    if span.phase == "db.query":
        return span.phase, fingerprint(span.attrs.get("sql", "")) + "|" + str(
            span.attrs.get("source", "")
        )
    return span.phase, span.name


def fold(trace: Trace) -> list[Node]:
    """The trace as a tree, similar siblings merged (an N+1 becomes one node × count)."""
    kids = children_of(trace)
    own = self_times(trace, kids)

    def build(spans: list[Span]) -> list[Node]:
        groups: dict[tuple[str, str], list[Span]] = {}
        for span in spans:
            groups.setdefault(_fold_key(span), []).append(span)
        nodes = []
        for group in groups.values():
            first = group[0]
            node = Node(
                phase=first.phase,
                name=first.name,
                total=sum(max(s.duration, 0) for s in group),
                own=sum(own[s.id] for s in group),
                count=len(group),
                spans=group,
                children=build([c for s in group for c in kids.get(s.id, [])]),
            )
            if first.phase == "middleware":
                halves = [middleware_halves(s, kids.get(s.id, [])) for s in group]
                node.before = sum(h[0] for h in halves)
                node.after = sum(h[1] for h in halves)
            nodes.append(node)
        return nodes

    return build(kids.get(None, []))


def is_light(trace: Trace) -> bool:
    """A light trace (`capture --sample`, sampled out): the root span only, with totals."""
    root = trace.root
    return root is not None and root.attrs.get("sampled") is False


def query_totals(trace: Trace) -> tuple[int, int]:
    """How many queries the request ran and their time: a light trace's root totals (under a
    sync handler; 0 otherwise), else its query spans."""
    if is_light(trace):
        attrs = trace.root.attrs  # type: ignore[union-attr]
        return int(attrs.get("db_count") or 0), int(attrs.get("db_ns") or 0)
    queries = [s for s in trace.spans if s.phase == "db.query"]
    return len(queries), sum(max(s.duration, 0) for s in queries)


def summary(trace: Trace) -> dict[str, Any]:
    """Per-request counts shown under the tree."""
    count, query_time = query_totals(trace)
    return {
        "queries": count,
        "query_time": query_time,
        "templates": sum(1 for s in trace.spans if s.phase == "template"),
        "spans": len(trace.spans),
        **service_counts(trace),
    }


def service_counts(trace: Trace) -> dict[str, int]:
    """Cache hits and misses, connections opened/reused/closed, transactions rolled back."""
    counts = dict.fromkeys(
        (
            "cache_ops",
            "cache_hits",
            "cache_misses",
            "connections_opened",
            "connections_reused",
            "connections_closed",
            "transactions",
            "rollbacks",
            "signals",
        ),
        0,
    )
    for span in trace.spans:
        phase, attrs = span.phase, span.attrs
        if phase == "cache":
            counts["cache_ops"] += 1
            if "hits" in attrs and "count" in attrs:  # get_many: one lookup per key
                counts["cache_hits"] += attrs["hits"]
                counts["cache_misses"] += attrs["count"] - attrs["hits"]
            elif "hit" in attrs:
                counts["cache_hits" if attrs["hit"] else "cache_misses"] += 1
        elif phase == "db.connect":
            counts["connections_reused" if attrs.get("reused") else "connections_opened"] += 1
        elif phase == "db.close":
            counts["connections_closed"] += 1
        elif phase == "db.transaction":
            counts["transactions"] += 1
            counts["rollbacks"] += attrs.get("outcome") == "rollback"
        elif phase == "signal":
            counts["signals"] += 1
    return counts
