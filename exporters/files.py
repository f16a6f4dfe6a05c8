"""Writing an exported document to a path, or to stdout for "-".

Exported files are created readable by their owner only (0600), like the trace store:
traces can hold request detail (paths, query strings, SQL, captured bodies).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import IO, Any


def open_private(path: str | os.PathLike[str]) -> IO[str]:
    """`open(path, "w")`, but a file it creates is 0600 (an existing file keeps its mode)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        return os.fdopen(fd, "w", encoding="utf-8")
    except BaseException:
        os.close(fd)
        raise


def write_json(document: dict[str, Any], target: str | Path | IO[str]) -> None:
    if isinstance(target, str | Path):
        if str(target) == "-":
            json.dump(document, sys.stdout, ensure_ascii=False)
            sys.stdout.write("\n")
            return
        with open_private(target) as out:
            json.dump(document, out, ensure_ascii=False)
            out.write("\n")
        return
    json.dump(document, target, ensure_ascii=False)
    target.write("\n")
