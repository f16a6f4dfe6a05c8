"""Breakpoints on what a request does, not on a line: stop in the debugger when a query
matching a pattern runs, when an N+1 appears, when a view passes a time limit, or on a
cache miss, with the request's tree so far on screen.

    sql~/UPDATE .*stock/      a query whose SQL matches (re.search; /…/i ignores case)
    sql>50ms                  a query slower than that
    n+1                       the third similar query from one line (djtrace's N+1 finding)
    view>200ms                a view still running after that long
    cache.miss~/^session/     a cache miss whose key matches (cache.hit~/…/, cache~/…/ too)

`--nth N` stops at the Nth match of each breakpoint (counted over everything traced while
armed) instead of the first. The debugger is pdb, or the one PYTHONBREAKPOINT names; it
opens in the user's own frame that caused the event (the line the query came from), on the
thread that ran it, after the query or cache call returned. `djtrace_tree()` at the prompt
prints the tree so far; `continue` lets the request finish unchanged.

Arming wraps a few of Django's entry points (outside djtrace's own hooks) and a view time
limit runs a trace function while the view runs: a debugging tool, never on while idle.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import os
import re
import sys
import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import FrameType
from typing import Any

from djtrace.model import Trace
from djtrace.recorder import clock, current


class BreakpointError(ValueError):
    """A breakpoint that cannot be used: bad syntax, or no terminal to stop in."""


@dataclass(frozen=True)
class BreakOn:
    """One parsed breakpoint."""

    text: str
    event: str  # "sql", "n+1", "view", "cache"
    pattern: re.Pattern[str] | None = None
    limit_ns: int = 0  # sql / view: slower than this (0: any)
    outcome: str | None = None  # cache: "hit", "miss" or None for either

    def matches_sql(self, sql: str, took: int) -> bool:
        if self.pattern is not None:  # sql~/…/
            return self.pattern.search(sql) is not None
        return took > self.limit_ns  # sql>…


_MATCH = re.compile(r"^(?P<what>sql|cache|cache\.hit|cache\.miss)\s*~\s*/(?P<re>.*)/(?P<i>i?)$")
_SLOW = re.compile(r"^(?P<what>sql|view)\s*>\s*(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>us|ms|s)$")
_UNIT_NS = {"us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
SYNTAX = "sql~/REGEX/, sql>50ms, n+1, view>200ms, cache.miss~/REGEX/ (or cache.hit, cache)"


def parse(text: str) -> BreakOn:
    """A breakpoint from its text; BreakpointError says what is wrong with it."""
    spec = text.strip()
    if spec.lower() in ("n+1", "nplusone", "n_plus_one"):
        return BreakOn(spec, "n+1")
    if spec in ("cache.miss", "cache.hit", "cache"):
        return BreakOn(spec, "cache", outcome=spec.partition(".")[2] or None)
    match = _MATCH.match(spec)
    if match:
        try:
            pattern = re.compile(match["re"], re.IGNORECASE if match["i"] else 0)
        except re.error as exc:
            raise BreakpointError(f"break-on {text!r}: bad regular expression: {exc}") from None
        what = match["what"]
        if what == "sql":
            return BreakOn(spec, "sql", pattern)
        return BreakOn(spec, "cache", pattern, outcome=what.partition(".")[2] or None)
    match = _SLOW.match(spec)
    if match:
        limit = int(float(match["n"]) * _UNIT_NS[match["unit"]])
        return BreakOn(spec, match["what"], limit_ns=limit)
    raise BreakpointError(f"break-on {text!r} is not a breakpoint; use one of: {SYNTAX}")


def check_terminal() -> None:
    """Refuse (rather than hang on a prompt nobody sees) without an interactive terminal,
    unless PYTHONBREAKPOINT names a debugger of another kind (a remote one)."""
    hook = os.environ.get("PYTHONBREAKPOINT", "")
    if hook and hook not in ("pdb.set_trace", "0"):
        return
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise BreakpointError(
            "--break-on stops in a debugger and needs an interactive terminal (stdin and "
            "stdout are not one here); run it in a terminal (under pytest: with -s), or set "
            "PYTHONBREAKPOINT to a remote debugger"
        )


# --- where the user's code is -------------------------------------------------------------

_kinds: dict[str, str] = {}


def _kind(filename: str) -> str:
    """ "user", "library", or "boundary" (asgiref: frames above belong to another task)."""
    kind = _kinds.get(filename)
    if kind is None:
        from djtrace import source  # its notion of user code, shared with source lines

        path = source._classify(filename)
        kind = "library" if path is None else "boundary" if path == "" else "user"
        _kinds[filename] = kind
    return kind


def user_frame(frame: FrameType | None) -> FrameType | None:
    """The nearest frame of the user's own code at or above `frame`, on this thread."""
    while frame is not None:
        kind = _kind(frame.f_code.co_filename)
        if kind == "user":
            return frame
        if kind == "boundary":
            return None
        frame = frame.f_back
    return None


def snapshot(trace: Trace) -> Trace:
    """A copy of a trace still being recorded, its open spans timed up to now."""
    now = clock() - trace._t0
    copy = Trace.from_dict(trace.to_dict())
    for span in copy.spans:
        if span.duration < 0:
            span.duration = max(0, now - span.start)
    copy.duration = trace.duration if trace.duration >= 0 else now
    copy.closed = True  # not "never closed": still running
    copy.findings = None
    return copy


def show_tree(trace: Trace) -> None:
    """Print a trace as djtrace's tree (rich is the cli's; loaded only when stopping)."""
    from djtrace.cli.render import print_traces

    print_traces([trace], hide_under_ms=0)  # every span: the one stopped on is often fast


# --- stopping ---------------------------------------------------------------------------------


def _debugger_hook() -> Callable[..., Any] | None:
    """The PYTHONBREAKPOINT callable, if it names something other than pdb."""
    name = os.environ.get("PYTHONBREAKPOINT", "")
    if not name or name == "pdb.set_trace" or name == "0":
        return None
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module or "builtins"), attr)


def _pdb(frame: FrameType) -> None:
    """pdb's prompt in `frame`. Tracing starts only if the user steps (`next`, `step`…),
    as after a `breakpoint()` on that line; `continue` leaves the request untraced."""
    import pdb

    # nosigint: after `continue`, Ctrl-C stops the program (a server) as it would have,
    # rather than breaking into pdb again.
    debugger = pdb.Pdb(nosigint=True)
    debugger.reset()
    outer = sys._getframe(1)
    while outer.f_back is not None:
        outer = outer.f_back
    debugger.botframe = outer
    debugger.interaction(frame, None)
    if debugger.quitting or debugger.stoplineno == -1:  # quit, or continue
        return
    here: FrameType | None = sys._getframe(1)
    while here is not None:
        here.f_trace = debugger.trace_dispatch
        here = here.f_back
    sys.settrace(debugger.trace_dispatch)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


class Breakpoints:
    """Breakpoints armed while inside `with Breakpoints([...]):` (one set at a time)."""

    def __init__(
        self,
        specs: Iterable[str | BreakOn],
        nth: int = 1,
        show: Callable[[Trace], None] = show_tree,
        out: Any = None,
        claim: Callable[[], bool] | None = None,
    ) -> None:
        self.specs = [s if isinstance(s, BreakOn) else parse(s) for s in specs]
        if nth < 1:
            raise BreakpointError(f"--nth counts matches from 1, not {nth}")
        self.nth = nth
        self.show = show
        self.out = out
        self.claim = claim  # may this process stop? (one of a server's workers: capture)
        self.stops = 0
        self._stopping = threading.Lock()  # one prompt at a time, whichever thread stops
        self._counts: dict[BreakOn, int] = {}
        self._lock = threading.Lock()
        self._similar: weakref.WeakKeyDictionary[Trace, dict[tuple[str, str], list[Any]]] = (
            weakref.WeakKeyDictionary()
        )
        self._patches: list[tuple[Any, str, Any, Any]] = []

    # --- arming ---------------------------------------------------------------------------

    def __enter__(self) -> Breakpoints:
        self.arm()
        return self

    def __exit__(self, *exc: object) -> None:
        self.disarm()

    def arm(self) -> None:
        global _armed
        check_terminal()
        if _armed is not None and _armed is not self:
            raise BreakpointError("another set of breakpoints is already armed")
        from djtrace.installer import install

        install()  # djtrace's hooks first: these wrap them, so a stop sees the span ended
        events = {s.event for s in self.specs}
        if events & {"sql", "n+1"}:
            from django.db.backends.utils import CursorWrapper

            self._patch(CursorWrapper, "execute", _watch_execute)
            self._patch(CursorWrapper, "executemany", _watch_executemany)
        if "cache" in events:
            from djtrace.hooks import cache as cache_hook

            if not callable(getattr(cache_hook, "_after", None)):
                raise BreakpointError("cache breakpoints need djtrace's cache hook (_after)")
            self._patch(cache_hook, "_after", _watch_cache)
        if "view" in events:
            from django.core.handlers.base import BaseHandler

            self._patch(BaseHandler, "make_view_atomic", _watch_views)
        _armed = self

    def _patch(self, owner: Any, attr: str, make: Callable[[Any], Any]) -> None:
        previous = getattr(owner, attr) if not isinstance(owner, type) else owner.__dict__[attr]
        replacement = make(previous)
        # djtrace's own mark: patching.reassert leaves a wrapper that calls through alone.
        replacement.__djtrace_original__ = previous
        setattr(owner, attr, replacement)
        self._patches.append((owner, attr, previous, replacement))

    def disarm(self) -> None:
        global _armed
        while self._patches:
            owner, attr, previous, replacement = self._patches.pop()
            present = owner.__dict__.get(attr) if isinstance(owner, type) else None
            if present is replacement or (present is None and not isinstance(owner, type)):
                setattr(owner, attr, previous)
        if _armed is self:
            _armed = None

    # --- events -----------------------------------------------------------------------------

    def _event(self, spec: BreakOn, what: str, frame: FrameType | None, caller: FrameType) -> None:
        with self._lock:
            count = self._counts[spec] = self._counts.get(spec, 0) + 1
        if count != self.nth or (self.claim is not None and not self.claim()):
            return
        with self._stopping:
            self.stop(spec, what, frame or caller, count)

    def stop(self, spec: BreakOn, what: str, frame: FrameType, count: int) -> None:
        """Print what happened and the tree so far; open the debugger in `frame`."""
        state = current.get()
        trace = state.trace if state is not None else None
        out = self.out or sys.stdout
        self.stops += 1
        where = f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        print(
            f"\ndjtrace: break on {spec.text} ({_ordinal(count)} match): {what}\n"
            f"  at {where}, thread {threading.current_thread().name}",
            file=out,
            flush=True,
        )
        if trace is not None:
            try:
                self.show(snapshot(trace))
            except Exception as exc:  # the tree is a courtesy; the stop still happens
                print(f"  (djtrace could not draw the tree: {exc})", file=out)

        def djtrace_tree() -> None:
            """The request's tree as it is now."""
            if trace is not None:
                self.show(snapshot(trace))

        print(
            "  djtrace_tree() draws the tree again; `continue` lets the request finish.",
            file=out,
            flush=True,
        )
        had = hasattr(builtins, "djtrace_tree")
        builtins.djtrace_tree = djtrace_tree  # type: ignore[attr-defined]
        try:
            _open_debugger(frame)
        finally:
            if not had:
                del builtins.djtrace_tree  # type: ignore[attr-defined]

    def after_query(self, caller: FrameType, sql: Any, params: Any, took: int) -> None:
        text = sql if isinstance(sql, str) else str(sql)
        frame: FrameType | None = None
        found = False
        for spec in self.specs:
            if spec.event == "sql" and spec.matches_sql(text, took):
                frame = frame if found else user_frame(caller)
                found = True
                took_ms = f" ({took / 1e6:.2f} ms)" if spec.pattern is None else ""
                self._event(spec, f"query{took_ms} {_short(text)}", frame, caller)
            elif spec.event == "n+1":
                frame = frame if found else user_frame(caller)
                found = True
                self._n_plus_one(spec, text, params, frame, caller)

    def _n_plus_one(
        self, spec: BreakOn, sql: str, params: Any, frame: FrameType | None, caller: FrameType
    ) -> None:
        from djtrace.analysis import N_PLUS_ONE_THRESHOLD, fingerprint

        state = current.get()
        if state is None or frame is None:
            return
        key = (fingerprint(sql), f"{frame.f_code.co_filename}:{frame.f_lineno}")
        with self._lock:
            group = self._similar.setdefault(state.trace, {}).setdefault(key, [0, set(), False])
            group[0] += 1
            group[1].add(repr(params))
            # djtrace's N+1 finding: this many similar queries from one line, parameters differing
            fire = not group[2] and group[0] >= N_PLUS_ONE_THRESHOLD and len(group[1]) > 1
            group[2] = group[2] or fire
        if fire:
            what = f"N+1: {group[0]} similar queries from one line: {_short(sql)}"
            self._event(spec, what, frame, caller)

    def after_cache(self, caller: FrameType, name: str, attrs: dict[str, Any]) -> None:
        hit = attrs.get("hit")
        key = str(attrs.get("key", ""))
        for spec in self.specs:
            if spec.event != "cache":
                continue
            if spec.outcome == "miss" and hit is not False:
                continue
            if spec.outcome == "hit" and hit is not True:
                continue
            if spec.pattern is not None and not spec.pattern.search(key):
                continue
            outcome = "" if hit is None else " hit" if hit else " miss"
            what = f"cache {name} {key!r}{outcome} ({attrs.get('alias', 'default')})"
            self._event(spec, what, user_frame(caller), caller)

    def view_limits(self) -> list[BreakOn]:
        return [s for s in self.specs if s.event == "view"]


def _short(sql: str) -> str:
    from djtrace.analysis import short_sql

    text = short_sql(sql)
    return text if len(text) <= 120 else text[:119] + "…"


def _open_debugger(frame: FrameType) -> None:
    hook = _debugger_hook()
    if os.environ.get("PYTHONBREAKPOINT") == "0":
        print("  PYTHONBREAKPOINT=0: debugger off, going on", file=sys.stdout, flush=True)
        return
    if hook is None:
        _pdb(frame)
        return
    try:
        takes_frame = "frame" in inspect.signature(hook).parameters
    except (TypeError, ValueError):
        takes_frame = False
    if takes_frame:
        hook(frame=frame)
    else:
        hook()  # it opens in this frame: `up` reaches the user's


_armed: Breakpoints | None = None


# --- the wrappers (each calls through first, then looks) ----------------------------------


def _watch_execute(previous: Any) -> Any:
    def execute(self: Any, sql: Any, params: Any = None) -> Any:
        armed = _armed
        if armed is None or current.get() is None:
            return previous(self, sql, params)
        start = clock()
        result = previous(self, sql, params)
        took = clock() - start
        _safely(armed.after_query, sys._getframe(1), sql, params, took)
        return result

    return execute


def _watch_executemany(previous: Any) -> Any:
    def executemany(self: Any, sql: Any, param_list: Any) -> Any:
        armed = _armed
        if armed is None or current.get() is None:
            return previous(self, sql, param_list)
        start = clock()
        result = previous(self, sql, param_list)
        took = clock() - start
        _safely(armed.after_query, sys._getframe(1), sql, None, took)
        return result

    return executemany


def _watch_cache(previous: Any) -> Any:
    def after(kind: str, attrs: dict[str, Any], result: Any, args: tuple, kwargs: dict) -> None:
        previous(kind, attrs, result, args, kwargs)
        armed = _armed
        if armed is not None:
            operation = sys._getframe(1)  # djtrace's wrapper of the cache call
            name = str(operation.f_locals.get("name", "cache"))
            _safely(armed.after_cache, operation.f_back, name, attrs)

    return after


def _safely(action: Callable[..., None], *args: Any) -> None:
    """A breakpoint's own failure never reaches the request (the debugger's exits do)."""
    try:
        action(*args)
    except Exception as exc:
        print(f"djtrace: breakpoint failed ({type(exc).__name__}: {exc})", file=sys.stderr)


def _watch_views(previous: Any) -> Any:
    def make_view_atomic(self: Any, view: Any) -> Any:
        wrapped = previous(self, view)
        armed = _armed
        if armed is None or current.get() is None or not armed.view_limits():
            return wrapped
        return _timed_view(armed, wrapped, getattr(view, "__qualname__", repr(view)))

    return make_view_atomic


def _timed_view(armed: Breakpoints, wrapped: Any, name: str) -> Any:
    from asgiref.sync import iscoroutinefunction

    if iscoroutinefunction(wrapped):

        async def async_view(request: Any, *args: Any, **kwargs: Any) -> Any:
            with _Deadlines(armed, name):
                return await wrapped(request, *args, **kwargs)

        return async_view

    def sync_view(request: Any, *args: Any, **kwargs: Any) -> Any:
        with _Deadlines(armed, name):
            return wrapped(request, *args, **kwargs)

    return sync_view


class _Deadlines:
    """While a view runs: a trace function that notices, at the next call or line of the
    user's code inside the view, that the view has run past a `view>…` limit."""

    def __init__(self, armed: Breakpoints, view: str) -> None:
        self.armed = armed
        self.view = view
        self.start = clock()
        self.pending = sorted(armed.view_limits(), key=lambda s: s.limit_ns)
        self.previous: Any = None
        self.home: FrameType | None = None

    def __enter__(self) -> None:
        self.home = sys._getframe(1)  # the view's wrapper: user frames above it are not the view
        self.previous = sys.gettrace()
        sys.settrace(self.on_call)

    def __exit__(self, *exc: object) -> None:
        if sys.gettrace() == self.on_call:
            sys.settrace(self.previous)

    def _due(self) -> bool:
        return bool(self.pending) and clock() - self.start > self.pending[0].limit_ns

    def _in_view(self, frame: FrameType | None) -> FrameType | None:
        """The nearest user frame at or above `frame` that the view called."""
        while frame is not None and frame is not self.home:
            if _kind(frame.f_code.co_filename) == "user":
                return frame
            frame = frame.f_back
        return None

    def on_call(self, frame: FrameType, event: str, arg: Any) -> Any:
        if not self.pending:
            return None
        if self._due():
            target = self._in_view(frame)
            if target is not None:
                self._fire(target)
                return frame.f_trace if target is frame else None
        return self.on_line if _kind(frame.f_code.co_filename) == "user" else None

    def on_line(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line" and self._due() and self._in_view(frame) is frame:
            self._fire(frame)
            # Whatever the debugger left on this frame (pdb's tracer after `next`, or none).
            return frame.f_trace if frame.f_trace is not self.on_line else None
        return self.on_line if self.pending else None

    def _fire(self, frame: FrameType) -> None:
        spec = self.pending.pop(0)
        if not self.pending:
            sys.settrace(self.previous)
        elapsed = (clock() - self.start) / 1e6
        what = f"view {self.view} still running after {elapsed:.1f} ms"
        _safely(self.armed._event, spec, what, frame, frame)


# --- in a captured server's processes (djtrace capture --break-on) ---------------------------

ENV_BREAK_ON = "DJTRACE_BREAK_ON"  # the breakpoints, one per line
ENV_BREAK_NTH = "DJTRACE_BREAK_NTH"
ENV_BREAK_WORKER = "DJTRACE_BREAK_WORKER"  # the pid allowed to stop, else the first to
ENV_BREAK_CLAIM = "DJTRACE_BREAK_CLAIM"  # a file: the pid of the process that stopped first


def _claim_terminal() -> bool:
    """Whether this process may stop: the named worker, else the first process to stop (the
    others go on untouched, so two processes never share the terminal's prompt)."""
    worker = os.environ.get(ENV_BREAK_WORKER, "")
    if worker:
        return worker == str(os.getpid())
    path = os.environ.get(ENV_BREAK_CLAIM, "")
    if not path:
        return True
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            with open(path, encoding="ascii") as claimed:
                return claimed.read().strip() == str(os.getpid())
        except OSError:
            return False
    with os.fdopen(fd, "w", encoding="ascii") as mine:
        mine.write(str(os.getpid()))
    return True


def arm_from_env() -> Breakpoints | None:
    """Arm the breakpoints `djtrace capture --break-on` passed to this server process."""
    specs = [line for line in os.environ.get(ENV_BREAK_ON, "").splitlines() if line.strip()]
    if not specs:
        return None
    armed = Breakpoints(specs, int(os.environ.get(ENV_BREAK_NTH) or 1), claim=_claim_terminal)
    armed.arm()
    return armed
