"""djtrace's instrumentation layer: hooks every phase of Django's request pipeline.

Public API:

    from tracer import trace, install, uninstall, Trace, Span
"""

from tracer.inline import TraceSession, trace
from tracer.install import install, installed, uninstall
from tracer.model import SCHEMA_VERSION, SchemaError, Span, Trace

__all__ = [
    "SCHEMA_VERSION",
    "SchemaError",
    "Span",
    "Trace",
    "TraceSession",
    "install",
    "installed",
    "trace",
    "uninstall",
]
