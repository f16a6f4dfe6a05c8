"""What a trace document must be for every command to show it (docs/trace-format.md).

`Trace.from_dict` runs `check` on every document it reads, so a bad trace is refused where
it comes in (`djtrace import`, a file given to `show` or `diff`, a damaged store row) with
one line saying what is wrong, instead of crashing `show`, `stats` or an export later.

Checked: the types of the documented fields; integers within SQLite's and OTLP's 64 bits;
span parents that are earlier spans (so the tree has no cycles) and no deeper than
`MAX_DEPTH`; the types of the span attributes the renderers and exporters compute with.
Fields this version does not know are kept as they are.
"""

from __future__ import annotations

import re
from typing import Any

#: Spans nested deeper than this are refused: renderers walk the tree recursively. Real
#: requests stay far below (the middleware stack, the view, nested templates, a query).
MAX_DEPTH = 500

_INT64_MAX = 2**63 - 1
_HEX_ID = re.compile(r"[0-9a-f]{1,32}")


class Invalid(ValueError):
    """The document is not a trace every command can show; the message says why."""


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _int(value: Any, what: str, low: int = 0) -> int:
    if value is None:
        raise Invalid(f"{what} is missing")
    if type(value) is not int or not low <= value <= _INT64_MAX:
        raise Invalid(f"{what} is {_shown(value)}, not a whole number from {low} to 2**63-1")
    return value


def _str(value: Any, what: str, optional: bool = True) -> None:
    if value is None and not optional:
        raise Invalid(f"{what} is missing")
    if not isinstance(value, str) and value is not None:
        raise Invalid(f"{what} is {_shown(value)}, not text")


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Invalid(f"{what} is {_shown(value)}, not a JSON object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise Invalid(f"{what} is {_shown(value)}, not a JSON array")
    return value


# Fields whose values djtrace computes with or slices; None is "absent".
_REQUEST_TEXT = ("method", "path", "query", "route", "view", "url_name", "scheme", "protocol")
_REQUEST_TEXT += ("body", "body_omitted")
_WHERE_TEXT = ("thread", "server", "mode", "settings", "protocol")

#: Span attributes by the type the renderers and exporters expect of them (present: of that
#: type; only the few in _ATTR_MAYBE may be null, as a URL without a name).
_ATTR_MAYBE = frozenset({"route", "view", "url_name", "handler"})
_ATTR_TEXT = frozenset(
    {"sql", "source", "alias", "vendor", "engine", "key", "handler", "sender", "outcome"}
    | {"action", "route", "view", "url_name", "kind", "backend", "op", "operation", "method"}
)
_ATTR_INT = frozenset(
    {"inner_start", "inner_end", "count", "hits", "rows", "receivers", "bytes", "chunks"}
    | {"cpu_ns", "args", "batch"}
)
_FINDING_TEXT = ("kind", "message", "fingerprint", "source", "phase", "name")
_FINDING_INT = ("count", "duration", "span")
_FINDING_REQUIRED = ("kind", "message", "duration")


def check(data: dict[str, Any]) -> None:
    """Raise Invalid unless `data` (a decoded trace document, schema known) is one every
    command can show."""
    trace_id = data.get("id")
    if not isinstance(trace_id, str) or not _HEX_ID.fullmatch(trace_id):
        raise Invalid(f"id is {_shown(trace_id)}, not 1 to 32 lower-case hex digits")
    _int(data.get("started_at"), "started_at")
    _int(data.get("duration"), "duration", -1)
    for field in ("dropped_spans", "tracer_errors"):
        if field in data:
            _int(data[field], field)
    if not isinstance(data.get("closed", True), bool):
        raise Invalid(f"closed is {_shown(data['closed'])}, not true or false")
    _request(_object(data.get("request") or {}, "request"))
    _where(_object(data.get("where") or {}, "where"))
    _spans(_list(data.get("spans") or [], "spans"))
    for i, finding in enumerate(_list(data.get("findings") or [], "findings")):
        _finding(_object(finding, f"findings[{i}]"), f"findings[{i}]")


def _request(request: dict[str, Any]) -> None:
    for field in _REQUEST_TEXT:
        _str(request.get(field), f"request.{field}")
    status = request.get("status")
    if status is not None and (type(status) is not int or not 100 <= status <= 599):
        raise Invalid(f"request.status is {_shown(status)}, not an HTTP status (100 to 599)")
    if request.get("body_size") is not None:
        _int(request["body_size"], "request.body_size")
    headers = _object(request.get("headers") or {}, "request.headers")
    for name, value in headers.items():
        _str(value, f"request.headers[{name!r}]", optional=False)
    if request.get("load") is not None:
        load = _object(request["load"], "request.load")
        for field in ("stage", "seq", "sent_ns"):
            if field in load:
                _int(load[field], f"request.load.{field}")


def _where(where: dict[str, Any]) -> None:
    for field in _WHERE_TEXT:
        _str(where.get(field), f"where.{field}")
    for field in ("pid", "thread_id"):
        if where.get(field) is not None:
            _int(where[field], f"where.{field}")
    parent = where.get("otel_parent")
    if parent is not None:
        parent = _object(parent, "where.otel_parent")
        for field in ("trace_id", "span_id"):
            _str(parent.get(field), f"where.otel_parent.{field}", optional=False)


def _spans(spans: list[Any]) -> None:
    depth: dict[int, int] = {}  # span id -> how deep it is (a root is 1)
    for i, span in enumerate(spans):
        # The usual span, checked inline (a trace has thousands); anything else goes the
        # long way, which says what is wrong.
        if type(span) is dict and span.get("error") is None:
            span_id, parent = span.get("id"), span.get("parent")
            start, duration = span.get("start"), span.get("duration")
            thread, attrs = span.get("thread", 0), span.get("attrs")
            if (
                type(span_id) is int
                and 1 <= span_id <= _INT64_MAX
                and span_id not in depth
                and (
                    parent is None
                    or (type(parent) is int and depth.get(parent, MAX_DEPTH) < MAX_DEPTH)
                )
                and type(span.get("phase")) is str
                and type(span.get("name")) is str
                and type(start) is int
                and -_INT64_MAX <= start <= _INT64_MAX
                and type(duration) is int
                and -1 <= duration <= _INT64_MAX
                and type(thread) is int
                and 0 <= thread <= _INT64_MAX
                and (not attrs or (type(attrs) is dict and _attrs_ok(attrs)))
            ):
                depth[span_id] = 1 if parent is None else depth[parent] + 1
                continue
        _span(f"spans[{i}]", span, depth)


def _span(what: str, span: Any, depth: dict[int, int]) -> None:
    span = _object(span, what)
    span_id = _int(span.get("id"), f"{what}.id", 1)
    if span_id in depth:
        raise Invalid(f"{what}.id {span_id} is used twice")
    parent = span.get("parent")
    if parent is None:
        depth[span_id] = 1
    else:
        if type(parent) is not int or parent not in depth:
            raise Invalid(f"{what}.parent is {_shown(parent)}, not the id of a span before it")
        depth[span_id] = depth[parent] + 1
        if depth[span_id] > MAX_DEPTH:
            raise Invalid(f"spans are nested more than {MAX_DEPTH} deep")
    _str(span.get("phase"), f"{what}.phase", optional=False)
    _str(span.get("name"), f"{what}.name", optional=False)
    _int(span.get("start"), f"{what}.start", -_INT64_MAX)
    _int(span.get("duration"), f"{what}.duration", -1)
    if "thread" in span:
        _int(span["thread"], f"{what}.thread")
    attrs = _object(span.get("attrs") or {}, f"{what}.attrs")
    if not _attrs_ok(attrs):
        _attrs(attrs, f"{what}.attrs")
    error = span.get("error")
    if error is not None:
        error = _object(error, f"{what}.error")
        for field, value in error.items():
            _str(value, f"{what}.error.{field}", optional=False)


def _attrs_ok(attrs: dict[str, Any]) -> bool:
    for key, value in attrs.items():
        if key in _ATTR_TEXT:
            if type(value) is not str and (value is not None or key not in _ATTR_MAYBE):
                return False
        elif key in _ATTR_INT:
            if type(value) is not int or not -_INT64_MAX <= value <= _INT64_MAX:
                return False
        elif key == "params" and not isinstance(value, list | dict | None):
            return False
    return True


def _attrs(attrs: dict[str, Any], what: str) -> None:
    """Raise Invalid saying which attribute is not of its type."""
    for key, value in attrs.items():
        if key in _ATTR_TEXT:
            _str(value, f"{what}.{key}", optional=key in _ATTR_MAYBE)
        elif key in _ATTR_INT:
            _int(value, f"{what}.{key}", -_INT64_MAX)
        elif key == "params" and not isinstance(value, list | dict | None):
            raise Invalid(f"{what}.{key} is {_shown(value)}, not a JSON array or object")


def _finding(finding: dict[str, Any], what: str) -> None:
    for field in _FINDING_TEXT:
        _str(finding.get(field), f"{what}.{field}", optional=field not in _FINDING_REQUIRED)
    for field in _FINDING_INT:
        if field in _FINDING_REQUIRED or finding.get(field) is not None:
            _int(finding.get(field), f"{what}.{field}", -_INT64_MAX)
