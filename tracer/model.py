"""The trace data model: a Trace is one request, its Spans are the phases inside it.

Times are integer nanoseconds relative to the trace's start (a `perf_counter_ns` base
kept privately while recording). The JSON form is documented in docs/trace-format.md;
every reader goes through `Trace.from_dict`, which refuses a schema it does not know.

While a request runs, its spans are *records* (below), not Spans: a Trace turns them into
Spans when its `spans` are read (once finished, it keeps them), which for a captured request
is on the store writer's thread, never on the request's.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Any

SCHEMA_VERSION = 1

# --- Records: spans while they are recorded ------------------------------------------------
#
# On the request path a span is a plain list, the cheapest object CPython makes: a Span
# with slots costs several times as much to build there (docs/benchmarks.md). Ids, parent
# ids, times relative to the trace and lazy attrs are worked out when the trace is read.
#
#   [parent record or None, phase, name, start, end, thread, attrs, error]
#
# start and end are perf_counter_ns readings (end is 0 while the span is open); attrs is a
# dict, None, or a tuple (function, *args) whose call makes the dict when the trace is read.
# A middleware record has two more items, set by the handler core when the middleware is
# the innermost: when it called the core and when that returned (0 until then). Any other
# middleware's halves are read off the span of the layer inside it.
Record = list[Any]
PARENT, PHASE, NAME, START, END, THREAD, ATTRS, ERROR, INNER_START, INNER_END = range(10)


# Trace ids come from a generator of djtrace's own: no system call on the request path
# (os.urandom is one), and the app's `random` sequence, seeded or not, is left as it is.
# Reseeded in a forked child, so gunicorn's workers do not repeat each other's ids.
_ids = random.Random()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.seed)


class SchemaError(ValueError):
    """A trace document this version of djtrace cannot read."""


class Span:
    """One phase of a request. `attrs` holds phase-specific detail (SQL, template name…)."""

    __slots__ = ("id", "parent", "phase", "name", "start", "duration", "thread", "attrs", "error")

    def __init__(
        self,
        id: int,
        parent: int | None,
        phase: str,
        name: str,
        start: int,
        thread: int,
        attrs: dict[str, Any] | None = None,
        duration: int = -1,
        error: dict[str, str] | None = None,
    ) -> None:
        self.id = id
        self.parent = parent
        self.phase = phase
        self.name = name
        self.start = start
        self.duration = duration  # -1 while the span is open
        self.thread = thread
        self.attrs = attrs if attrs is not None else {}
        self.error = error

    @property
    def end(self) -> int:
        return self.start + max(self.duration, 0)

    def __repr__(self) -> str:
        return f"<Span {self.id} {self.phase} {self.name!r} {self.duration / 1e6:.3f}ms>"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "parent": self.parent,
            "phase": self.phase,
            "name": self.name,
            "start": self.start,
            "duration": self.duration,
            "thread": self.thread,
            "attrs": {k: _jsonable(v) for k, v in self.attrs.items()},
        }
        if self.error is not None:
            out["error"] = self.error
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Span:
        return cls(
            id=int(data["id"]),
            parent=data.get("parent"),
            phase=str(data["phase"]),
            name=str(data["name"]),
            start=int(data["start"]),
            duration=int(data["duration"]),
            thread=int(data.get("thread", 0)),
            attrs=dict(data.get("attrs") or {}),
            error=data.get("error"),
        )


class Trace:
    """One request (or, for inline use, a stretch of bare ORM work) and its spans."""

    __slots__ = (
        "id",
        "schema",
        "started_at",
        "duration",
        "request",
        "where",
        "records",
        "_spans",
        "findings",
        "dropped_spans",
        "tracer_errors",
        "closed",
        "_t0",
        "_cpu0",
        "_hop_cpu",
        "_connections",
        "__weakref__",
    )

    def __init__(
        self,
        request: dict[str, Any] | None = None,
        where: dict[str, Any] | None = None,
        *,
        id: str | None = None,
        started_at: int | None = None,
    ) -> None:
        self.id = id or f"{_ids.getrandbits(64):016x}"
        self.schema = SCHEMA_VERSION
        self.started_at = started_at if started_at is not None else time.time_ns()
        self.duration = -1
        self.request: dict[str, Any] = request if request is not None else {}
        self.where: dict[str, Any] = where if where is not None else {}
        self.records: list[Record] = []  # appended to while the request runs
        self._spans: list[Span] | None = None
        self.findings: list[dict[str, Any]] | None = None  # computed by analysis when needed
        self.dropped_spans = 0
        self.tracer_errors = 0
        self.closed = False
        self._t0 = time.perf_counter_ns()
        # The root thread's CPU clock at the start (-1: not read), and the CPU its
        # sync_to_async hops spent on their threads (the root's cpu_ns under ASGI).
        self._cpu0 = -1
        self._hop_cpu = 0
        # Database aliases whose connection this trace has accounted for (tracer.hooks.connections).
        self._connections: set[str] = set()

    def __repr__(self) -> str:
        label = f"{self.request.get('method', '')} {self.request.get('path', '')}".strip()
        return f"<Trace {self.id} {label or 'inline'} {self.duration / 1e6:.3f}ms>"

    @property
    def start_ns(self) -> int:
        """Wall-clock start, ns since the epoch (`started_at`): read as the handler is entered,
        so a load request's time before Django is `start_ns - request["load"]["sent_ns"]`."""
        return self.started_at

    @property
    def spans(self) -> list[Span]:
        """The spans, in the order they started (built from the records when read, and kept
        once the trace is finished)."""
        spans = self._spans
        if spans is None:
            with _building:
                spans = self._spans
                if spans is None:
                    spans, ended = _spans_from_records(self)
                    if ended and self.closed:  # finished: nothing more will be recorded
                        self._spans = spans
                        self.records = []  # the Spans hold it all now (params redacted)
        return spans

    @spans.setter
    def spans(self, spans: list[Span]) -> None:
        self._spans = spans
        self.records = []

    @property
    def root(self) -> Span | None:
        """The request span (the first span without a parent)."""
        for span in self.spans:
            if span.parent is None and span.phase == "request":
                return span
        return None

    @property
    def queries(self) -> list[Span]:
        return [s for s in self.spans if s.phase == "db.query"]

    def to_dict(self) -> dict[str, Any]:
        from djtrace.analysis import findings

        return {
            "schema": self.schema,
            "id": self.id,
            "started_at": self.started_at,
            "duration": self.duration,
            "closed": self.closed,
            "request": {k: _jsonable(v) for k, v in self.request.items()},
            "where": dict(self.where),
            "spans": [s.to_dict() for s in self.spans],
            "findings": self.findings if self.findings is not None else findings(self),
            "dropped_spans": self.dropped_spans,
            "tracer_errors": self.tracer_errors,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Trace:
        if not isinstance(data, dict):
            raise SchemaError(f"a trace is a JSON object, not {type(data).__name__}")
        schema = data.get("schema")
        if schema != SCHEMA_VERSION:
            raise SchemaError(
                f"trace schema {schema!r} is not supported by this djtrace "
                f"(it reads schema {SCHEMA_VERSION}); upgrade djtrace to read it"
            )
        from djtrace.validate import Invalid, check

        try:
            check(data)
        except Invalid as exc:
            raise SchemaError(f"malformed trace: {exc}") from None
        try:
            trace = cls(
                request=dict(data.get("request") or {}),
                where=dict(data.get("where") or {}),
                id=str(data["id"]),
                started_at=int(data["started_at"]),
            )
            trace.duration = int(data["duration"])
            trace.closed = bool(data.get("closed", True))
            trace.spans = [Span.from_dict(s) for s in data.get("spans") or []]
            trace.findings = list(data.get("findings") or [])
            trace.dropped_spans = int(data.get("dropped_spans", 0))
            trace.tracer_errors = int(data.get("tracer_errors", 0))
        except (KeyError, TypeError, ValueError) as exc:
            raise SchemaError(f"malformed trace: {exc.__class__.__name__}: {exc}") from None
        return trace


_building = threading.Lock()
_new = object.__new__


def _spans_from_records(trace: Trace) -> tuple[list[Span], bool]:
    """The trace's Spans, and whether every one of them had ended."""
    t0 = trace._t0
    ended = True
    numbers: dict[int, int] = {}  # id(record) -> span id
    spans = []
    for number, record in enumerate(list(trace.records), 1):
        numbers[id(record)] = number
        parent = record[PARENT]
        start = record[START]
        end = record[END]
        span = _new(Span)
        span.id = number
        span.parent = numbers.get(id(parent)) if parent is not None else None
        span.phase = record[PHASE]
        span.name = record[NAME]
        span.start = start - t0
        if end:
            span.duration = end - start
        else:
            span.duration = -1
            ended = False
        span.thread = record[THREAD]
        span.attrs = _attrs(trace, record, t0)
        span.error = record[ERROR]
        spans.append(span)
        if span.phase == "middleware" and span.parent is not None:
            outer = boundary = spans[span.parent - 1]
            if outer.phase == "async.hop" and outer.parent is not None:
                outer = spans[outer.parent - 1]  # it called this layer through a thread hop
            else:
                boundary = span
            if outer.phase == "middleware":  # this layer's span splits the outer one in two
                outer.attrs.setdefault("inner_start", boundary.start)
                if boundary.duration >= 0:
                    outer.attrs["inner_end"] = boundary.start + boundary.duration
    return spans, ended


def _attrs(trace: Trace, record: Record, t0: int) -> dict[str, Any]:
    attrs = record[ATTRS]
    if attrs is None:
        out: dict[str, Any] = {}
    elif type(attrs) is tuple:
        try:
            out = attrs[0](*attrs[1:])
        except Exception:  # the tracer's own failure: the span keeps its timing
            trace.tracer_errors += 1
            out = {}
    else:
        out = dict(attrs)  # a copy: a hook may still be filling the record's dict in
    if len(record) > INNER_START and record[INNER_START]:
        out["inner_start"] = record[INNER_START] - t0
        if record[INNER_END]:
            out["inner_end"] = record[INNER_END] - t0
    return out


def current_thread_name() -> str:
    return threading.current_thread().name


_MAX_VALUE_CHARS = 200


def _jsonable(value: Any) -> Any:
    """A JSON-safe, size-capped form of an attribute value (params, args…)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return value if len(value) <= 4096 else value[:4096] + "…"
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value[:100]]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in list(value.items())[:100]}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(value)} bytes>"
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[:_MAX_VALUE_CHARS] + "…"
