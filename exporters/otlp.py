"""Finished djtrace traces sent to an OpenTelemetry backend (Jaeger, Tempo, a Collector)
over OTLP/HTTP protobuf (default, Jaeger's port 4318) or OTLP/gRPC (4317).

Two ways in:

    sink = otlp_sink(endpoint, protocol, service_name)   # live: recorder.add_sink(sink)
    ...
    sink.close()                                          # flush; report failures once

    summary = export_traces(traces, endpoint=...)         # stored traces, synchronously

The live sink never blocks a request: the request thread only puts the trace on a bounded
queue (dropped and counted when full); a background thread turns it into spans for the
SDK's BatchSpanProcessor. Export failures (collector down) are logged once, then counted.

The standard OTEL_ variables are honoured: OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT / _HEADERS / _TIMEOUT / _COMPRESSION / _PROTOCOL.
This is the only djtrace module that imports OpenTelemetry, and only inside functions.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import re
import socket
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from djtrace.exporters.semconv import CLIENT, SERVER, default_service_name, remote_parent, to_otel
from djtrace.model import Trace

logger = logging.getLogger("djtrace")

HTTP, GRPC = "http/protobuf", "grpc"
PROTOCOLS = (HTTP, GRPC)
_PACKAGES = {
    HTTP: "opentelemetry-exporter-otlp-proto-http",
    GRPC: "opentelemetry-exporter-otlp-proto-grpc",
}
#: Where the SDK exporters log each failed or retried batch; we report once instead.
_EXPORTER_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.common.http",
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
)
DEFAULT_QUEUE_TRACES = 1000


class OtlpSetupError(ValueError):
    """The export cannot be set up (bad endpoint or protocol, package missing)."""


# --- configuration -------------------------------------------------------------------------


def resolve_protocol(protocol: str | None) -> str:
    value = (
        protocol
        or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or HTTP
    )
    value = value.strip().lower()
    if value in ("http", "http/protobuf", "otlp-http"):
        return HTTP
    if value in ("grpc", "otlp-grpc"):
        return GRPC
    if value == "http/json":
        raise OtlpSetupError(
            "OTLP protocol http/json is not supported by the Python exporters; "
            "use http/protobuf (default) or grpc"
        )
    raise OtlpSetupError(f"unknown OTLP protocol {value!r} (use http/protobuf or grpc)")


def resolve_endpoint(endpoint: str | None, protocol: str) -> str:
    """The URL traces go to. A bare `http://host:4318` gets OTLP/HTTP's `/v1/traces` path."""
    if not endpoint:
        env = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if env:  # the full URL, used as given (the OTel spec's rule)
            return _checked(env, protocol, add_path=False)
        base = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if not base:
            base = "http://localhost:4318" if protocol == HTTP else "http://localhost:4317"
        return _checked(base, protocol, add_path=True)
    return _checked(endpoint, protocol, add_path=True)


_HOST_PORT = re.compile(r"^\[?[\w.:-]+\]?:\d+(/.*)?$")


def _checked(endpoint: str, protocol: str, add_path: bool) -> str:
    endpoint = endpoint.strip()
    if "://" not in endpoint:
        if not _HOST_PORT.match(endpoint):  # "notaurl": a typo, not a collector
            raise OtlpSetupError(
                f"bad OTLP endpoint {endpoint!r}: expected a URL like http://localhost:4318"
            )
        endpoint = "http://" + endpoint  # host:port, as gRPC users often write it
    parts = urlsplit(endpoint)
    try:
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        parts = None  # type: ignore[assignment]
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise OtlpSetupError(
            f"bad OTLP endpoint {endpoint!r}: expected a URL like http://localhost:4318"
        )
    if protocol == HTTP and add_path and parts.path in ("", "/"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def resource_attributes_from(pairs: Iterable[str]) -> dict[str, str]:
    """`key=value` strings (as on the command line) as a dict."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise OtlpSetupError(f"bad resource attribute {pair!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def make_resource(service_name: str | None = None, attributes: Mapping[str, Any] | None = None):
    """The service's Resource: --service-name > OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES
    > the Django project's name."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    attrs: dict[str, Any] = {
        "telemetry.distro.name": "djtrace",
        "telemetry.distro.version": _djtrace_version(),
        **(attributes or {}),
    }
    if service_name:
        attrs[SERVICE_NAME] = service_name
    resource = Resource.create(attrs)
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: default_service_name()}))
    return resource


def _djtrace_version() -> str:
    try:
        from importlib.metadata import version

        return version("djtrace")
    except Exception:
        return "0"


def make_exporter(
    endpoint: str,
    protocol: str,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
):
    """The SDK's OTLP span exporter for `protocol`, or a clear error naming the package."""
    try:
        if protocol == GRPC:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError:
        package = _PACKAGES[protocol]
        raise OtlpSetupError(
            f"OTLP over {protocol} needs the {package} package: pip install {package}"
        ) from None
    kwargs: dict[str, Any] = {"endpoint": endpoint}
    if headers:
        kwargs["headers"] = dict(headers)
    if timeout is not None:
        kwargs["timeout"] = timeout
    if protocol == GRPC:
        kwargs["insecure"] = endpoint.startswith("http://")
    return OTLPSpanExporter(**kwargs)


# --- djtrace traces as SDK spans ------------------------------------------------------------


def to_readable_spans(trace: Trace, resource: Any) -> list[Any]:
    """`trace` as OpenTelemetry SDK spans, ready for any SpanExporter."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.sdk.util.instrumentation import InstrumentationScope
    from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
    from opentelemetry.trace.span import TraceState

    kinds = {SERVER: SpanKind.SERVER, CLIENT: SpanKind.CLIENT}
    scope = InstrumentationScope("djtrace", _djtrace_version())
    parent = remote_parent(trace)
    trace_state = TraceState()
    if parent is not None and parent.trace_state:
        trace_state = TraceState.from_header([parent.trace_state])
    flags = TraceFlags(TraceFlags.SAMPLED)
    out = []
    for span in to_otel(trace):
        context = SpanContext(span.trace_id, span.span_id, False, flags, trace_state)
        parent_context = (
            SpanContext(span.trace_id, span.parent_id, span.parent_is_remote, flags, trace_state)
            if span.parent_id is not None
            else None
        )
        out.append(
            ReadableSpan(
                name=span.name,
                context=context,
                parent=parent_context,
                resource=resource,
                attributes=span.attributes,
                events=[Event(e.name, e.attributes, e.time) for e in span.events],
                kind=kinds.get(span.kind, SpanKind.INTERNAL),
                status=Status(StatusCode.ERROR, span.error)
                if span.error is not None
                else Status(StatusCode.UNSET),
                start_time=span.start,
                end_time=span.end,
                instrumentation_scope=scope,
            )
        )
    return out


# --- counting failures ----------------------------------------------------------------------

_quiet = threading.local()  # set while our exporter runs, so only our batches are silenced


class _Silencer(logging.Filter):
    """Swallows the SDK exporter's per-batch log lines during our exports, keeping the reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        target = getattr(_quiet, "target", None)
        if target is None:
            return True
        if record.levelno >= logging.WARNING:
            reason, specific = _short_reason(record.getMessage())
            # "connection refused" from the first retry says more than the final "gave up".
            if specific or target.batch_reason is None:
                target.batch_reason = reason
        return False


_silencer = _Silencer()
_silencer_lock = threading.Lock()
_silenced = False


def _silence_exporter_logs() -> None:
    global _silenced
    with _silencer_lock:
        if not _silenced:
            for name in _EXPORTER_LOGGERS:
                logging.getLogger(name).addFilter(_silencer)
            _silenced = True


_GAVE_UP = "gave up after retries"


def _probe(endpoint: str) -> str | None:
    """Why a connection to the collector fails (the SDK gives up without saying, when its
    retry budget is shorter than its backoff). Runs off the request path, on failure only."""
    parts = urlsplit(endpoint)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "localhost", port), timeout=2):
            return None
    except socket.gaierror:
        return f"cannot resolve host {parts.hostname}"
    except TimeoutError:
        return "connection timed out"
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()


_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_CODE = re.compile(r"code: (\d+), reason: (.*)$")


def _short_reason(message: str) -> tuple[str, bool]:
    """A few words for the log line, and whether they name a concrete cause."""
    match = _ERRNO.search(message)
    if match:
        return match.group(1).strip().lower(), True
    match = _CODE.search(message)
    if match and match.group(1) != "None":
        return f"HTTP {match.group(1)} {match.group(2)}".strip(), True
    lowered = message.lower()
    if "timed out" in lowered or ("timeout" in lowered and "max retries" not in lowered):
        return "timed out", True
    if "max retries" in lowered:
        return _GAVE_UP, False
    return (message if len(message) <= 200 else message[:199] + "…"), False


class ExportStats:
    """What happened to the spans handed to one exporter. Thread-safe counters."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.exported_spans = 0
        self.exported_traces = 0
        self.failed_spans = 0
        self.failed_traces = 0
        self.dropped_traces = 0  # never reached the exporter: the queue was full
        self.last_reason: str | None = None
        self.batch_reason: str | None = None  # set by the log filter during one export
        self.reported = False
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)

    def summary(self) -> str:
        parts = [f"{self.exported_traces} exported"]
        if self.failed_traces:
            parts.append(f"{self.failed_traces} failed ({self.last_reason or 'unknown reason'})")
        if self.dropped_traces:
            parts.append(f"{self.dropped_traces} dropped (export queue full)")
        return f"traces to {self.endpoint}: " + ", ".join(parts)


class CountingExporter:
    """Wraps a SpanExporter: counts traces and spans exported or failed, and logs the first
    failure only (one line, with the reason), instead of one line per batch."""

    def __init__(self, inner: Any, stats: ExportStats, log_first_failure: bool = True) -> None:
        self.inner = inner
        self.stats = stats
        self.log_first_failure = log_first_failure

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        _quiet.target = self.stats
        self.stats.batch_reason = None
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # an exporter must not raise; count it if it does
            self.stats.batch_reason = _short_reason(f"{type(exc).__name__}: {exc}")[0]
            result = SpanExportResult.FAILURE
        finally:
            _quiet.target = None
        if result != SpanExportResult.SUCCESS:
            reason = self.stats.batch_reason
            if reason is None or reason == _GAVE_UP:
                known = self.stats.last_reason
                if known is not None and known != _GAVE_UP:
                    reason = known  # found by an earlier probe: do not probe per batch
                else:
                    reason = _probe(self.stats.endpoint) or reason or _GAVE_UP
            self.stats.last_reason = reason
        # Each trace has one root, the span carrying djtrace.trace_id; a trace split over two
        # batches is still counted once.
        traces = sum(1 for s in spans if "djtrace.trace_id" in (s.attributes or {}))
        stats = self.stats
        first = False
        with stats._lock:
            if result == SpanExportResult.SUCCESS:
                stats.exported_spans += len(spans)
                stats.exported_traces += traces
            else:
                stats.failed_spans += len(spans)
                stats.failed_traces += traces
                first = not stats.reported and self.log_first_failure
                stats.reported = True
            stats._settled.notify_all()
        if result != SpanExportResult.SUCCESS and first:
            logger.warning(
                "djtrace: could not export traces to %s (%s); requests are unaffected, "
                "further failures are only counted",
                stats.endpoint,
                stats.last_reason or "unknown reason",
            )
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def _span_exporter_class():
    """CountingExporter as a real SDK SpanExporter subclass (made lazily: no import at top)."""
    global _CountingSpanExporter
    if _CountingSpanExporter is None:
        from opentelemetry.sdk.trace.export import SpanExporter

        _CountingSpanExporter = type("CountingSpanExporter", (CountingExporter, SpanExporter), {})
    return _CountingSpanExporter


_CountingSpanExporter: Any = None


# --- live: a sink for recorder.add_sink ------------------------------------------------------


class OtlpSink:
    """`sink(trace)` queues a finished trace for export; never blocks, never raises.

    A background thread converts queued traces to spans and hands them to the SDK's
    BatchSpanProcessor. When the exporter falls behind (or the collector is down), the
    trace queue fills and further traces are dropped and counted.
    """

    def __init__(
        self,
        exporter: Any,
        resource: Any,
        stats: ExportStats,
        *,
        max_queue_traces: int = DEFAULT_QUEUE_TRACES,
        schedule_delay_millis: float | None = None,
    ) -> None:
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.stats = stats
        self.resource = resource
        self.exporter = exporter
        self._max_spans_in_flight = 2048  # the BatchSpanProcessor's default queue size
        self.processor = BatchSpanProcessor(
            exporter,
            max_queue_size=self._max_spans_in_flight,
            schedule_delay_millis=schedule_delay_millis,
        )
        self._queue: queue.Queue[Trace | None] = queue.Queue(maxsize=max_queue_traces)
        self._emitted = 0
        self._closed = False
        self._pid = os.getpid()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        return self.stats.endpoint

    def __call__(self, trace: Trace) -> None:
        if self._closed:
            return
        if self._worker is None or self._pid != os.getpid():
            self._start_worker()
        try:
            self._queue.put_nowait(trace)
        except queue.Full:
            self.stats.dropped_traces += 1

    def _start_worker(self) -> None:
        with self._start_lock:
            if self._worker is not None and self._pid == os.getpid():
                return
            if self._pid != os.getpid():  # a forked server worker: fresh queue and thread
                self._queue = queue.Queue(maxsize=self._queue.maxsize)
                self._emitted = 0
                self._pid = os.getpid()
            self._worker = threading.Thread(
                target=self._run, name="djtrace-otlp-export", daemon=True
            )
            self._worker.start()

    def _in_flight(self) -> int:
        stats = self.stats
        return self._emitted - stats.exported_spans - stats.failed_spans

    def _run(self) -> None:
        while True:
            trace = self._queue.get()
            if trace is None:
                return
            try:
                spans = to_readable_spans(trace, self.resource)
            except Exception:
                logger.warning("djtrace: could not convert trace %s for OTLP", trace.id)
                continue
            # Wait for room rather than let the processor drop spans one by one (and log
            # each); meanwhile the bounded trace queue is what fills and drops.
            with self.stats._settled:
                while (
                    self._in_flight() > 0
                    and self._in_flight() + len(spans) > self._max_spans_in_flight
                ):
                    if not self.stats._settled.wait(timeout=1.0) and self._closed:
                        break
            for span in spans:
                self.processor.on_end(span)
            self._emitted += len(spans)

    def close(self, timeout_s: float = 30.0) -> ExportStats:
        """Send what is queued, stop, and log one summary line if anything was lost."""
        if self._closed:
            return self.stats
        self._closed = True
        if self._worker is not None:
            self._queue.put(None)
            self._worker.join(timeout_s)
        self.processor.shutdown()
        stats = self.stats
        if stats.failed_traces or stats.dropped_traces:
            logger.warning("djtrace: %s", stats.summary())
        return stats


def otlp_sink(
    endpoint: str | None = None,
    protocol: str | None = None,
    service_name: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    resource_attributes: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    max_queue_traces: int = DEFAULT_QUEUE_TRACES,
    schedule_delay_millis: float | None = None,
) -> OtlpSink:
    """A sink for `djtrace.recorder.add_sink` that exports every finished trace over OTLP.

    Call `.close()` when done: it flushes, and logs one line if traces were lost.
    Raises OtlpSetupError for a bad endpoint/protocol or a missing exporter package.
    """
    protocol = resolve_protocol(protocol)
    url = resolve_endpoint(endpoint, protocol)
    stats = ExportStats(url)
    inner = make_exporter(url, protocol, headers, timeout)
    _silence_exporter_logs()
    return OtlpSink(
        _span_exporter_class()(inner, stats),
        make_resource(service_name, resource_attributes),
        stats,
        max_queue_traces=max_queue_traces,
        schedule_delay_millis=schedule_delay_millis,
    )


# --- stored traces: synchronously ------------------------------------------------------------


@dataclass
class ExportSummary:
    endpoint: str
    protocol: str
    traces: int
    spans: int
    failed_traces: int
    failed_spans: int
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.failed_spans == 0


def export_traces(
    traces: Iterable[Trace],
    endpoint: str | None = None,
    protocol: str | None = None,
    service_name: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    resource_attributes: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    batch_spans: int = 512,
    on_batch: Callable[[int], None] | None = None,
) -> ExportSummary:
    """Send `traces` now, in batches; return what was sent and what failed (never raises
    for a collector that is down: the summary says so)."""
    exporter = prepare_export(endpoint, protocol, headers=headers, timeout=timeout)
    return exporter.send(traces, service_name, resource_attributes, batch_spans, on_batch)


class PreparedExport:
    """A checked endpoint and exporter, made before any request runs (fail fast)."""

    def __init__(self, url: str, protocol: str, inner: Any) -> None:
        self.endpoint = url
        self.protocol = protocol
        self.stats = ExportStats(url)
        # The caller reports the outcome from the summary, so no log line here.
        self.exporter = CountingExporter(inner, self.stats, log_first_failure=False)

    def unreachable(self) -> str | None:
        """Why the collector cannot be reached right now (refused, unknown host), or None.

        One-shot commands check first: the SDK would retry a refused connection for up
        to its timeout (10 s) before giving up."""
        return _probe(self.endpoint)

    def send(
        self,
        traces: Iterable[Trace],
        service_name: str | None = None,
        resource_attributes: Mapping[str, Any] | None = None,
        batch_spans: int = 512,
        on_batch: Callable[[int], None] | None = None,
    ) -> ExportSummary:
        resource = make_resource(service_name, resource_attributes)
        batch: list[Any] = []
        traces_sent = 0
        for trace in traces:
            batch.extend(to_readable_spans(trace, resource))
            traces_sent += 1
            if len(batch) >= batch_spans:
                self.exporter.export(batch)
                if on_batch is not None:
                    on_batch(len(batch))
                batch = []
        if batch:
            self.exporter.export(batch)
            if on_batch is not None:
                on_batch(len(batch))
        self.exporter.shutdown()
        stats = self.stats
        return ExportSummary(
            endpoint=self.endpoint,
            protocol=self.protocol,
            traces=traces_sent,
            spans=stats.exported_spans + stats.failed_spans,
            failed_traces=stats.failed_traces,
            failed_spans=stats.failed_spans,
            reason=stats.last_reason,
        )


def prepare_export(
    endpoint: str | None = None,
    protocol: str | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> PreparedExport:
    """Check the endpoint and protocol and build the exporter (raises OtlpSetupError)."""
    protocol = resolve_protocol(protocol)
    url = resolve_endpoint(endpoint, protocol)
    inner = make_exporter(url, protocol, headers, timeout)
    _silence_exporter_logs()
    return PreparedExport(url, protocol, inner)


def export(traces: Iterable[Trace], destination: str | None) -> int:
    """`djtrace export --to otlp [-o URL]`: send stored traces now; returns how many arrived.

    A setup problem or a collector that refused them is an OSError (the command's one-line
    "cannot write" error), with the reason.
    """
    try:
        prepared = prepare_export(destination)
    except OtlpSetupError as exc:
        raise OSError(str(exc)) from None
    problem = prepared.unreachable()
    if problem is not None:
        raise ConnectionError(f"cannot reach {prepared.endpoint} ({problem})")
    summary = prepared.send(traces)
    if not summary.ok:
        raise ConnectionError(
            f"{summary.failed_traces} of {summary.traces} traces not accepted by "
            f"{summary.endpoint} ({summary.reason or 'unknown reason'})"
        )
    return summary.traces


# --- `djtrace capture --otlp`: configured through the captured command's environment --------

ENV_OTLP = "DJTRACE_OTLP"  # "1": every captured process exports its traces over OTLP
ENV_OTLP_ENDPOINT = "DJTRACE_OTLP_ENDPOINT"
ENV_OTLP_PROTOCOL = "DJTRACE_OTLP_PROTOCOL"
ENV_OTLP_SERVICE = "DJTRACE_OTLP_SERVICE_NAME"


def capture_env(
    endpoint: str | None, protocol: str | None, service_name: str | None
) -> dict[str, str]:
    """What `djtrace capture --otlp` puts in the command's environment (after checking it)."""
    protocol = resolve_protocol(protocol)
    url = resolve_endpoint(endpoint, protocol)
    make_exporter(url, protocol)  # a missing package fails here, before the server starts
    env = {ENV_OTLP: "1", ENV_OTLP_ENDPOINT: url, ENV_OTLP_PROTOCOL: protocol}
    if service_name:
        env[ENV_OTLP_SERVICE] = service_name
    return env


def attach_from_env(add_sink: Callable[[Callable[[Trace], None]], None]) -> OtlpSink | None:
    """In a captured process: add an OTLP sink if `capture --otlp` asked for one, flushed
    at exit. Never raises: a problem is one line on stderr and the app runs on."""
    if os.environ.get(ENV_OTLP) != "1":
        return None
    try:
        sink = otlp_sink(
            os.environ.get(ENV_OTLP_ENDPOINT) or None,
            os.environ.get(ENV_OTLP_PROTOCOL) or None,
            os.environ.get(ENV_OTLP_SERVICE) or None,
        )
        add_sink(sink)
    except Exception as exc:
        print(
            f"djtrace: process {os.getpid()} does not export over OTLP: {exc}",
            file=sys.stderr,
            flush=True,
        )
        return None
    atexit.register(sink.close)
    return sink


__all__ = [
    "GRPC",
    "HTTP",
    "ExportStats",
    "ExportSummary",
    "OtlpSetupError",
    "OtlpSink",
    "PreparedExport",
    "attach_from_env",
    "capture_env",
    "default_service_name",
    "export",
    "export_traces",
    "make_resource",
    "otlp_sink",
    "prepare_export",
    "resolve_endpoint",
    "resolve_protocol",
    "to_readable_spans",
]
