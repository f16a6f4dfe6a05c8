"""Where the sample site keeps its data (kept apart from settings so seed.py can share it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def data_dir() -> Path:
    """Per-user data directory; never inside the package, which may live in site-packages."""
    override = os.environ.get("DJTRACE_SAMPLE_DATA")
    if override:
        return Path(override).expanduser()
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        base = Path(local) if local else Path.home() / "AppData" / "Local"
    else:
        xdg = os.environ.get("XDG_DATA_HOME")
        # The XDG spec says relative values must be ignored.
        base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "djtrace" / "sample_site"
