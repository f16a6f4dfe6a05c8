"""Replacing attributes on Django's classes and modules, reversibly, and keeping them replaced.

Hooks patch classes (never the user's own classes or instances) and remember the original
so `uninstall()` restores Django exactly as it was.

Another library may assign the same attribute after djtrace did: django-debug-toolbar's
templates panel sets `Template._render` when its URLs are imported, and Django's test
environment does the same; neither calls what was there before, so djtrace's hook would
silently stop recording. `reassert` notices (one dict lookup), wraps whatever is there now
with the same hook, and returns a note for the trace. A replacement that calls through to
djtrace's hook is left alone (hooking it would record everything twice): it copied the
hook's attributes (`functools.wraps`), or keeps the hook in its closure or module globals.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

_MARK = "__djtrace_original__"


class _Hook:
    """One patched attribute: how to wrap it, and every wrapper djtrace has put there."""

    __slots__ = ("owner", "attr", "make", "original", "mine", "chained")

    def __init__(self, owner: Any, attr: str, make: Callable[[Any], Any], original: Any) -> None:
        self.owner = owner
        self.attr = attr
        self.make = make
        self.original = original
        self.mine: list[Any] = []
        self.chained: list[Any] = []  # other libraries' replacements that call djtrace's


_hooks: list[_Hook] = []
_by_place: dict[tuple[int, str], _Hook] = {}
_displaced: list[str] = []


def _present(owner: Any, attr: str) -> Any:
    return owner.__dict__.get(attr) if isinstance(owner, type) else getattr(owner, attr, None)


def _wrap(hook: _Hook, target: Any) -> Any:
    replacement = hook.make(target)
    setattr(replacement, _MARK, target)
    hook.mine.append(replacement)
    setattr(hook.owner, hook.attr, replacement)
    return replacement


def patch(owner: Any, attr: str, make: Callable[[Any], Any]) -> None:
    """Set `owner.attr = make(original)`, remembering the original for `restore_all`."""
    original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
    hook = _Hook(owner, attr, make, original)
    _hooks.append(hook)
    _by_place[(id(owner), attr)] = hook
    _wrap(hook, original)


def _name(thing: Any) -> str:
    module = getattr(thing, "__module__", None) or ""
    qualname = getattr(thing, "__qualname__", None) or type(thing).__qualname__
    return f"{module}.{qualname}" if module else qualname


def reassert(owner: Any, attr: str) -> str | None:
    """Put djtrace's hook on `owner.attr` back if something else replaced it since.

    Returns None when the hook is in place (the usual case: one dict lookup and a compare),
    else a one-line note of what displaced it, after wrapping that with the hook again.
    """
    hook = _by_place.get((id(owner), attr))
    if hook is None:
        return None
    present = _present(owner, attr)
    if present is hook.mine[-1] or present in hook.mine or hasattr(present, _MARK):
        return None
    if present in hook.chained:
        return None
    if _calls_through(present, hook.mine):
        hook.chained.append(present)  # it runs djtrace's hook: wrapping it would count twice
        return None
    _wrap(hook, present)
    note = (
        f"{_name(owner)}.{attr} was replaced by {_name(present)} after djtrace hooked it; "
        "djtrace hooked the replacement"
    )
    _displaced.append(note)
    return None if _in_test_environment(present) else note


def _in_test_environment(replacement: Any) -> bool:
    """Django's test environment (pytest-django, manage.py test) swaps Template._render for
    one that sends template_rendered: every test run has it, so each trace gets no note.
    (django-debug-toolbar installs the same function outside tests: that one is noted.)"""
    utils = sys.modules.get("django.test.utils")
    return (
        utils is not None
        and replacement is getattr(utils, "instrumented_test_render", None)
        and hasattr(getattr(utils, "_TestState", None), "saved_data")
    )


def _calls_through(replacement: Any, mine: list[Any]) -> bool:
    """Whether `replacement` holds one of djtrace's wrappers to call: in its closure, or as a
    global it names (`orig = Template._render` kept in a module or a closure). Looked at
    once, when the replacement is found."""
    function = getattr(replacement, "__func__", replacement)  # a classmethod's function
    cells = getattr(function, "__closure__", None) or ()
    for cell in cells:
        try:
            if any(cell.cell_contents is m for m in mine):
                return True
        except ValueError:  # an empty cell
            continue
    code = getattr(function, "__code__", None)
    names = getattr(function, "__globals__", None) or {}
    if code is not None:
        for name in code.co_names:
            if any(names.get(name) is m for m in mine):
                return True
    return False


def displacements() -> list[str]:
    """Every hook found displaced (and put back) in this process, oldest first."""
    return list(_displaced)


def restore_all() -> None:
    """Undo every hook. Where a hook wrapped another library's replacement, that
    replacement is what stays; where a replacement of another library is still in place,
    it is left alone."""
    while _hooks:
        hook = _hooks.pop()
        _by_place.pop((id(hook.owner), hook.attr), None)
        present = _present(hook.owner, hook.attr)
        if present in hook.mine:
            setattr(hook.owner, hook.attr, getattr(present, _MARK))
    _displaced.clear()
