"""The header that ties a load request to its captured trace (lab_interface.md, item 1).

X-Djtrace-Load: run=<run_id>;stage=<int>;seq=<int>;sent=<unix epoch ns>
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

HEADER = "X-Djtrace-Load"
HEADER_KEY = HEADER.lower()  # as the tracer records header names
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")
_TAG = re.compile(
    r"run=(?P<run>[A-Za-z0-9_-]{1,40});stage=(?P<stage>\d+);seq=(?P<seq>\d+);sent=(?P<sent>\d+)"
    r"(?:;full=1)?"
)


class LoadTag(TypedDict):
    run: str
    stage: int
    seq: int
    sent_ns: int


def format_tag(run: str, stage: int, seq: int, sent_ns: int) -> str:
    return f"run={run};stage={stage};seq={seq};sent={sent_ns}"


def parse_tag(value: str) -> LoadTag | None:
    """The tag's fields, or None for anything malformed (never an error)."""
    match = _TAG.fullmatch(value.strip())
    if match is None:
        return None
    return {
        "run": match["run"],
        "stage": int(match["stage"]),
        "seq": int(match["seq"]),
        "sent_ns": int(match["sent"]),
    }


def tag_of(request: dict[str, Any]) -> LoadTag | None:
    """A recorded request's load tag: the tracer's parsed `load`, else the raw header (a
    tracer that predates the `load` key records it among the headers)."""
    load = request.get("load")
    if isinstance(load, dict) and {"run", "stage", "seq", "sent_ns"} <= load.keys():
        return load  # type: ignore[return-value]
    headers = request.get("headers")
    if isinstance(headers, dict):
        raw = headers.get(HEADER_KEY)
        if isinstance(raw, str):
            return parse_tag(raw)
    return None
