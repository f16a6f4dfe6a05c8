"""A djtrace Trace seen as OpenTelemetry spans: ids, names, kinds, semantic-convention
attributes, events and status, as plain data.

The OTLP exporter turns these into SDK spans; the Jaeger-UI JSON writer turns them into
Jaeger's own format, so both show the same names, ids and attributes. Nothing here imports
OpenTelemetry.

Conventions followed (OpenTelemetry semantic conventions, stable HTTP and database sets):
the request span is SERVER and named like opentelemetry-instrumentation-django names it
(`GET books/<int:pk>/`); queries are CLIENT spans with `db.system.name`, `db.query.text`,
`db.operation.name`…; cache calls are CLIENT spans; every other phase is an INTERNAL
span with `djtrace.*` attributes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from djtrace.analysis import children_of, findings, fingerprint, middleware_halves
from djtrace.model import Span, Trace

AttrValue = str | bool | int | float | list[str] | list[bool] | list[int] | list[float]

SERVER, CLIENT, INTERNAL = "server", "client", "internal"

#: Methods opentelemetry-instrumentation names spans after; others become "HTTP"/"_OTHER".
KNOWN_METHODS = frozenset(
    ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
)

#: Django's `connection.vendor` → `db.system.name`.
DB_SYSTEMS = {
    "sqlite": "sqlite",
    "postgresql": "postgresql",
    "mysql": "mysql",
    "oracle": "oracle.db",
    "microsoft": "microsoft.sql_server",
}

_MAX_PARAMS = 32
_INT64 = 2**63


@dataclass(slots=True)
class Event:
    name: str
    time: int  # epoch ns
    attributes: dict[str, AttrValue] = field(default_factory=dict)


@dataclass(slots=True)
class OtelSpan:
    """One span as OpenTelemetry sees it. Times are epoch nanoseconds."""

    trace_id: int
    span_id: int
    parent_id: int | None
    parent_is_remote: bool
    name: str
    kind: str
    start: int
    end: int
    attributes: dict[str, AttrValue]
    events: list[Event]
    error: str | None  # the status description when the status is ERROR
    phase: str
    thread: int


@dataclass(slots=True)
class RemoteParent:
    """The span this request continues: a caller's `traceparent` or an active OTel span."""

    trace_id: int
    span_id: int
    trace_state: str | None = None
    source: str = "traceparent"  # or "otel" (a span already open in the app's process)


# --- ids -----------------------------------------------------------------------------------

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


def parse_traceparent(value: str | None) -> tuple[int, int] | None:
    """The (trace id, parent span id) of a W3C `traceparent` header, or None if invalid."""
    if not value:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_hex, span_hex, _flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id


def remote_parent(trace: Trace) -> RemoteParent | None:
    """What this request's root continues: an OTel span that was open around it in the app
    (DjangoInstrumentor, OTel WSGI/ASGI middleware) wins over the caller's traceparent."""
    captured = trace.where.get("otel_parent")
    if isinstance(captured, dict):
        try:
            trace_id = int(captured["trace_id"], 16)
            span_id = int(captured["span_id"], 16)
        except (KeyError, TypeError, ValueError):
            trace_id = span_id = 0
        if trace_id and span_id:
            return RemoteParent(trace_id, span_id, source="otel")
    headers = trace.request.get("headers") or {}
    parsed = parse_traceparent(headers.get("traceparent"))
    if parsed is None:
        return None
    return RemoteParent(*parsed, trace_state=headers.get("tracestate") or None)


def trace_id_of(trace: Trace, parent: RemoteParent | None) -> int:
    """The caller's trace id, else djtrace's own id (so Jaeger finds it by `djtrace list` id)."""
    if parent is not None:
        return parent.trace_id
    try:
        value = int(trace.id, 16)
    except ValueError:
        value = 0
    if 0 < value < 2**128:
        return value
    return int.from_bytes(hashlib.blake2b(trace.id.encode(), digest_size=16).digest(), "big") or 1


def span_id_of(trace: Trace, span: Span) -> int:
    """Stable across exports: exporting a stored trace twice gives the same ids."""
    digest = hashlib.blake2b(f"{trace.id}/{span.id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") or 1


# --- attribute values ----------------------------------------------------------------------


def attr_value(value: Any) -> AttrValue | None:
    """An OpenTelemetry-legal attribute value (primitives or homogeneous lists), or None."""
    if value is None:
        return None
    if isinstance(value, bool | float | str):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)
    if isinstance(value, list | tuple):
        items = [v for v in value if v is not None]
        kinds = {type(v) for v in items}
        if len(kinds) == 1 and kinds <= {str, bool, int, float}:
            return list(items)
        if not items:
            return []
    try:
        return json.dumps(value, default=str, ensure_ascii=False)[:4096]
    except (TypeError, ValueError):
        return repr(value)[:4096]


def _put(attrs: dict[str, AttrValue], key: str, value: Any) -> None:
    converted = attr_value(value)
    if converted is not None:
        attrs[key] = converted


def _ms(ns: int) -> float:
    return round(ns / 1e6, 3)


def _source_attrs(attrs: dict[str, AttrValue], source: Any) -> None:
    if not isinstance(source, str) or not source:
        return
    attrs["djtrace.source"] = source
    path, sep, line = source.rpartition(":")
    if sep and line.isdigit():
        attrs["code.file.path"] = path
        attrs["code.line.number"] = int(line)
    else:
        attrs["code.file.path"] = source


# --- the request span ----------------------------------------------------------------------


def server_span_name(request: dict[str, Any]) -> str:
    """As opentelemetry-instrumentation-django names it: method + route, else url name."""
    method = str(request.get("method") or "").strip().upper()
    if method not in KNOWN_METHODS:
        return "HTTP"
    route = request.get("route")
    if route:
        return f"{method} {route}"
    # A Django url name is what the instrumentation falls back to; it has no leading "/".
    url_name = request.get("url_name")
    if url_name:
        return f"{method} {url_name}"
    return method


def _host_port(host: str) -> tuple[str, int | None]:
    if host.startswith("["):  # [::1]:8000
        addr, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        addr, _, port = host.partition(":")
    return addr, int(port) if port.isdigit() else None


def request_attributes(trace: Trace) -> dict[str, AttrValue]:
    """HTTP server semantic-convention attributes of the request."""
    request = trace.request
    headers = request.get("headers") or {}
    attrs: dict[str, AttrValue] = {}
    method = str(request.get("method") or "").strip()
    if method.upper() in KNOWN_METHODS:
        attrs["http.request.method"] = method.upper()
    elif method:
        attrs["http.request.method"] = "_OTHER"
        attrs["http.request.method_original"] = method
    _put(attrs, "url.path", request.get("path"))
    if request.get("query"):
        attrs["url.query"] = str(request["query"])  # already redacted by the tracer
    _put(attrs, "http.route", request.get("route"))
    status = request.get("status")
    if isinstance(status, int):
        attrs["http.response.status_code"] = status
    host = headers.get("x-forwarded-host") or headers.get("host")
    if host:
        address, port = _host_port(str(host).split(",")[0].strip())
        if address:
            attrs["server.address"] = address
        if port is not None:
            attrs["server.port"] = port
    scheme = headers.get("x-forwarded-proto") or request.get("scheme")
    _put(attrs, "url.scheme", scheme)
    _put(attrs, "user_agent.original", headers.get("user-agent"))
    forwarded_for = headers.get("x-forwarded-for")
    if forwarded_for:
        attrs["client.address"] = str(forwarded_for).split(",")[0].strip()
    protocol = request.get("protocol") or trace.where.get("protocol")
    if isinstance(protocol, str) and protocol.upper().startswith("HTTP/"):
        attrs["network.protocol.name"] = "http"
        attrs["network.protocol.version"] = protocol[5:]
    _put(attrs, "djtrace.trace_id", trace.id)
    _put(attrs, "djtrace.view", request.get("view"))
    _put(attrs, "djtrace.url_name", request.get("url_name"))
    for key in ("server", "mode", "pid"):
        _put(attrs, f"djtrace.{key}", trace.where.get(key))
    load = request.get("load")
    if isinstance(load, dict):  # a load lab request: its run, stage and place in the stage
        for key in ("run", "stage", "seq"):
            _put(attrs, f"djtrace.load.{key}", load.get(key))
    if trace.dropped_spans:
        attrs["djtrace.dropped_spans"] = trace.dropped_spans
    if trace.tracer_errors:
        attrs["djtrace.tracer_errors"] = trace.tracer_errors
    return attrs


# --- other phases --------------------------------------------------------------------------

_OPERATION = re.compile(r"^\s*(?:/\*.*?\*/\s*)*([A-Za-z]+)", re.DOTALL)
_COLLECTION = re.compile(
    r"\b(?:FROM|INTO|UPDATE|JOIN)\s+((?:[\"`\[]?[\w$]+[\"`\]]?\.)*[\"`\[]?[\w$]+[\"`\]]?)",
    re.IGNORECASE,
)
_QUOTES = str.maketrans("", "", '"`[]')


def sql_operation(sql: str) -> str | None:
    match = _OPERATION.match(sql)
    return match.group(1) if match else None


def sql_collection(sql: str) -> str | None:
    """The first table the query names (`bookstore_book`), quotes removed."""
    match = _COLLECTION.search(sql)
    return match.group(1).translate(_QUOTES) if match else None


_DB_KEYS = frozenset(("sql", "alias", "vendor", "params", "rows", "source", "many", "batch"))


def _query(span: Span, attrs: dict[str, AttrValue]) -> str:
    a = span.attrs
    sql = str(a.get("sql") or "")
    vendor = a.get("vendor")
    if vendor:
        attrs["db.system.name"] = DB_SYSTEMS.get(str(vendor), str(vendor))
    if a.get("alias"):
        # Django knows the connection by its alias; the database name is not recorded.
        attrs["db.namespace"] = str(a["alias"])
        attrs["djtrace.db.alias"] = str(a["alias"])
    operation = sql_operation(sql)
    collection = sql_collection(sql)
    if sql:
        attrs["db.query.text"] = sql  # parameterised: values are never in the text
    _put(attrs, "db.operation.name", operation)
    _put(attrs, "db.collection.name", collection)
    params = a.get("params")
    if isinstance(params, dict):
        for key, value in list(params.items())[:_MAX_PARAMS]:
            _put(attrs, f"db.query.parameter.{key}", str(value))
    elif isinstance(params, list | tuple):
        for index, value in enumerate(params[:_MAX_PARAMS]):
            _put(attrs, f"db.query.parameter.{index}", str(value))
    if isinstance(a.get("rows"), int):
        attrs["db.response.returned_rows"] = a["rows"]
    if a.get("many"):
        _put(attrs, "db.operation.batch.size", a.get("batch"))
    _source_attrs(attrs, a.get("source"))
    for key, value in a.items():
        if key not in _DB_KEYS:
            _put(attrs, f"djtrace.{key}", value)
    if operation and collection:
        return f"{operation} {collection}"
    if operation:
        return f"{operation} {a.get('alias') or ''}".strip()
    return str(attrs.get("db.system.name") or "db.query")


_CACHE_SYSTEMS = (("redis", "redis"), ("memcache", "memcached"), ("pylibmc", "memcached"))


def _cache(span: Span, attrs: dict[str, AttrValue]) -> str:
    a = span.attrs
    backend = str(a.get("backend") or "")
    lowered = backend.lower()
    for marker, system in _CACHE_SYSTEMS:
        if marker in lowered:
            attrs["db.system.name"] = system
            break
    operation = a.get("op") or a.get("operation") or a.get("method") or span.name
    _put(attrs, "db.operation.name", operation)
    if a.get("alias"):
        attrs["db.namespace"] = str(a["alias"])
    for key, value in a.items():
        if key == "source":
            _source_attrs(attrs, value)
        else:
            _put(attrs, f"djtrace.cache.{key}", value)
    name = span.name if span.name.startswith("cache") else f"cache {span.name}"
    return name


def _generic_name(span: Span) -> str:
    phase, name = span.phase, span.name
    if phase in ("middleware", "view") or not name:
        return name or phase
    if name == phase or phase.endswith("." + name):
        return phase  # "response.close" rather than "response.close close"
    if phase.startswith("middleware."):
        return f"{phase[11:]} {name}"  # "process_view django.middleware.csrf.Csrf…"
    return f"{phase} {name}"


def kind_of(span: Span) -> str:
    if span.phase == "request" and span.parent is None:
        return SERVER
    if span.phase == "db.transaction":
        return INTERNAL  # an atomic block: its BEGIN/COMMIT and queries are its children
    if span.phase.startswith("db.") or span.phase in ("cache", "http.client"):
        return CLIENT
    return INTERNAL


# --- whole traces --------------------------------------------------------------------------


def _finding_events(trace: Trace, start_of_root: int) -> tuple[list[Event], dict[int, str]]:
    """N+1 and duplicate findings as events, and the query spans each one marks."""
    found = trace.findings if trace.findings is not None else findings(trace)
    events: list[Event] = []
    marked: dict[int, str] = {}
    queries = [s for s in trace.spans if s.phase == "db.query"]
    for finding in found:
        kind = finding.get("kind")
        if kind not in ("n+1", "duplicate"):
            continue
        shape = finding.get("fingerprint")
        source = finding.get("source")
        group = [
            q
            for q in queries
            if fingerprint(str(q.attrs.get("sql", ""))) == shape
            and (kind == "duplicate" or (q.attrs.get("source") or None) == source)
        ]
        for query in group:
            marked.setdefault(query.id, str(kind))
        attrs: dict[str, AttrValue] = {
            "djtrace.finding.kind": str(kind),
            "djtrace.finding.count": int(finding.get("count") or len(group)),
            "djtrace.finding.message": str(finding.get("message") or ""),
            "djtrace.finding.duration_ms": _ms(int(finding.get("duration") or 0)),
        }
        _put(attrs, "djtrace.finding.fingerprint", shape)
        _source_attrs(attrs, source)
        when = trace.started_at + group[0].start if group else start_of_root
        name = "djtrace.n_plus_one" if kind == "n+1" else "djtrace.duplicate_query"
        events.append(Event(name, when, attrs))
    return events, marked


def to_otel(trace: Trace) -> list[OtelSpan]:
    """Every span of `trace` as an OpenTelemetry span, parents first."""
    parent = remote_parent(trace)
    trace_id = trace_id_of(trace, parent)
    kids = children_of(trace)
    known = {s.id for s in trace.spans}
    root = trace.root
    ids = {s.id: span_id_of(trace, s) for s in trace.spans}
    base = trace.started_at
    root_thread = root.thread if root is not None else None
    thread_name = trace.where.get("thread")
    out: list[OtelSpan] = []
    root_start = base + (root.start if root is not None else 0)
    events, marked = _finding_events(trace, root_start)

    for span in sorted(trace.spans, key=lambda s: s.start):
        attrs: dict[str, AttrValue] = {"djtrace.phase": span.phase, "thread.id": span.thread}
        if span.thread == root_thread and thread_name:
            attrs["thread.name"] = str(thread_name)
        kind = kind_of(span)
        is_root = span is root
        error = None
        if is_root:
            attrs.update(request_attributes(trace))
            name = server_span_name(trace.request)
            if parent is not None and parent.source == "otel":
                # The app's own OTel SERVER span is the request; djtrace's root nests in it.
                kind, name = INTERNAL, f"djtrace {name}"
            status = trace.request.get("status")
            if isinstance(status, int) and status >= 500:
                error_types = [
                    s.error["type"] for s in trace.spans if s.error and s.error.get("type")
                ]
                attrs["error.type"] = error_types[-1] if error_types else str(status)
                error = f"HTTP {status}"
        elif span.phase == "db.query":
            name = _query(span, attrs)
            if span.id in marked:
                attrs["djtrace.finding"] = marked[span.id]
        elif span.phase == "cache":
            name = _cache(span, attrs)
        else:
            name = _generic_name(span)
            for key, value in span.attrs.items():
                if key in ("inner_start", "inner_end"):
                    continue
                if key == "source":
                    _source_attrs(attrs, value)
                else:
                    _put(attrs, f"djtrace.{key}", value)
            if span.phase.startswith("db."):  # connect, close, commit, transaction…
                vendor, alias = span.attrs.get("vendor"), span.attrs.get("alias")
                if vendor:
                    attrs["db.system.name"] = DB_SYSTEMS.get(str(vendor), str(vendor))
                if alias:
                    attrs["db.namespace"] = str(alias)
            elif span.phase == "middleware":
                before, after = middleware_halves(span, kids.get(span.id, []))
                attrs["djtrace.middleware.before_ms"] = _ms(before)
                attrs["djtrace.middleware.after_ms"] = _ms(after)
            elif span.phase == "view":
                attrs["code.function.name"] = span.name

        start = base + span.start
        if span.duration >= 0:
            end = start + span.duration
        else:  # never closed (an unread stream): it lasted until the trace ended, if known
            end = max(start, base + trace.duration)
            attrs["djtrace.unfinished"] = True
        span_events: list[Event] = []
        if span.error is not None:
            error_type = str(span.error.get("type") or "Exception")
            message = str(span.error.get("message") or "")
            span_events.append(
                Event(
                    "exception",
                    end,
                    {"exception.type": error_type, "exception.message": message},
                )
            )
            error = f"{error_type}: {message}" if message else error_type
            attrs.setdefault("error.type", error_type)
        if is_root:
            span_events.extend(events)

        if span.parent is None or span.parent not in known:
            if is_root and parent is not None:
                parent_id, remote = parent.span_id, parent.source == "traceparent"
            elif root is not None and not is_root:
                parent_id, remote = ids[root.id], False  # an orphan (parent over the cap)
            else:
                parent_id, remote = None, False
        else:
            parent_id, remote = ids[span.parent], False
        out.append(
            OtelSpan(
                trace_id=trace_id,
                span_id=ids[span.id],
                parent_id=parent_id,
                parent_is_remote=remote,
                name=name,
                kind=kind,
                start=start,
                end=end,
                attributes=attrs,
                events=span_events,
                error=error,
                phase=span.phase,
                thread=span.thread,
            )
        )
    return out


def default_service_name() -> str:
    """The Django project's package (`mysite` for mysite.settings), else "django"."""
    module = os.environ.get("DJANGO_SETTINGS_MODULE", "")
    return module.split(".")[0] or "django"
