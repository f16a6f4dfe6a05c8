"""The file:line in the user's code that caused a span (a query, a cache call…).

Walks up from the hook to the first frame whose code is not Django's, djtrace's, the
standard library's or an installed package's. Whether a file is "user code" is decided
once per file and cached under its `co_filename` (a string whose hash is cached, unlike a
code object's), and each library frame costs the loop one set lookup. What a walk costs is
mostly CPython building a frame object for each frame it reads (docs/benchmarks.md). The
`path:line` text is made once per call site and found again by the frame's bytecode offset,
so a query repeated from one line (an N+1) neither rescans the code's line table for
`f_lineno` nor makes a new string; and a query repeated from the same place through the
same calls is recognised without a walk (`user_source`'s recent hints).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
from types import CodeType, FrameType

# co_filenames known not to be user code.
_library: set[str] = set()
# Every other co_filename -> (display path, or _BOUNDARY; {f_lasti: (code, "path:line")}).
# The code object tells apart two functions of one file that call from the same offset.
_files: dict[str, tuple[str, dict[int, tuple[CodeType, str]]]] = {}

# A sync_to_async hop: frames above it belong to whatever the worker thread was parked in,
# not to the coroutine that awaited the call, so the walk stops there.
_BOUNDARY = ""


def _library_roots() -> tuple[str, ...]:
    roots = set()
    # "scripts": console-script launchers such as .venv/bin/djtrace or gunicorn.
    for key in ("stdlib", "platstdlib", "purelib", "platlib", "scripts"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(os.path.realpath(path))
    # djtrace's subpackages are folders of their own in a source checkout.
    djtrace_parts = ("djtrace", "djtrace.cli", "djtrace.exporters", "djtrace.lab")
    for name in ("django", "asgiref", *djtrace_parts, "jinja2", "psycopg", "redis"):
        module = sys.modules.get(name)
        if module is not None and getattr(module, "__file__", None):
            roots.add(os.path.dirname(os.path.realpath(module.__file__)))
    return tuple(sorted(roots))


def _sample_site_root() -> str | None:
    # The bundled demo project is user code even when it is installed in site-packages.
    spec = importlib.util.find_spec("djtrace.sample_site")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.realpath(next(iter(spec.submodule_search_locations)))


_roots: tuple[str, ...] | None = None
_user_roots: tuple[str, ...] = ()


def _classify(filename: str) -> str | None:
    global _roots, _user_roots
    if _roots is None:
        sample = _sample_site_root()
        # _user_roots first: another thread that sees _roots set must see both.
        _user_roots = (sample,) if sample else ()
        _roots = _library_roots()
    if filename.startswith("<"):
        return None
    path = os.path.realpath(filename)
    if os.sep + "asgiref" + os.sep in path:
        return _BOUNDARY
    if not path.startswith(_user_roots) and path.startswith(_roots):
        return None
    return _display_path(path)


def _display_path(path: str) -> str:
    """Relative to the working directory, else from its top-level package (like a module path)."""
    cwd = os.getcwd()
    if path.startswith(cwd + os.sep):
        return os.path.relpath(path, cwd)
    base = os.path.dirname(path)
    while os.path.exists(os.path.join(base, "__init__.py")):
        base = os.path.dirname(base)
    return os.path.relpath(path, base)


# What recent walks found, newest first: the name of the span they ran in, the user frame's
# depth (from user_source), its code and bytecode offset, the code of the frame it called,
# and its `path:line`.
_recent: list[tuple[str | None, int, CodeType, int, CodeType, str]] = []
_RECENT = 4


def user_source(scope: str | None, depth: int = 2) -> str | None:
    """`path:line` of the nearest user frame above the caller, or None.

    A call that repeats a recent walk is known without walking: it runs in a span of the
    same name (`scope`: the view, a receiver, a template…), the frame that walk found is at
    the same depth, running the same instruction of the same code, and the frame it called
    runs the same code too. A query in a loop (an N+1, in a view or in an included template)
    then costs two frame lookups instead of a frame object for each library frame between it
    and the loop (7 on an N+1 page). A repeat that differs in any of those is walked again.
    The span matters because user code called back by a library runs in a span of its own:
    two receivers of one signal, a third party's and the user's, can reach the same query
    from the same `send()` at the same depth, and only their span names tell them apart.
    """
    global _recent  # replaced, never changed in place: another thread may be reading it
    recent = _recent
    for hint in recent:
        if hint[0] != scope:
            continue
        at = hint[1]
        try:
            frame = sys._getframe(at)
        except ValueError:  # the stack is not that deep now
            continue
        if (
            frame.f_code is hint[2]
            and frame.f_lasti == hint[3]
            and sys._getframe(at - 1).f_code is hint[4]
        ):
            if hint is not recent[0]:  # most recent first: a loop's next query checks one
                _recent = [hint, *(h for h in recent if h is not hint)]
            return hint[5]
    frame: FrameType = sys._getframe(depth)
    at = depth
    library = _library
    while True:
        # Every query crosses several library frames here (7 on an N+1 page), so the inner
        # loop is as short as it can be: no local for the file name and no test for the
        # end of the stack (past the outermost frame is None: AttributeError).
        try:
            while frame.f_code.co_filename in library:
                frame = frame.f_back  # type: ignore[assignment]
                at += 1
        except AttributeError:
            return None
        code = frame.f_code
        entry = _files.get(code.co_filename)
        if entry is not None:
            break
        path = _classify(code.co_filename)
        if path is None:
            library.add(code.co_filename)
        else:
            _files[code.co_filename] = (path, {})
        # and look at the same frame again, now that its file is known
    if not entry[0]:  # a sync_to_async boundary
        return None
    sites = entry[1]
    offset = frame.f_lasti
    site = sites.get(offset)
    if site is None or site[0] is not code:
        site = sites[offset] = (code, f"{entry[0]}:{frame.f_lineno}")
    callee = sys._getframe(at - 1).f_code
    _recent = [(scope, at, code, offset, callee, site[1]), *_recent[: _RECENT - 1]]
    return site[1]
