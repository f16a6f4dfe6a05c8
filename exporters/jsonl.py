"""JSON Lines: one trace per line, in the documented trace format (`Trace.to_dict`).

Reading never gives up on a whole file for one bad line: each line is a trace or the
reason it could not be read (not JSON, truncated, a schema this djtrace does not know).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import IO

from tracer.model import SchemaError, Trace


def write(traces: Iterable[Trace], out: IO[str]) -> int:
    count = 0
    for trace in traces:
        out.write(json.dumps(trace.to_dict(), separators=(",", ":"), ensure_ascii=False))
        out.write("\n")
        count += 1
    return count


def export(traces: Iterable[Trace], destination: str | None) -> int:
    """The `jsonl` export format: to the file `destination`, or stdout when None or '-'."""
    if destination in (None, "-"):
        count = write(traces, sys.stdout)
        sys.stdout.flush()
        return count
    with open(destination, "w", encoding="utf-8") as out:
        return write(traces, out)


def read(lines: Iterable[str]) -> Iterator[tuple[int, Trace | str]]:
    """(line number, trace) for each good line, (line number, reason) for each bad one."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            ending = "" if line.endswith("\n") else " (truncated?)"
            yield number, f"not valid JSON{ending}: {exc}"
            continue
        try:
            yield number, Trace.from_dict(data)
        except SchemaError as exc:
            yield number, str(exc)
