"""Tracing from a test, a shell or a debugger:

    from djtrace import trace

    with trace() as t:
        client.get("/books/")
    t.show()
    assert len(t.queries) < 5

Requests handled inside the block (in this thread or task, and the sync_to_async hops they
make) are traced; ORM work done outside any request is kept too, as `t.bare`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from djtrace.installer import install
from djtrace.model import Span, Trace, current_thread_name
from djtrace.recorder import State, clock, current, finish_trace, thread_id

if TYPE_CHECKING:
    from djtrace.breakpoints import Breakpoints


class TraceSession:
    """What `trace()` collected: finished request traces and bare work."""

    def __init__(self, break_on: str | Sequence[str] | None = None, nth: int = 1) -> None:
        self._breakpoints: Breakpoints | None = None
        if break_on:
            from djtrace.breakpoints import Breakpoints

            specs = [break_on] if isinstance(break_on, str) else list(break_on)
            self._breakpoints = Breakpoints(specs, nth)  # a bad one fails here, before any work
        self.bare = Trace(
            {},
            {
                "pid": os.getpid(),
                "thread": current_thread_name(),
                "server": "inline",
                "mode": "inline",
            },
        )
        self._traces: list[Trace] = []
        self._token: Any = None

    # Collector protocol, called by the request hooks.
    def started(self, trace: Trace) -> None:
        self._traces.append(trace)

    def finished(self, trace: Trace) -> None:
        pass

    def __enter__(self) -> TraceSession:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        if not settings.configured:
            raise ImproperlyConfigured(
                "djtrace's trace() needs Django configured first: use it in a test, in "
                "`manage.py shell`, or after django.setup()"
            )
        install()
        if self._breakpoints is not None:
            self._breakpoints.arm()
        self._token = current.set(State(self.bare, None, self, thread_id()))
        return self

    def __exit__(self, *exc: object) -> None:
        if self._breakpoints is not None:
            self._breakpoints.disarm()
        current.reset(self._token)
        self.bare.duration = clock() - self.bare._t0
        self.bare.closed = True
        # A response nobody closed (a RequestFactory call, an unread stream) ends here.
        for trace in self._traces:
            if not trace.closed and trace.records:
                finish_trace(trace, trace.records[0], None)  # the first record is the root
                trace.closed = False

    @property
    def requests(self) -> list[Trace]:
        """Every request traced inside the block, in the order they started."""
        return list(self._traces)

    @property
    def traces(self) -> list[Trace]:
        """The request traces, then the bare work if there was any."""
        return self.requests + ([self.bare] if self.bare.spans else [])

    @property
    def spans(self) -> list[Span]:
        return [span for t in self.traces for span in t.spans]

    @property
    def queries(self) -> list[Span]:
        return [span for span in self.spans if span.phase == "db.query"]

    def show(self, **options: Any) -> None:
        """Print each trace as djtrace's tree (needs the `cli` package, i.e. rich)."""
        from djtrace.cli.render import print_traces  # presentation lives in cli/, loaded on demand

        print_traces(self.traces, **options)


def trace(break_on: str | Sequence[str] | None = None, nth: int = 1) -> TraceSession:
    """A context manager that traces the requests and ORM work done inside it.

    `break_on` (djtrace.breakpoints: "sql~/REGEX/", "n+1", "view>200ms"…) stops in the
    debugger, in your code, at the `nth` match of each, with the tree so far.
    """
    return TraceSession(break_on, nth)
