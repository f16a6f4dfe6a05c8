"""The file:line in the user's code that caused a span (a query, a cache call…).

Walks up from the hook to the first frame whose code is not Django's, djtrace's, the
standard library's or an installed package's. Whether a file is "user code" is decided
once per file and cached under its `co_filename` (a string whose hash is cached, unlike a
code object's), and each library frame costs the loop one set lookup. What a walk costs is
mostly CPython building a frame object for each frame it reads (docs/benchmarks.md). The
`path:line` text is made once per call site and found again by the frame's bytecode offset,
so a query repeated from one line (an N+1) neither rescans the code's line table for
`f_lineno` nor makes a new string.
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
        return _typed(filename)
    path = os.path.realpath(filename)
    if os.sep + "asgiref" + os.sep in path:
        return _BOUNDARY
    if not path.startswith(_user_roots) and path.startswith(_roots):
        return None
    return _display_path(path)


def _typed(filename: str) -> str | None:
    """Code typed at a prompt is the user's: an IPython cell (`<ipython-input-3-…>`, shown
    as `In [3]`; the %djtrace magic's too), the plain shell's `<console>` or `<stdin>`, and
    `manage.py shell -c "…"` (exec'd as `<string>`: code made by a library runs a query
    through a function of the user's, found first). `<frozen …>` is the standard library."""
    if filename.startswith("<ipython-input-"):
        return f"In [{filename[15:].split('-')[0]}]"
    if filename in _TYPED or filename.startswith("<python-input-"):
        return filename
    return None


_TYPED = frozenset(("<console>", "<stdin>", "<string>"))


def _display_path(path: str) -> str:
    """Relative to the working directory, else from its top-level package (like a module path)."""
    cwd = os.getcwd()
    if path.startswith(cwd + os.sep):
        return os.path.relpath(path, cwd)
    base = os.path.dirname(path)
    while os.path.exists(os.path.join(base, "__init__.py")):
        base = os.path.dirname(base)
    return os.path.relpath(path, base)


def user_source(depth: int = 2) -> str | None:
    """`path:line` of the nearest user frame above the caller, or None.

    Every call walks: a cached "same place as last time" answer was tried and removed, as
    it cannot be proved without looking at each frame in between. Checking the frame a
    recent walk found and the one it called is not enough: a user callback run by a
    library (a DRF SerializerMethodField under `serializer.data`) can sit between them at
    the same depth, and was reported at the view's line. Looking at every frame costs what
    the walk costs, so the walk is the answer, kept short: one set lookup per library frame.
    """
    frame: FrameType = sys._getframe(depth)
    library = _library
    while True:
        # Every query crosses several library frames here (7 on an N+1 page), so the inner
        # loop is as short as it can be: no local for the file name and no test for the
        # end of the stack (past the outermost frame is None: AttributeError).
        try:
            while frame.f_code.co_filename in library:
                frame = frame.f_back  # type: ignore[assignment]
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
        site = sites[offset] = (code, f"{entry[0]}:{_line(frame)}")
    return site[1]


def _line(frame: FrameType) -> int:
    """The frame's line; for Jinja2's compiled template code, the template's own line."""
    template = frame.f_globals.get("__jinja_template__")
    if template is not None:
        try:
            return int(template.get_corresponding_lineno(frame.f_lineno))
        except Exception:
            pass
    return frame.f_lineno


_render_annotated: list[CodeType] = []


def template_source(depth: int = 2) -> str | None:
    """`template:line` of the Django template node whose rendering ran the caller (an
    attribute lookup in `{{ book.author.name }}`), or None when user code comes first (a
    model method the template called: `user_source` has that line) or no node is found.

    Walked only for queries inside a template span, so it may read `f_locals`.
    """
    if not _render_annotated:
        from django.template.base import Node

        _render_annotated.append(Node.render_annotated.__code__)
    target = _render_annotated[0]
    library = _library
    frame: FrameType | None = sys._getframe(depth)
    while frame is not None:
        code = frame.f_code
        if code is target:
            return _node_place(frame.f_locals.get("self"))
        filename = code.co_filename
        if filename not in library:
            entry = _files.get(filename)
            if entry is None:
                path = _classify(filename)
                if path is None:
                    library.add(filename)
                else:
                    _files[filename] = entry = (path, {})
            if entry is not None:  # user code, or a sync_to_async boundary: stop
                return None
        frame = frame.f_back
    return None


def _node_place(node: object) -> str | None:
    origin = getattr(node, "origin", None)
    token = getattr(node, "token", None)
    name = getattr(origin, "template_name", None) or getattr(origin, "name", None)
    line = getattr(token, "lineno", None)
    if not name:
        return None
    return f"{name}:{line}" if line else str(name)
