"""The concurrency lab's request tag, read by the tracer (docs/trace-format.md, "load").

Every request `djtrace load` sends carries one header:

    X-Djtrace-Load: run=<run id>;stage=<int>;seq=<int>;sent=<unix epoch ns>[;full=1]

The tracer records it as `trace.request["load"]` (and not among the headers); `full=1`
asks for a full trace when capture samples (`capture --sample`). A malformed tag is ignored.
The lab writes it (djtrace.lab.tag); the tracer only reads it, so it does not import the lab.
"""

from __future__ import annotations

import re
from typing import Any

HEADER_KEY = "x-djtrace-load"  # as recorded header names are spelled
META_KEY = "HTTP_X_DJTRACE_LOAD"  # in request.META / a WSGI environ
ASGI_KEY = HEADER_KEY.encode()  # in an ASGI scope's headers

_TAG = re.compile(
    r"run=([A-Za-z0-9_-]{1,40});stage=(\d{1,9});seq=(\d{1,18});sent=(\d{1,20})(;full=1)?"
)


def parse(value: str) -> dict[str, Any] | None:
    """`{"run", "stage", "seq", "sent_ns"}` (and `"full": True` when asked), or None."""
    match = _TAG.fullmatch(value.strip())
    if match is None:
        return None
    run, stage, seq, sent, full = match.groups()
    load: dict[str, Any] = {"run": run, "stage": int(stage), "seq": int(seq), "sent_ns": int(sent)}
    if full:
        load["full"] = True
    return load


def wants_full(value: str | bytes | None) -> bool:
    """Whether a raw header value asks for a full trace (checked before the request exists)."""
    if not value:
        return False
    if isinstance(value, bytes):
        return value.endswith(b";full=1")
    return value.rstrip().endswith(";full=1")
