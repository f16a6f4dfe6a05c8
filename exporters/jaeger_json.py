"""Traces as the JSON Jaeger UI opens: Search → "JSON File" (drag the file in).

The document is what Jaeger's own API returns for a trace:

    {"data": [{"traceID", "spans": [{"traceID", "spanID", "operationName", "references",
               "startTime" µs, "duration" µs, "tags", "logs", "processID"}],
               "processes": {"p1": {"serviceName", "tags"}}}]}

Names, ids, kinds and attributes are the ones the OTLP exporter sends (exporters.semconv),
so a file and a live Jaeger show the same trace the same way. Requests that continued the
same caller's trace (one `traceparent`) land in one Jaeger trace.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from djtrace.exporters.files import write_json
from djtrace.exporters.semconv import INTERNAL, AttrValue, OtelSpan, default_service_name, to_otel
from djtrace.model import Trace


def service_name_or_default(service_name: str | None) -> str:
    """As for OTLP: given > OTEL_SERVICE_NAME > OTEL_RESOURCE_ATTRIBUTES > the project's."""
    if service_name:
        return service_name
    if os.environ.get("OTEL_SERVICE_NAME"):
        return os.environ["OTEL_SERVICE_NAME"]
    for pair in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, _, value = pair.partition("=")
        if key.strip() == "service.name" and value.strip():
            return value.strip()
    return default_service_name()


def _us(ns: int) -> int:
    return (ns + 500) // 1000  # rounding both ends keeps children inside their parents


def tag(key: str, value: AttrValue) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    if isinstance(value, list):
        return {"key": key, "type": "string", "value": json.dumps(value, ensure_ascii=False)}
    return {"key": key, "type": "string", "value": str(value)}


def _span(span: OtelSpan, process_id: str) -> dict[str, Any]:
    trace_hex = format(span.trace_id, "032x")
    tags = [tag(k, v) for k, v in span.attributes.items()]
    tags.append(tag("span.kind", span.kind if span.kind != INTERNAL else "internal"))
    tags.append(tag("otel.scope.name", "djtrace"))
    if span.error is not None:
        tags.append(tag("error", True))
        tags.append(tag("otel.status_code", "ERROR"))
        tags.append(tag("otel.status_description", span.error))
    references = []
    if span.parent_id is not None:
        references.append(
            {"refType": "CHILD_OF", "traceID": trace_hex, "spanID": format(span.parent_id, "016x")}
        )
    start = _us(span.start)
    return {
        "traceID": trace_hex,
        "spanID": format(span.span_id, "016x"),
        "flags": 1,
        "operationName": span.name,
        "references": references,
        "startTime": start,
        "duration": max(0, _us(span.end) - start),
        "tags": tags,
        "logs": [
            {
                "timestamp": _us(event.time),
                "fields": [tag("event", event.name)]
                + [tag(k, v) for k, v in event.attributes.items()],
            }
            for event in span.events
        ],
        "processID": process_id,
        "warnings": None,
    }


def to_jaeger_json(traces: Iterable[Trace], service_name: str | None = None) -> dict[str, Any]:
    """The Jaeger UI document for `traces` (one Jaeger trace per trace id)."""
    service = service_name_or_default(service_name)
    grouped: dict[int, list[tuple[Trace, list[OtelSpan]]]] = {}
    for trace in traces:
        spans = to_otel(trace)
        if spans:
            grouped.setdefault(spans[0].trace_id, []).append((trace, spans))
    data = []
    for trace_id, members in grouped.items():
        processes: dict[str, dict[str, Any]] = {}
        by_pid: dict[Any, str] = {}
        out_spans = []
        for trace, spans in members:
            pid = trace.where.get("pid")
            if pid not in by_pid:
                by_pid[pid] = f"p{len(by_pid) + 1}"
                process_tags = [tag("telemetry.distro.name", "djtrace")]
                if isinstance(pid, int):
                    process_tags.append(tag("process.pid", pid))
                processes[by_pid[pid]] = {"serviceName": service, "tags": process_tags}
            out_spans.extend(_span(span, by_pid[pid]) for span in spans)
        data.append(
            {
                "traceID": format(trace_id, "032x"),
                "spans": out_spans,
                "processes": processes,
                "warnings": None,
            }
        )
    return {"data": data, "total": 0, "limit": 0, "offset": 0, "errors": None}


def write_jaeger_json(
    traces: Iterable[Trace], target: str | Path | IO[str], service_name: str | None = None
) -> dict[str, Any]:
    """Write the Jaeger UI file ("-" is stdout); returns the document written."""
    document = to_jaeger_json(traces, service_name)
    write_json(document, target)
    return document


def export(traces: Iterable[Trace], destination: str | None) -> int:
    """`djtrace export --to jaeger-json [-o FILE]` (stdout by default); returns the count."""
    items = list(traces)
    write_jaeger_json(items, destination or "-")
    return len(items)
