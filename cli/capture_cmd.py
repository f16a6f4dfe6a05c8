"""`djtrace capture -- COMMAND ...`: run any server with every request traced into the store.

Like `opentelemetry-instrument` or `ddtrace-run`, capture changes nothing in the project:
it puts cli/bootstrap first on the command's PYTHONPATH, so every Python process the
command starts (gunicorn's forked workers, uvicorn's spawned ones, runserver's reloaded
child) installs djtrace once Django is set up and writes its traces to the shared store.
This process only watches the store and prints one line per request.

The command runs in its own session. SIGINT, SIGTERM, SIGQUIT, SIGHUP, SIGUSR1 and
SIGUSR2 are passed to the command alone, once: the server stops (or reloads) its own
workers, as when it is signalled without capture. A terminal's Ctrl-C would reach every
worker as well as the master, and gunicorn's gthread workers, told to quit twice, can hang
until the master kills them. The same stop signal a second time goes to the whole process
group (a command that does not pass signals on). The command starts with those signals at
their default dispositions and unblocked, even when capture itself was started with
SIGINT ignored (a background job of a script). capture exits with the command's exit code.

The server never outlives capture: on Linux the command gets SIGTERM when capture dies
(PR_SET_PDEATHSIG), and a small watchdog process (cli/watchdog.py) stops the server's
process group if capture is killed (SIGTERM where there is no PR_SET_PDEATHSIG, then
SIGKILL to whatever is left after a grace period).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from djtrace.cli import break_cli, otlp_cli
from djtrace.cli.autotrace import ENV_ACTIVE, ENV_BODY, ENV_READY, ENV_SAMPLE, ENV_STORE
from djtrace.cli.errors import CliError, command_not_found
from djtrace.cli.render import DEFAULT_HIDE_UNDER_MS, ms, plural, render_trace
from djtrace.cli.store_access import StoreOption, check_ms, store_path
from djtrace.cli.store_cmds import worker
from djtrace.cli.watchdog import group_ends, stop_group
from djtrace.exporters.store import StoreDamaged, StoreError, Summary, TraceStore
from hdrh.histogram import HdrHistogram
from rich.console import Console
from rich.text import Text

EXAMPLES = """
[bold]Examples[/]

  djtrace capture -- python manage.py runserver
  djtrace capture -- gunicorn mysite.wsgi -w 4 --threads 8
  djtrace capture --tree-over 200 -- uvicorn mysite.asgi:application --workers 2
  djtrace capture --store /tmp/load.sqlite3 --quiet -- gunicorn mysite.wsgi
  djtrace capture --capture-body -- python manage.py runserver --noreload
  djtrace capture --otlp -- gunicorn mysite.wsgi   [dim]# and to Jaeger (OTLP, :4318)[/]
  djtrace capture --sample 0.1 -- gunicorn mysite.wsgi   [dim]# 1 in 10 in full, the rest light[/]
  djtrace capture --break-on n+1 -- python manage.py runserver --noreload  [dim]# stop in pdb[/]

Then: [bold]djtrace list[/], [bold]djtrace stats[/], [bold]djtrace show slowest[/].
"""

BOOTSTRAP_DIR = Path(__file__).resolve().parent / "bootstrap"
DEFAULT_BODY_LIMIT = 64 * 1024
POLL_S = 0.2
COUNTS_EVERY_S = 5.0  # running counts, printed while requests keep coming
LEFTOVER_GRACE_S = 10.0  # processes of the server still running once it has exited

_TO_GROUP = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)  # the group, if repeated
_TO_CHILD = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
WATCHDOG = Path(__file__).resolve().parent / "watchdog.py"
# Durations for the summary's percentiles: 1 µs to an hour, 3 significant digits, in a
# fixed few kilobytes however long the capture runs.
_LONGEST_US = 3600 * 1_000_000


def capture_env(
    store: Path, body_limit: int, ready: Path | None = None, sample: float | None = None
) -> dict[str, str]:
    """The command's environment: djtrace's bootstrap first on PYTHONPATH, and its options.

    `ready` is a file each traced process appends its pid to once djtrace is active in it.
    `sample`: the fraction of requests traced in full (the others get a light trace).
    """
    env = dict(os.environ)
    existing = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(BOOTSTRAP_DIR) + (os.pathsep + existing if existing else "")
    env[ENV_ACTIVE] = "1"
    env[ENV_STORE] = str(store)
    if body_limit:
        env[ENV_BODY] = str(body_limit)
    else:
        env.pop(ENV_BODY, None)
    if ready is not None:
        env[ENV_READY] = str(ready)
    else:
        env.pop(ENV_READY, None)
    if sample is not None and sample < 1.0:
        env[ENV_SAMPLE] = repr(sample)
    else:
        env.pop(ENV_SAMPLE, None)
    return env


class SignalForwarder:
    """Passes stop and control signals to the command; remembers them for the view.

    Installed before the command starts: a signal that arrives before then is passed on
    as soon as it runs, and the command starts with every one of these signals at its
    default disposition (exec resets a caught signal; an ignored one would stay ignored).
    """

    def __init__(self) -> None:
        self.child: subprocess.Popen[Any] | None = None
        self.received: list[int] = []
        self._reported = 0
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> SignalForwarder:
        for sig in _TO_GROUP + _TO_CHILD:
            self._previous[sig] = signal.signal(sig, self._forward)
        # A blocked signal stays blocked across exec: unblock them here and in the command.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _TO_GROUP + _TO_CHILD)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def report(self, console: Console) -> None:
        """Say which signals were passed on (from the main loop, never from a handler)."""
        while self._reported < len(self.received):
            name = signal.Signals(self.received[self._reported]).name
            console.print(Text(f"djtrace: passing {name} to the server", "dim"))
            self._reported += 1

    def started(self, child: subprocess.Popen[Any]) -> None:
        self.child = child
        for signum in self.received:  # arrived while it was starting
            self._send(signum)

    def _forward(self, signum: int, frame: Any) -> None:
        self.received.append(signum)
        self._send(signum)

    def _send(self, signum: int) -> None:
        if self.child is None:
            return
        # One stop signal to the server alone; a second stop (Ctrl-C again) to its group.
        repeated = sum(1 for sig in self.received if sig in _TO_GROUP) > 1
        try:
            if signum in _TO_GROUP and repeated:
                os.killpg(self.child.pid, signum)
            else:
                os.kill(self.child.pid, signum)
        except (ProcessLookupError, PermissionError):
            pass


class _CaptureConsole(Console):
    def on_broken_pipe(self) -> None:
        # Whoever read our output went away (`| head`): the server keeps running and
        # capture keeps recording; it just prints nothing more.
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


class LiveView:
    """Reads new traces from the store and prints one line per request, and running counts."""

    def __init__(
        self,
        console: Console,
        store: TraceStore,
        tree_over: float | None,
        quiet: bool,
        hide_under: float,
    ) -> None:
        self.console = console
        self.store = store
        self.seq = store.last_seq()  # only what this capture records
        self.dropped_before = store.dropped()
        self.dropped = 0
        self.tree_over = int(tree_over * 1e6) if tree_over is not None else None
        self.quiet = quiet
        self.hide_under = hide_under
        self.requests = 0
        self.durations_us = HdrHistogram(1, _LONGEST_US, 3)
        self.classes: dict[str, int] = {}
        self.pids: set[int] = set()
        self.last_counts = time.monotonic()
        self.unreported = 0
        self.counts_shown = ""  # the last counts line printed
        self._read_error: str | None = None

    def poll(self) -> None:
        try:
            while True:
                rows = self.store.after(self.seq)
                for row in rows:
                    self._request(row)
                    self.seq = row.seq
                if len(rows) < 500:
                    break
            dropped = self.store.dropped() - self.dropped_before
        except StoreError as exc:
            if str(exc) != self._read_error:
                self._read_error = str(exc)
                self.console.print(Text(f"djtrace: cannot read the store: {exc}", "red"))
            return
        if dropped > self.dropped:
            self.console.print(
                Text(
                    f"djtrace: {plural(dropped - self.dropped, 'trace')} dropped (writer queue "
                    f"full; {dropped} so far) — requests were not slowed",
                    "yellow",
                )
            )
            self.dropped = dropped
        now = time.monotonic()
        if self.unreported and not self.quiet and now - self.last_counts >= COUNTS_EVERY_S:
            self.print_counts()
            self.last_counts = now

    def print_counts(self) -> None:
        """The running counts, unless the last line printed already says exactly that."""
        counts = self.counts()
        if counts.plain != self.counts_shown:
            self.console.print(counts, soft_wrap=True)
            self.counts_shown = counts.plain
        self.unreported = 0

    def _request(self, row: Summary) -> None:
        self.requests += 1
        self.durations_us.record_value(min(max(row.duration // 1000, 1), _LONGEST_US))
        status_class = f"{row.status // 100}xx" if row.status else "no response"
        self.classes[status_class] = self.classes.get(status_class, 0) + 1
        if row.pid is not None:
            self.pids.add(row.pid)
        self.unreported += 1
        if self.quiet:
            return
        self.console.print(request_line(row), soft_wrap=True)
        self.counts_shown = ""
        if self.tree_over is not None and row.duration > self.tree_over:
            try:
                trace = self.store.get(row.id)
            except StoreError as exc:
                self.console.print(Text(f"  (tree unavailable: {exc})", "dim"))
                return
            self.console.print(render_trace(trace, hide_under_ms=self.hide_under))

    def percentile(self, q: float) -> int:
        """The q-th percentile of the durations seen, in nanoseconds (3 significant digits)."""
        return self.durations_us.get_value_at_percentile(q) * 1000

    def counts(self) -> Text:
        text = Text("── ", "dim")
        text.append(plural(self.requests, "request"), "bold")
        for name in sorted(self.classes):
            style = "red" if name.startswith("5") else "yellow" if name[0] in "4n" else ""
            text.append(" · ")
            text.append(f"{name} {self.classes[name]}", style)
        if self.requests:
            text.append(f" · p50 {ms(self.percentile(50))} · p95 {ms(self.percentile(95))}")
        text.append(f" · {plural(len(self.pids), 'worker')}")
        text.append(f" · {self.dropped} dropped", "yellow" if self.dropped else "")
        return text


def request_line(row: Summary) -> Text:
    moment = time.strftime("%H:%M:%S", time.localtime(row.started_at / 1e9))
    millis = (row.started_at // 1_000_000) % 1000
    status = row.status
    if not status:
        status_style = "yellow"
    else:
        status_style = "green" if status < 400 else "yellow" if status < 500 else "bold red"
    target = (row.path or "") + (f"?{row.query}" if row.query else "")
    label = worker(row.pid, row.thread)
    return Text.assemble(
        (f"{moment}.{millis:03d} ", "dim"),
        (f"{label:<18} ", "dim"),
        (f"{row.method or '':<6} ", "bold"),
        (f"{target} ", ""),
        (f"{status or '—'} ", status_style),
        (f"{ms(row.duration)} ", ""),
        (f"{row.queries} q", "dim"),
    )


def capture(
    command: Annotated[
        list[str],
        typer.Argument(metavar="-- COMMAND ...", help="The server command to run, as you would."),
    ],
    store: StoreOption = None,
    tree_over: Annotated[
        float | None,
        typer.Option(
            "--tree-over", metavar="MS", min=0, help="Print the tree of requests slower than MS."
        ),
    ] = None,
    capture_body: Annotated[
        bool,
        typer.Option(
            "--capture-body",
            help="Record request bodies (text only, size-capped, password-like fields redacted).",
        ),
    ] = False,
    body_limit: Annotated[
        int,
        typer.Option("--body-limit", metavar="BYTES", min=1, help="Largest body recorded."),
    ] = DEFAULT_BODY_LIMIT,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No line per request; a summary at the end.")
    ] = False,
    hide_under: Annotated[
        float,
        typer.Option("--hide-under", metavar="MS", min=0, help="In trees, hide spans under MS."),
    ] = DEFAULT_HIDE_UNDER_MS,
    otlp: otlp_cli.OtlpFlag = False,
    otlp_endpoint: otlp_cli.EndpointOption = None,
    otlp_protocol: otlp_cli.ProtocolOption = None,
    service_name: otlp_cli.ServiceOption = None,
    sample: Annotated[
        float | None,
        typer.Option(
            "--sample",
            metavar="RATE",
            min=0.0,
            max=1.0,
            help="Trace this fraction of requests in full; the others get a light trace "
            "(root span, status, timing, CPU). A load request's tag can ask for full=1.",
        ),
    ] = None,
    break_on: break_cli.BreakOnOption = None,
    nth: break_cli.NthOption = 1,
    break_worker: break_cli.WorkerOption = None,
) -> None:
    """Run a server command with every request traced into the trace store, shown live."""
    if not command:
        raise CliError(
            "give the command to run after --, e.g. djtrace capture -- gunicorn mysite.wsgi"
        )
    otlp_cli.check_options(otlp, otlp_endpoint, otlp_protocol, service_name)
    breakpoints = break_cli.parse_break_on(break_on, nth)
    quiet = quiet or bool(breakpoints)  # a line per request would land in the debugger's prompt
    otlp_env = otlp_cli.capture_env(otlp_endpoint, otlp_protocol, service_name) if otlp else {}
    path = store_path(store).absolute()
    try:
        opened = TraceStore.open(path, create=True, check=True)
    except StoreDamaged as exc:
        raise CliError(f"{exc}: move it away or pass another --store before capturing") from None
    except StoreError as exc:
        raise CliError(str(exc)) from None
    console = _CaptureConsole(highlight=False)
    if tree_over is not None:
        tree_over = check_ms(tree_over, "--tree-over")
    view = LiveView(console, opened, tree_over, quiet, check_ms(hide_under))
    with tempfile.TemporaryDirectory(prefix="djtrace-capture-") as scratch:
        ready = Path(scratch) / "traced-pids"
        env = capture_env(path, body_limit if capture_body else 0, ready, sample=sample)
        env.update(otlp_env)
        env.update(break_cli.capture_env(breakpoints, nth, break_worker, Path(scratch)))
        with SignalForwarder() as forwarder:
            child = _start(command, env, opened)
            with Watchdog(child.pid, Path(scratch)):
                forwarder.started(child)
                console.print(
                    Text.assemble(
                        ("djtrace capture: ", "bold"),
                        f"tracing every request of `{shlex.join(command)}` (pid {child.pid}) "
                        f"into {path}",
                        ("  · Ctrl-C stops it", "dim"),
                    ),
                    soft_wrap=True,
                )
                while child.poll() is None:
                    view.poll()
                    forwarder.report(console)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        child.wait(POLL_S)  # returns as soon as the server exits
                forwarder.report(console)  # one that stopped the server before the loop saw it
                _stop_leftovers(console, child.pid)
                _drain(view)
        opened.close()
        traced = _traced_pids(ready)
    code = child.returncode
    _summary(console, view, path, code, traced)
    raise typer.Exit(code if code >= 0 else 128 - code)


def _start(command: list[str], env: dict[str, str], opened: TraceStore) -> subprocess.Popen[Any]:
    try:
        return subprocess.Popen(
            command, env=env, start_new_session=True, preexec_fn=_stop_with_us()
        )
    except FileNotFoundError:
        opened.close()
        raise command_not_found(command[0]) from None
    except PermissionError:
        opened.close()
        raise CliError(f"cannot run {command[0]}: permission denied", code=126) from None


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl() -> Any:
    """libc's prctl on Linux, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _stop_with_us() -> Any:
    """A preexec_fn: the command gets SIGTERM when capture dies, even by SIGKILL (Linux).

    Set between fork and exec, so it holds for the command itself (it survives exec); the
    server then stops its own workers. None where there is no prctl (the watchdog does it).
    """
    prctl = _prctl()
    if prctl is None:
        return None
    capture_pid = os.getpid()

    def set_parent_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != capture_pid:  # capture died before the line above took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return set_parent_death_signal


class Watchdog:
    """A small process that stops the server's process group if capture dies (kill -9).

    It reads a pipe only capture can write to: end of file without a goodbye byte means
    capture has gone. It runs in a session of its own (a signal to capture's group does
    not take it too) with -I, so djtrace's bootstrap is not loaded into it.
    """

    def __init__(self, server_pid: int, scratch: Path | None = None) -> None:
        self.server_pid = server_pid
        self.scratch = scratch  # removed by the watchdog if capture dies
        self.process: subprocess.Popen[bytes] | None = None
        self._pipe: int | None = None

    def __enter__(self) -> Watchdog:
        read_end, self._pipe = os.pipe()
        options = [] if _prctl() is not None else ["--term"]  # else the kernel sends it
        if self.scratch is not None:
            options += ["--scratch", str(self.scratch)]
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-S", str(WATCHDOG), str(self.server_pid), *options],
                stdin=read_end,
                stdout=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            pass  # no watchdog: on Linux the server still gets SIGTERM when capture dies
        finally:
            os.close(read_end)
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        """capture is done: the watchdog leaves without touching anything (unless capture
        is failing with an exception: then it stops the server, as if capture had died)."""
        if self._pipe is not None:
            if exc_type is None:
                with contextlib.suppress(OSError):
                    os.write(self._pipe, b"done")
            os.close(self._pipe)
            self._pipe = None
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(5)


def _stop_leftovers(console: Console, group: int) -> None:
    """The command has exited but processes it started still run in its group (a shell
    that did not pass the stop on): stop them too, so no server outlives capture."""
    if group_ends(group, within=1.0):  # helpers exiting with it (multiprocessing's tracker)
        return
    console.print(
        Text(
            f"djtrace: the command (pid {group}) has exited but processes it started are "
            "still running: passing them SIGTERM",
            "yellow",
        ),
        soft_wrap=True,
    )
    with contextlib.suppress(OSError):
        os.killpg(group, signal.SIGTERM)
    if stop_group(group, LEFTOVER_GRACE_S, term=False):
        console.print(Text(f"djtrace: killed them after {LEFTOVER_GRACE_S:g} s", "yellow"))


def _traced_pids(ready: Path) -> list[int]:
    """The processes of the command in which djtrace became active (set up Django)."""
    with contextlib.suppress(OSError):
        return [int(word) for word in ready.read_text().split() if word.isdigit()]
    return []


def _drain(view: LiveView) -> None:
    """The server's processes have exited, their writes committed: show what they added."""
    before = None
    while view.seq != before:
        before = view.seq
        view.poll()


def _summary(console: Console, view: LiveView, path: Path, code: int, traced: list[int]) -> None:
    if code >= 0:
        exit_text = f"exited with {code}"
    else:
        exit_text = f"was killed by {signal.Signals(-code).name}"
    view.print_counts()
    console.print(
        Text.assemble(
            ("djtrace capture: ", "bold"),
            f"{plural(view.requests, 'request')} recorded into {path}; the server {exit_text}.",
        ),
        soft_wrap=True,
    )
    if view.requests:
        console.print(
            Text("next: djtrace list · djtrace stats · djtrace show slowest", "dim"), soft_wrap=True
        )
    elif traced:
        pids = ", ".join(map(str, sorted(set(traced))))
        console.print(
            Text(
                f"no request arrived: djtrace was tracing the server (pid {pids}), but no "
                "request reached it"
                + (" before it stopped" if code == 0 or code < 0 else "; see its output above"),
                "yellow",
            ),
            soft_wrap=True,
        )
    else:
        console.print(
            Text(
                "no request was recorded, and djtrace never became active in the command: was "
                "it a Python command that sets up Django, started without -I/-E (which ignore "
                "PYTHONPATH), with djtrace installed in its Python?",
                "yellow",
            ),
            soft_wrap=True,
        )


capture.__doc__ = (capture.__doc__ or "") + "\n\n" + EXAMPLES
