"""djtrace: where did this Django request's time go? Every phase of the pipeline, traced.

Public API:

    from djtrace import trace, install, uninstall, Trace, Span

Names load on first use, so that `djtrace capture`'s bootstrap, which imports
`djtrace.cli.autotrace` into every Python process it starts, imports nothing else
until Django is set up.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from djtrace.inline import TraceSession, trace
    from djtrace.installer import install, installed, uninstall
    from djtrace.model import SCHEMA_VERSION, SchemaError, Span, Trace

_EXPORTS = {
    "SCHEMA_VERSION": "djtrace.model",
    "SchemaError": "djtrace.model",
    "Span": "djtrace.model",
    "Trace": "djtrace.model",
    "TraceSession": "djtrace.inline",
    "trace": "djtrace.inline",
    "install": "djtrace.installer",
    "installed": "djtrace.installer",
    "uninstall": "djtrace.installer",
    # `%load_ext djtrace` in IPython/Jupyter: the %djtrace magic (needs IPython).
    "load_ipython_extension": "djtrace.cli.ipython_magic",
}

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


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'djtrace' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    # Not the IPython hook: tools that getattr every name in dir() must not import IPython.
    return sorted([*globals(), *__all__])
