"""djtrace traces arrive at a real OTLP/gRPC receiver (a collector's port 4317) as
first-class OpenTelemetry traces.

The receiver is a grpcio server on 127.0.0.1 running opentelemetry-proto's TraceService:
what arrives is the protobuf ExportTraceServiceRequest a collector or Jaeger decodes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from djtrace import trace
from djtrace.exporters.otlp import export_traces
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.conftest import run_djtrace
from tests.test_otlp import SERVER, Received, attrs, by_djtrace_id, closed_port, root_of


class GrpcReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """A collector's trace service on an ephemeral loopback port."""

    def __init__(self) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.metadata: list[dict[str, str]] = []
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def Export(self, request: ExportTraceServiceRequest, context: Any) -> Any:  # noqa: N802
        with self.lock:
            self.requests.append(request)
            self.metadata.append(dict(context.invocation_metadata()))
        return ExportTraceServiceResponse()

    def spans(self) -> list[Received]:
        with self.lock:
            return [
                Received(span, attrs(resource_spans.resource.attributes))
                for message in self.requests
                for resource_spans in message.resource_spans
                for scope_spans in resource_spans.scope_spans
                for span in scope_spans.spans
            ]


@pytest.fixture
def grpc_receiver() -> Iterator[GrpcReceiver]:
    receiver = GrpcReceiver()
    yield receiver
    receiver.server.stop(grace=None)


def test_a_request_arrives_over_grpc_with_every_span(client, grpc_receiver):
    with trace() as t:
        assert client.get("/books/2/").status_code == 200
    recorded = t.requests[0]

    summary = export_traces(
        t.requests,
        endpoint=f"http://127.0.0.1:{grpc_receiver.port}",
        protocol="grpc",
        service_name="bookstore-grpc",
        headers={"x-tenant": "shop-7"},
    )

    assert summary.ok and summary.traces == 1 and summary.spans == len(recorded.spans)
    spans = grpc_receiver.spans()
    assert len(spans) == len(recorded.spans)
    assert {s.resource["service.name"] for s in spans} == {"bookstore-grpc"}
    assert grpc_receiver.metadata[0]["x-tenant"] == "shop-7"
    root = root_of(spans)
    assert (root.name, root.kind) == ("GET books/<int:pk>/", SERVER)
    assert root.attrs["http.response.status_code"] == 200
    assert root.attrs["djtrace.trace_id"] == recorded.id
    otel = by_djtrace_id(recorded, spans)
    for span in recorded.spans:  # the same tree, parent for parent
        if span.parent is not None:
            assert otel[span.id].parent_id == otel[span.parent].span_id, span


def test_request_otlp_grpc_from_the_command_line(grpc_receiver):
    result = run_djtrace(
        "request",
        "/books/",
        "--otlp",
        "--otlp-protocol",
        "grpc",
        "--otlp-endpoint",
        f"127.0.0.1:{grpc_receiver.port}",  # host:port, as gRPC users write it
        "--service-name",
        "cli-grpc",
    )
    assert result.returncode == 0, result.stderr
    assert "GET /books/  →  200 OK" in result.stdout
    assert "over OTLP grpc" in result.stderr
    spans = grpc_receiver.spans()
    root = root_of(spans)
    assert root.name == "GET books/"
    assert root.resource["service.name"] == "cli-grpc"
    assert sum(1 for s in spans if s.attrs.get("db.query.text")) == 21


def test_a_grpc_collector_that_is_down_is_one_error_line():
    result = run_djtrace(
        "request",
        "/books/",
        "--otlp",
        "--otlp-protocol",
        "grpc",
        "--otlp-endpoint",
        f"http://127.0.0.1:{closed_port()}",
        timeout=120,
    )
    assert result.returncode == 1
    assert "GET /books/  →  200 OK" in result.stdout  # the tree is still shown
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "could not export 1 trace" in errors[0], result.stderr
    assert "Traceback" not in result.stderr
