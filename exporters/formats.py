"""Export formats by name, for `djtrace export --to NAME`.

Adding a format is one entry in `FORMATS`: a writer `(traces, destination) -> count`,
where `destination` is what the user gave with `-o/--output` (a file path, or a URL for
formats that send traces somewhere), or None for the default (usually stdout). Writers
are named as "module:function" and imported only when used, so a format's dependencies
(OpenTelemetry for OTLP) load only for that format.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import import_module

from djtrace.model import Trace

Writer = Callable[[Iterable[Trace], "str | None"], int]


@dataclass(frozen=True)
class ExportFormat:
    name: str
    writer: str  # "package.module:function"
    description: str

    def load(self) -> Writer:
        module, _, function = self.writer.partition(":")
        return getattr(import_module(module), function)


FORMATS: dict[str, ExportFormat] = {
    "jsonl": ExportFormat(
        "jsonl", "djtrace.exporters.jsonl:export", "one trace per line, the documented trace JSON"
    ),
    "otlp": ExportFormat(
        "otlp",
        "djtrace.exporters.otlp:export",
        "send over OTLP to Jaeger/Tempo/a Collector (-o URL, default http://localhost:4318)",
    ),
    "jaeger-json": ExportFormat(
        "jaeger-json", "djtrace.exporters.jaeger_json:export", "a file Jaeger UI opens (JSON File)"
    ),
    "chrome": ExportFormat(
        "chrome",
        "djtrace.exporters.chrome:export",
        "Chrome trace events for Perfetto / chrome://tracing",
    ),
}


def register(fmt: ExportFormat) -> None:
    FORMATS[fmt.name] = fmt
