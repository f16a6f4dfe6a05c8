"""djtrace traces arrive at a real OTLP/HTTP receiver as first-class OpenTelemetry traces.

The receiver is a tiny HTTP server on 127.0.0.1 that decodes what arrives with
opentelemetry-proto's ExportTraceServiceRequest, exactly as a collector or Jaeger would.
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from djtrace import trace
from djtrace.exporters.otlp import export_traces, otlp_sink
from djtrace.exporters.semconv import span_id_of
from djtrace.recorder import add_sink, remove_sink
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus

from tests.conftest import ROOT, run_djtrace

SERVER, CLIENT, INTERNAL = (
    PbSpan.SPAN_KIND_SERVER,
    PbSpan.SPAN_KIND_CLIENT,
    PbSpan.SPAN_KIND_INTERNAL,
)
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


# --- the receiver --------------------------------------------------------------------------


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


def attrs(items: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items}


class Received:
    """One span as it arrived, with its resource and decoded attributes."""

    def __init__(self, span: PbSpan, resource: dict[str, Any]) -> None:
        self.pb = span
        self.resource = resource
        self.trace_id = span.trace_id.hex()
        self.span_id = span.span_id.hex()
        self.parent_id = span.parent_span_id.hex() or None
        self.name = span.name
        self.kind = span.kind
        self.attrs = attrs(span.attributes)
        self.events = [(e.name, e.time_unix_nano, attrs(e.attributes)) for e in span.events]
        self.start = span.start_time_unix_nano
        self.end = span.end_time_unix_nano

    def __repr__(self) -> str:
        return f"<Received {self.name} {self.kind}>"


class Receiver:
    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                message = ExportTraceServiceRequest()
                message.ParseFromString(body)
                with receiver.lock:
                    receiver.requests.append(message)
                    receiver.paths.append(self.path)
                reply = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def spans(self) -> list[Received]:
        out = []
        with self.lock:
            for message in self.requests:
                for resource_spans in message.resource_spans:
                    resource = attrs(resource_spans.resource.attributes)
                    for scope_spans in resource_spans.scope_spans:
                        out.extend(Received(s, resource) for s in scope_spans.spans)
        return out

    def traces(self) -> dict[str, list[Received]]:
        grouped: dict[str, list[Received]] = {}
        for span in self.spans():
            grouped.setdefault(span.trace_id, []).append(span)
        return grouped

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver()
    yield rx
    rx.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def root_of(spans: list[Received]) -> Received:
    ids = {s.span_id for s in spans}
    roots = [s for s in spans if s.parent_id is None or s.parent_id not in ids]
    assert len(roots) == 1, roots
    return roots[0]


def by_djtrace_id(recorded: Any, spans: list[Received]) -> dict[int, Received]:
    """Each recorded djtrace span → the OTel span it became."""
    arrived = {s.span_id: s for s in spans}
    return {s.id: arrived[format(span_id_of(recorded, s), "016x")] for s in recorded.spans}


# --- one request, every phase --------------------------------------------------------------


def test_books_request_arrives_as_one_otel_trace_with_every_phase(client, receiver):
    with trace() as t:
        response = client.get(
            "/books/?page=1", HTTP_HOST="localhost:8000", HTTP_USER_AGENT="curl/8.5.0"
        )
        assert response.status_code == 200
    recorded = t.requests[0]

    summary = export_traces(t.requests, endpoint=receiver.base, service_name="bookstore-test")

    assert summary.ok and summary.traces == 1 and summary.spans == len(recorded.spans)
    assert receiver.paths == ["/v1/traces"]  # the base URL got OTLP/HTTP's path
    traces = receiver.traces()
    assert len(traces) == 1
    spans = next(iter(traces.values()))
    assert len(spans) == len(recorded.spans)
    assert {s.resource["service.name"] for s in spans} == {"bookstore-test"}

    root = root_of(spans)
    assert root.name == "GET books/"
    assert root.kind == SERVER
    assert root.attrs["http.request.method"] == "GET"
    assert root.attrs["url.path"] == "/books/"
    assert root.attrs["http.route"] == "books/"
    assert root.attrs["http.response.status_code"] == 200
    assert root.attrs["url.query"] == "page=1"
    assert root.attrs["server.address"] == "localhost"
    assert root.attrs["server.port"] == 8000
    assert root.attrs["user_agent.original"] == "curl/8.5.0"
    assert root.attrs["djtrace.trace_id"] == recorded.id
    assert root.trace_id.endswith(recorded.id)  # findable in Jaeger by djtrace's id
    assert root.pb.status.code == PbStatus.STATUS_CODE_UNSET

    # Every djtrace span became one OTel span with the same parent and a fitting kind.
    otel = by_djtrace_id(recorded, spans)
    expected_kind = {
        "middleware": INTERNAL,
        "url.resolve": INTERNAL,
        "view": INTERNAL,
        "template": INTERNAL,
        "response.stream": INTERNAL,
        "response.close": INTERNAL,
        "db.query": CLIENT,
    }
    phases = {s.phase for s in recorded.spans}
    assert {"middleware", "url.resolve", "view", "db.query", "template"} <= phases
    for span in recorded.spans:
        arrived = otel[span.id]
        assert arrived.attrs["djtrace.phase"] == span.phase
        if span.parent is not None:
            assert arrived.parent_id == otel[span.parent].span_id, span
        if span.phase in expected_kind:
            assert arrived.kind == expected_kind[span.phase], span
        assert root.start <= arrived.start <= arrived.end <= root.end, span

    # The structure reads as Django ran it.
    by_name = {s.name: s for s in spans}
    innermost = by_name["djtrace.sample_site.middleware.ServerTimingMiddleware"]
    assert by_name["url.resolve books/"].parent_id == innermost.span_id
    view = by_name["djtrace.sample_site.bookstore.views.book_list"]
    assert view.parent_id == innermost.span_id
    assert view.attrs["code.function.name"] == "djtrace.sample_site.bookstore.views.book_list"
    queries = [s for s in spans if s.kind == CLIENT and s.attrs.get("db.query.text")]
    assert len(queries) == len(recorded.queries) == 21
    assert all(q.parent_id == view.span_id for q in queries)
    author = next(q for q in queries if q.name == "SELECT bookstore_author")
    assert author.attrs["db.system.name"] == "sqlite"
    assert author.attrs["db.operation.name"] == "SELECT"
    assert author.attrs["db.collection.name"] == "bookstore_author"
    assert author.attrs["db.namespace"] == "default"
    assert author.attrs["code.file.path"] == "sample_site/bookstore/views.py"
    assert author.attrs["djtrace.finding"] == "n+1"
    middleware = by_name["django.contrib.sessions.middleware.SessionMiddleware"]
    assert middleware.attrs["djtrace.middleware.before_ms"] >= 0
    assert middleware.attrs["djtrace.middleware.after_ms"] >= 0

    # The N+1 is an event on the request span.
    (n_plus_one,) = [e for e in root.events if e[0] == "djtrace.n_plus_one"]
    _, when, event_attrs = n_plus_one
    assert event_attrs["djtrace.finding.count"] == 20
    assert event_attrs["code.file.path"] == "sample_site/bookstore/views.py"
    assert root.start <= when <= root.end


def test_raising_view_sets_error_status_and_an_exception_event(client, receiver):
    with trace() as t:
        assert client.get("/boom/").status_code == 500
    export_traces(t.requests, endpoint=receiver.base)

    spans = receiver.spans()
    root = root_of(spans)
    assert root.name == "GET boom/"
    assert root.attrs["http.response.status_code"] == 500
    assert root.pb.status.code == PbStatus.STATUS_CODE_ERROR
    assert root.attrs["error.type"] == "builtins.RuntimeError"
    (view,) = [s for s in spans if s.attrs["djtrace.phase"] == "view"]
    assert view.pb.status.code == PbStatus.STATUS_CODE_ERROR
    ((name, when, event),) = view.events
    assert name == "exception"
    assert event["exception.type"] == "builtins.RuntimeError"
    assert event["exception.message"] == "boom: deliberate failure for djtrace"
    assert view.start <= when <= view.end


def test_a_callers_traceparent_makes_the_request_its_child(client, receiver):
    with trace() as t:
        client.get("/books/1/", HTTP_TRACEPARENT=f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
        client.get("/books/1/", HTTP_TRACEPARENT="00-not-a-valid-header-01")
    export_traces(t.requests, endpoint=receiver.base)

    traces = receiver.traces()
    assert len(traces) == 2
    continued = traces[CALLER_TRACE]
    root = next(s for s in continued if s.parent_id == CALLER_SPAN)
    assert root.name == "GET books/<int:pk>/"
    assert root.kind == SERVER
    assert len(continued) == len(t.requests[0].spans)
    (own_id,) = set(traces) - {CALLER_TRACE}
    assert own_id.endswith(t.requests[1].id)  # an invalid header is ignored
    assert root_of(traces[own_id]).parent_id is None


# --- live: the sink ------------------------------------------------------------------------


def test_live_sink_exports_each_request_in_the_background(client, receiver):
    sink = otlp_sink(receiver.base, service_name="live", schedule_delay_millis=50)
    add_sink(sink)
    try:
        with trace() as t:
            for path in ("/books/fast/", "/books/1/", "/api/books/"):
                assert client.get(path).status_code == 200
    finally:
        remove_sink(sink)
    stats = sink.close()

    assert stats.exported_traces == 3 and stats.failed_traces == 0
    traces = receiver.traces()
    assert sorted(traces) == sorted(format(int(r.id, 16), "032x") for r in t.requests)
    names = sorted(root_of(spans).name for spans in traces.values())
    assert names == ["GET api/books/", "GET books/<int:pk>/", "GET books/fast/"]
    assert {s.resource["service.name"] for s in receiver.spans()} == {"live"}


def test_collector_down_requests_succeed_and_failure_is_reported_once(client, caplog):
    url = f"http://127.0.0.1:{closed_port()}"
    sink = otlp_sink(url, timeout=0.5, schedule_delay_millis=20)
    add_sink(sink)
    caplog.set_level(logging.DEBUG)
    try:
        with trace() as t:
            statuses = [client.get("/books/fast/").status_code for _ in range(5)]
    finally:
        remove_sink(sink)
    stats = sink.close()

    assert statuses == [200] * 5 and len(t.requests) == 5
    assert stats.failed_traces == 5 and stats.exported_traces == 0
    assert stats.last_reason == "connection refused"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    first = [m for m in warnings if "could not export traces" in m]
    summary = [m for m in warnings if "5 failed" in m]
    assert len(first) == 1 and url in first[0] and "connection refused" in first[0]
    assert len(summary) == 1 and "0 exported" in summary[0]
    assert len(warnings) == 2, warnings  # nothing per request, nothing from the SDK exporter


# --- an app that already runs DjangoInstrumentor --------------------------------------------


def test_under_django_instrumentor_there_is_one_server_span(receiver):
    from django.test import Client
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "shop"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=receiver.base + "/v1/traces"))
    )
    instrumentor = DjangoInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        client = Client()  # a new handler: its middleware chain includes OTel's
        with trace() as t:
            assert client.get("/books/1/").status_code == 200
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    recorded = t.requests[0]
    assert "otel_parent" in recorded.where

    export_traces(t.requests, endpoint=receiver.base, service_name="shop")

    traces = receiver.traces()
    assert len(traces) == 1  # djtrace's spans joined the instrumentation's trace
    spans = next(iter(traces.values()))
    servers = [s for s in spans if s.kind == SERVER]
    assert len(servers) == 1
    (server,) = servers
    assert server.name == "GET books/<int:pk>/"
    assert server.attrs.get("djtrace.phase") is None  # the instrumentation's own span
    otel = by_djtrace_id(recorded, spans)
    djtrace_root = otel[recorded.root.id]
    assert djtrace_root.parent_id == server.span_id
    assert djtrace_root.kind == INTERNAL
    assert len(spans) == len(recorded.spans) + 1


# --- the real command line -----------------------------------------------------------------


def test_cli_request_otlp_sends_the_traced_request(receiver):
    result = run_djtrace(
        "request",
        "/books/",
        "-H",
        f"traceparent: 00-{CALLER_TRACE}-{CALLER_SPAN}-01",
        "--otlp",
        "--otlp-endpoint",
        receiver.base,
        "--service-name",
        "cli-books",
    )
    assert result.returncode == 0, result.stderr
    assert "GET /books/" in result.stdout  # the tree is still shown
    assert "exported 1 trace" in result.stderr and "/v1/traces" in result.stderr
    traces = receiver.traces()
    assert list(traces) == [CALLER_TRACE]
    spans = traces[CALLER_TRACE]
    root = root_of(spans)
    assert root.parent_id == CALLER_SPAN
    assert root.name == "GET books/" and root.kind == SERVER
    assert root.resource["service.name"] == "cli-books"
    assert sum(1 for s in spans if s.attrs.get("db.query.text")) == 21
    (event,) = [e for e in root.events if e[0] == "djtrace.n_plus_one"]
    assert event[2]["djtrace.finding.count"] == 20


def test_cli_request_otlp_reports_a_collector_that_is_down():
    url = f"http://127.0.0.1:{closed_port()}"
    result = run_djtrace("request", "/books/fast/", "--otlp", "--otlp-endpoint", url)
    assert result.returncode == 1
    assert "GET /books/fast/" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: could not export 1 trace to " + url)
    assert "connection refused" in lines[0]
    # The same from the environment's endpoint, and with host:port instead of a URL.
    for env, args in (
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": url}, []),
        ({}, ["--otlp-endpoint", url.removeprefix("http://")]),
    ):
        result = run_djtrace("request", "/books/fast/", "--otlp", *args, env=env)
        assert result.returncode == 1, (env, args, result.stderr)
        assert "where the time went" in result.stdout  # the tree is still shown
        assert result.stderr.startswith("error: could not export 1 trace to " + url)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--otlp", "--otlp-endpoint", "ftp://x"], "error: bad OTLP endpoint"),
        (["--otlp", "--otlp-endpoint", "notaurl"], "error: bad OTLP endpoint 'notaurl'"),
        (["--otlp", "--otlp-protocol", "carrier-pigeon"], "error: unknown OTLP protocol"),
        (["--otlp-endpoint", "http://localhost:4318"], "need --otlp"),
    ],
)
def test_cli_request_otlp_bad_input_is_one_line(args, message):
    result = run_djtrace("request", "/books/fast/", *args)
    assert result.returncode == 2
    assert result.stderr.startswith(message) or message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""  # refused before any request ran


def test_cli_grpc_without_its_package_names_the_package():
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    try:
        import opentelemetry.exporter.otlp.proto.grpc  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("the gRPC exporter is installed here")
    result = run_djtrace("request", "/books/fast/", "--otlp", "--otlp-protocol", "grpc")
    assert result.returncode == 2
    assert "pip install opentelemetry-exporter-otlp-proto-grpc" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_export_sends_stored_traces(client, receiver, tmp_path):
    with trace() as t:
        for path in ("/books/", "/books/1/", "/boom/"):
            client.get(path)
    lines = tmp_path / "traces.jsonl"
    lines.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in t.requests))
    store = str(tmp_path / "store.sqlite3")
    assert run_djtrace("import", str(lines), "--store", store).returncode == 0

    result = run_djtrace(
        "export", "--to", "otlp", "-o", receiver.base, "--store", store,
        env={"OTEL_SERVICE_NAME": "stored"},
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    traces = receiver.traces()
    assert sorted(traces) == sorted(format(int(r.id, 16), "032x") for r in t.requests)
    names = sorted(root_of(spans).name for spans in traces.values())
    assert names == ["GET books/", "GET books/<int:pk>/", "GET boom/"]
    assert {s.resource["service.name"] for s in receiver.spans()} == {"stored"}
    for recorded in t.requests:
        spans = traces[format(int(recorded.id, 16), "032x")]
        assert len(spans) == len(recorded.spans)  # stored and re-read, nothing lost

    down = run_djtrace("export", "--to", "otlp", "-o", f"http://127.0.0.1:{closed_port()}",
                       "--store", store)  # fmt: skip
    assert down.returncode != 0
    assert "connection refused" in down.stderr and "Traceback" not in down.stderr
    assert len(down.stderr.strip().splitlines()) == 1


def test_cli_capture_otlp_exports_live_from_a_real_server(receiver, tmp_path, monkeypatch):
    from tests.capture_support import capture, fetch, free_port, gunicorn_args

    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export within 0.1 s, not 5 s
    port = free_port()
    options = ("--otlp", "--otlp-endpoint", receiver.base, "--service-name", "captured")
    with capture(tmp_path, gunicorn_args(port, workers=1, threads=2), port, *options) as server:
        statuses = [fetch(server.base + path)[0] for path in ("/books/", "/books/1/", "/boom/")]
        assert statuses == [200, 200, 500]
        # Exported while the server still runs: the batch processor works in the background.
        for _ in range(1200):  # a hang guard, not a time limit
            if len(receiver.traces()) == 3:
                break
            time.sleep(0.05)
        assert len(receiver.traces()) == 3, server.stderr()
    assert "exporting every trace over OTLP http/protobuf" in server.stderr()
    traces = receiver.traces()
    names = sorted(root_of(spans).name for spans in traces.values())
    assert names == ["GET books/", "GET books/<int:pk>/", "GET boom/"]
    assert {s.resource["service.name"] for s in receiver.spans()} == {"captured"}
    boom = next(spans for spans in traces.values() if root_of(spans).name == "GET boom/")
    assert root_of(boom).pb.status.code == PbStatus.STATUS_CODE_ERROR


def test_tracing_and_file_exports_never_import_opentelemetry():
    code = """
import sys
import django
django.setup()
from django.test import Client
from djtrace import trace
from djtrace.exporters.chrome import to_chrome
from djtrace.exporters.jaeger_json import to_jaeger_json
import djtrace.exporters.otlp  # the module itself; OpenTelemetry loads only when it sends
with trace() as t:
    Client().get("/books/1/")
to_chrome(t.requests), to_jaeger_json(t.requests)
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
assert not loaded, loaded
assert "otel_parent" not in t.requests[0].where
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
