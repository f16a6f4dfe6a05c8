"""Writing an exported document to a path, or to stdout for "-"."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any


def write_json(document: dict[str, Any], target: str | Path | IO[str]) -> None:
    if isinstance(target, str | Path):
        if str(target) == "-":
            json.dump(document, sys.stdout, ensure_ascii=False)
            sys.stdout.write("\n")
            return
        with open(target, "w", encoding="utf-8") as out:
            json.dump(document, out, ensure_ascii=False)
            out.write("\n")
        return
    json.dump(document, target, ensure_ascii=False)
    target.write("\n")
