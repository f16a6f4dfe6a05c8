"""The run document: one load run as plain JSON-able data (docs/load-format.md).

Everything a later reader needs — the plan, each stage's client measurements and
histogram, the joined requests with their trace ids, the analysis — so a run can be
shown again, compared with another, drawn as a timeline or written as a report without
the server or the traces.
"""

from __future__ import annotations

import importlib.metadata
import platform
from typing import Any

FORMAT = "djtrace-load"
VERSION = 1


class RunFormatError(ValueError):
    """Not a run document this djtrace reads; the message says why, in one line."""


def versions() -> dict[str, str | None]:
    def of(name: str) -> str | None:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    return {
        "djtrace": of("djtrace"),
        "python": platform.python_version(),
        "django": of("django"),
        "aiohttp": of("aiohttp"),
        "hdrhistogram": of("hdrhistogram"),
    }


def check(doc: Any) -> dict[str, Any]:
    """`doc` if it is a run document of a version this djtrace reads."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise RunFormatError('not a djtrace load run (no "format": "djtrace-load")')
    if doc.get("version") != VERSION:
        raise RunFormatError(
            f"load run format version {doc.get('version')!r} is not supported by this djtrace "
            f"(it reads version {VERSION})"
        )
    return doc


def stage_label(stage: dict[str, Any]) -> str:
    if stage["kind"] == "closed":
        return f"{stage['concurrency']} concurrent"
    return f"{stage['rate']:g}/s" + (" poisson" if stage.get("poisson") else "")


def stage_key(stage: dict[str, Any]) -> tuple[str, float]:
    """What makes two runs' stages comparable: the same kind at the same load."""
    return (stage["kind"], stage["concurrency"] if stage["kind"] == "closed" else stage["rate"])
