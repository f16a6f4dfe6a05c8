"""Replacing attributes on Django's classes and modules, reversibly.

Hooks patch classes (never the user's own classes or instances) and remember the original
so `uninstall()` restores Django exactly as it was.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_originals: list[tuple[Any, str, Any]] = []


def patch(owner: Any, attr: str, make: Callable[[Any], Any]) -> None:
    """Set `owner.attr = make(original)`, remembering the original for `restore_all`."""
    original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
    replacement = make(original)
    replacement.__djtrace_original__ = original
    _originals.append((owner, attr, original))
    setattr(owner, attr, replacement)


def restore_all() -> None:
    while _originals:
        owner, attr, original = _originals.pop()
        setattr(owner, attr, original)
