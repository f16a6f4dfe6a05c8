"""Command-line glue for OTLP export: check the target before any request runs, send
traces, and say in one line what happened."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any

import typer
from djtrace import Trace
from djtrace.cli.errors import CliError
from djtrace.cli.render import plural
from rich.console import Console

OTLP_HELP = (
    "Also send the trace(s) over OTLP (Jaeger, Tempo, an OpenTelemetry Collector); "
    "target: --otlp-endpoint, else OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT, "
    "else http://localhost:4318."
)
ENDPOINT_HELP = (
    "OTLP endpoint, e.g. http://localhost:4318 (OTLP/HTTP; /v1/traces is added) "
    "or http://localhost:4317 with --otlp-protocol grpc."
)
PROTOCOL_HELP = "http/protobuf (default) or grpc (default: OTEL_EXPORTER_OTLP_PROTOCOL)."
SERVICE_HELP = "service.name in the backend (default: OTEL_SERVICE_NAME, else the project name)."

# The OTLP options, shared by every command that can export (request, capture).
OtlpFlag = Annotated[bool, typer.Option("--otlp", help=OTLP_HELP)]
EndpointOption = Annotated[
    str | None, typer.Option("--otlp-endpoint", metavar="URL", help=ENDPOINT_HELP)
]
ProtocolOption = Annotated[str | None, typer.Option("--otlp-protocol", help=PROTOCOL_HELP)]
ServiceOption = Annotated[str | None, typer.Option("--service-name", help=SERVICE_HELP)]


def check_options(
    otlp: bool, endpoint: str | None, protocol: str | None, service: str | None
) -> None:
    if (endpoint or protocol or service) and not otlp:
        raise CliError("--otlp-endpoint, --otlp-protocol and --service-name need --otlp")


def prepare(endpoint: str | None, protocol: str | None) -> Any:
    """A checked OTLP target (exporters.otlp.PreparedExport), or a one-line CliError."""
    from djtrace.exporters.otlp import OtlpSetupError, prepare_export

    try:
        return prepare_export(endpoint, protocol)
    except OtlpSetupError as exc:
        raise CliError(str(exc)) from None


def send(prepared: Any, traces: Iterable[Trace], service_name: str | None) -> None:
    """Send `traces`; one line on stderr saying where, or a CliError if the backend refused."""
    traces = list(traces)
    noun = "trace" if len(traces) == 1 else "traces"
    problem = prepared.unreachable()
    if problem is not None:
        raise CliError(
            f"could not export {len(traces)} {noun} to {prepared.endpoint} ({problem}); "
            "is the collector running? (Jaeger: OTLP/HTTP on port 4318)",
            code=1,
        )
    summary = prepared.send(traces, service_name)
    if not summary.ok:
        raise CliError(
            f"could not export {summary.failed_traces or summary.traces} {noun} to "
            f"{summary.endpoint} ({summary.reason or 'unknown reason'}); is the collector "
            "running? (Jaeger: OTLP/HTTP on port 4318)",
            code=1,
        )
    Console(stderr=True, highlight=False).print(
        f"[dim]exported {summary.traces} {noun} ({plural(summary.spans, 'span')}) to "
        f"{summary.endpoint} over OTLP {summary.protocol}[/]"
    )


def capture_env(
    endpoint: str | None, protocol: str | None, service_name: str | None
) -> dict[str, str]:
    """`djtrace capture --otlp`: checked before the server starts; the environment that
    makes every captured process export its traces."""
    from djtrace.exporters.otlp import ENV_OTLP_ENDPOINT, ENV_OTLP_PROTOCOL, OtlpSetupError
    from djtrace.exporters.otlp import capture_env as otlp_env

    try:
        env = otlp_env(endpoint, protocol, service_name)
    except OtlpSetupError as exc:
        raise CliError(str(exc)) from None
    Console(stderr=True, highlight=False).print(
        f"[dim]djtrace capture: also exporting every trace over OTLP {env[ENV_OTLP_PROTOCOL]} "
        f"to {env[ENV_OTLP_ENDPOINT]}[/]",
        soft_wrap=True,
    )
    return env
