"""JSON Lines: one trace per line, in the documented trace format (`Trace.to_dict`).

Reading never gives up on a whole file for one bad line: each line is a trace or the
reason it could not be read (not JSON, truncated, not a trace, a schema this djtrace does
not know). `TraceReader` also reads a file that is one JSON document: a trace (what
`djtrace request --format json` writes, pretty-printed) or an array of traces.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

from djtrace.exporters.files import open_private
from djtrace.model import SCHEMA_VERSION, SchemaError, Trace


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
    with open_private(destination) as out:
        return write(traces, out)


@dataclass(frozen=True)
class Bad:
    """Why a line (or array item) is not a trace, and whether it was a JSON object at all."""

    reason: str
    json_object: bool

    def __str__(self) -> str:
        return self.reason


_JSON_KINDS = {list: "an array", str: "a string", bool: "true/false", type(None): "null"}


def decode(data: Any) -> Trace:
    """A trace from decoded JSON; SchemaError says why not in words a user can act on."""
    if not isinstance(data, dict):
        kind = _JSON_KINDS.get(type(data), "a number")
        raise SchemaError(f"not a djtrace trace ({kind}, not a JSON object)")
    schema = data.get("schema")
    if "schema" not in data:
        raise SchemaError("not a djtrace trace (no schema field)")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise SchemaError(f"not a djtrace trace (its schema field is {schema!r})")
    if schema < SCHEMA_VERSION:
        raise SchemaError(f"trace schema {schema} is not one any djtrace wrote")
    return Trace.from_dict(data)  # a newer schema: "upgrade djtrace to read it"


def _item(data: Any, text: str | None = None) -> Trace | Bad:
    """`text`: the JSON `data` came from, when known (skips a check most lines never need)."""
    if (text is None or "\\ud" in text.lower()) and _lone_surrogate(data):
        return Bad("holds a lone surrogate (a \\ud800-\\udfff escape): not valid Unicode", True)
    try:
        return decode(data)
    except SchemaError as exc:
        return Bad(str(exc), isinstance(data, dict))


def _lone_surrogate(data: Any) -> bool:
    """Whether a string in `data` holds half of a UTF-16 pair, which JSON can spell but
    no terminal, file or SQLite can take."""
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (ValueError, RecursionError):
        return False  # not a trace anyway: decode says why
    return False


def _loads(text: str) -> Any:
    """json.loads, with nesting too deep for it reported as not valid JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def read(lines: Iterable[str]) -> Iterator[tuple[int, Trace | Bad]]:
    """(line number, trace) for each good line, (line number, Bad) for each bad one."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            data = _loads(line)
        except ValueError as exc:
            ending = "" if line.endswith("\n") else " (truncated?)"
            yield number, Bad(f"not valid JSON{ending}: {exc}", False)
            continue
        yield number, _item(data, line)


class TraceReader:
    """The traces in a file: JSON Lines, or one JSON document (a trace, or an array of them).

    Iterating yields (number, trace or Bad); `unit` says what the numbers count: "line",
    "item" (of an array) or "document" (the file is one document: the number is always 1).
    """

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle
        self.unit = "line"

    def __iter__(self) -> Iterator[tuple[int, Trace | Bad]]:
        head: list[str] = []
        for line in self.handle:
            head.append(line)
            if line.strip():
                break
        first = head[-1].strip() if head else ""
        if first[:1] in ("{", "[") and not _is_json_object(first):
            text = "".join(head) + self.handle.read()  # one document: read it whole
            try:
                document = _loads(text)
            except ValueError:
                yield from read(text.splitlines(keepends=True))
                return
            if isinstance(document, list):
                self.unit = "item"
                yield from ((n, _item(data)) for n, data in enumerate(document, 1))
            else:
                self.unit = "document"
                yield 1, _item(document, text)
            return
        yield from read(itertools.chain(head, self.handle))


def _is_json_object(line: str) -> bool:
    try:
        return isinstance(_loads(line), dict)
    except ValueError:
        return False
