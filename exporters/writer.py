"""A sink that writes finished traces to the trace store, off the request path.

The request thread only puts the trace on a bounded queue (`put_nowait`); when the queue
is full the trace is dropped and counted, never waited for. One writer thread per process
serializes and inserts traces in batches (waiting up to 50 ms to fill one), each batch one
short transaction.

Servers fork (gunicorn) and spawn (uvicorn --workers): a forked child starts with an
empty queue and no thread, and starts its own writer on its first trace. A fork waits
for the writer thread to leave SQLite (one short batch at most). At exit (atexit,
and multiprocessing's finalizers for forked children that skip atexit) the queue is
drained, so the traces of a server stopped by SIGTERM or SIGINT are all written. A process
killed by a signal's default action runs no atexit: `djtrace capture` drains through
`close_all()` first (see djtrace.cli.autotrace).

A server may still answer requests while the queue drains (runserver's threads serve
keep-alive connections until the process ends): a trace that finishes after close began
is written by its own thread, and close waits for such writes under way, so a request
answered during the drain is stored too.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from djtrace.exporters.store import StoreError, TraceStore, row_for
from djtrace.model import Trace

logger = logging.getLogger("djtrace")

DEFAULT_QUEUE_SIZE = 2000
BATCH = 200
LINGER_S = 0.05  # how long the writer waits to fill a batch
CLOSE_TIMEOUT_S = 30.0
SETTLE_S = 0.05  # at close: a last look for traces of requests closing right now

_STOP = object()

# Connections a forked child inherited from its parent's writer: kept referenced so the
# child never closes them (SQLite: a connection must not be used, closed included, across
# a fork). The child opens its own.
_inherited: list[TraceStore] = []

# Held while a writer thread is inside SQLite. A fork waits for it (one short batch), so
# no SQLite mutex is held at fork time: the child would otherwise deadlock on its first
# SQLite call, its traces never written.
_in_sqlite = threading.Lock()


def _fresh_lock_in_child() -> None:
    global _in_sqlite
    _in_sqlite = threading.Lock()


# Every writer of this process, for close_all() (a signal handler cannot know the sinks).
_writers: weakref.WeakSet[StoreWriter] = weakref.WeakSet()

os.register_at_fork(
    before=lambda: _in_sqlite.acquire(),
    after_in_parent=lambda: _in_sqlite.release(),
    after_in_child=_fresh_lock_in_child,
)


class StoreWriter:
    """`add_sink(StoreWriter(path))`: every finished trace goes to the store at `path`."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        max_traces: int | None = None,
        settings: str | None = None,
        cwd: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.queue_size = queue_size
        self.max_traces = max_traces
        self.settings = settings
        self.cwd = cwd
        self._reset()
        os.register_at_fork(after_in_child=self._reset)
        atexit.register(self.close)
        _writers.add(self)

    def _reset(self) -> None:
        """A fresh state for this process (after a fork the parent's thread is gone)."""
        for inherited in (getattr(self, "_store", None), getattr(self, "_late_store", None)):
            if inherited is not None:
                _inherited.append(inherited)
        self._store: TraceStore | None = None  # the writer thread's open store
        self._late_store: TraceStore | None = None  # for traces that finish after close began
        self._late_lock = threading.Lock()
        self._late_writing = 0  # late writes under way
        self._pid = os.getpid()
        self._queue: queue.Queue[Any] = queue.Queue(self.queue_size)
        self._urgent = threading.Event()  # a flush or a stop is queued: write now
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # a lock held at fork time would stay held in the child
        self._closed = False
        self.dropped = 0  # traces dropped on a full queue, in this process
        self._unreported_drops = 0
        self.written = 0
        self.failed = 0  # traces the store refused (unusable store, unserializable trace)
        self._warned = False

    # --- the request side: never blocks, never raises ----------------------------------------

    def __call__(self, trace: Trace) -> None:
        if self._pid != os.getpid():  # forked without the at-fork hook (a C extension)
            self._reset()
        if self._closed:
            self._write_late([trace])  # the process is ending: this thread may wait
            return
        if self._thread is None and not self._start():
            self._drop()
            return
        try:
            self._queue.put_nowait(trace)
        except queue.Full:
            self._drop()

    def _drop(self) -> None:
        with self._lock:
            self.dropped += 1
            self._unreported_drops += 1

    def _start(self) -> bool:
        with self._lock:
            if self._thread is not None:
                return True
            if self._closed:
                return False
            thread = threading.Thread(
                target=self._run, args=(self._queue,), name="djtrace-writer", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down
                return False
            self._thread = thread
        if "multiprocessing" in sys.modules:
            # A process forked by multiprocessing leaves through os._exit: no atexit there.
            from multiprocessing import util

            util.Finalize(None, self.close, exitpriority=100)
        return True

    # --- the writer thread --------------------------------------------------------------------

    def _run(self, q: queue.Queue[Any]) -> None:
        store: TraceStore | None = None
        while True:
            self._store = store
            batch = [q.get()]
            if isinstance(batch[0], Trace) and q.qsize() < BATCH - 1:
                # Linger a moment for the traces right behind it: one transaction for a
                # burst of requests instead of one each (a trace costs the store as much
                # again as its commit), and one wakeup, not one per trace (each takes the
                # GIL from a request). A flush, a stop or a full batch waiting does not wait.
                self._urgent.wait(LINGER_S)
            while len(batch) < BATCH:
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            traces = [item for item in batch if isinstance(item, Trace)]
            if traces or self._unreported_drops:
                with _in_sqlite:
                    store = self._write(store, traces)
            if len(traces) < len(batch):
                self._urgent.clear()  # served (one queued since waits a linger at most)
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()
            if any(item is _STOP for item in batch):
                self._store = None
                if store is not None:
                    with _in_sqlite:
                        store.close()
                return

    def _write(self, store: TraceStore | None, traces: list[Trace]) -> TraceStore | None:
        rows = []
        for trace in traces:
            try:
                rows.append(row_for(trace, self.settings, self.cwd))
            except Exception:
                self.failed += 1
                logger.warning("djtrace: could not serialize trace %s", trace.id, exc_info=True)
        try:
            if store is None:
                store = TraceStore.open(self.path, create=True)
            if rows:
                store.add_rows(rows, self.max_traces)
                self.written += len(rows)
            with self._lock:
                drops, self._unreported_drops = self._unreported_drops, 0
            if drops:
                store.count_dropped(drops)
        except StoreError as exc:
            self.failed += len(rows)
            if not self._warned:
                self._warned = True
                print(f"djtrace: traces not stored: {exc}", file=sys.stderr, flush=True)
            if store is not None:
                store.close()
            return None
        return store

    def _write_late(self, traces: list[Trace]) -> None:
        """Write traces that finished after close began, in the calling thread."""
        with self._lock:
            self._late_writing += 1
        try:
            with self._late_lock, _in_sqlite:
                self._late_store = self._write(self._late_store, traces)
        except Exception:  # the interpreter may be shutting down around us
            self.failed += len(traces)
        finally:
            with self._lock:
                self._late_writing -= 1

    def _settle(self, deadline: float) -> None:
        """Let late writes under way finish, and those of requests closing just now.

        Bounded (never "until quiet"): a server that keeps answering until the process
        ends must not keep it from ending.
        """
        for pause in (0.0, SETTLE_S):
            time.sleep(pause)
            while time.monotonic() < deadline:
                with self._lock:
                    if not self._late_writing:
                        break
                time.sleep(0.005)

    # --- flushing -----------------------------------------------------------------------------

    def flush(self, timeout: float = CLOSE_TIMEOUT_S) -> bool:
        """Wait until every trace queued so far is written; False if that took too long."""
        if self._thread is None or self._pid != os.getpid():
            return True
        done = threading.Event()
        try:
            self._queue.put(done, timeout=timeout)
            self._urgent.set()
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Write what is queued and stop the thread (atexit; idempotent).

        From here on a finished trace is written by the thread that finished it; close
        waits for such writes under way (and, SETTLE_S later, for any begun since).
        """
        with self._lock:
            if self._closed or self._pid != os.getpid():
                return
            self._closed = True
            thread = self._thread
        deadline = time.monotonic() + timeout
        if thread is not None:
            try:
                self._queue.put(_STOP, timeout=timeout)
                self._urgent.set()
            except queue.Full:
                pass
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                left = self._queue.qsize()
                print(
                    f"djtrace: {left} trace{'' if left == 1 else 's'} not written to "
                    f"{self.path} (store busy)",
                    file=sys.stderr,
                    flush=True,
                )
                return
            # Put on the queue after the thread's last look (they passed the closed check first).
            left_behind = []
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if isinstance(item, Trace):
                    left_behind.append(item)
            if left_behind:
                self._write_late(left_behind)
        self._settle(deadline)


def close_all(timeout: float = CLOSE_TIMEOUT_S) -> None:
    """Write what every writer of this process has queued, then stop them (idempotent).

    For a process about to die without atexit (a signal's default action).
    """
    deadline = time.monotonic() + timeout
    for writer in list(_writers):
        writer.close(max(0.0, deadline - time.monotonic()))
