"""`djtrace capture -- COMMAND ...`: run any server with every request traced into the store.

Like `opentelemetry-instrument` or `ddtrace-run`, capture changes nothing in the project:
it puts cli/bootstrap first on the command's PYTHONPATH, so every Python process the
command starts (gunicorn's forked workers, uvicorn's spawned ones, runserver's reloaded
child) installs djtrace once Django is set up and writes its traces to the shared store.
This process only watches the store and prints one line per request.

The command runs in its own session; SIGINT, SIGTERM and SIGQUIT are passed to its whole
process group (as a terminal's Ctrl-C would be), SIGHUP, SIGUSR1 and SIGUSR2 to the
command alone (gunicorn reloads on HUP). The command starts with those signals at their
default dispositions and unblocked, even when capture itself was started with SIGINT
ignored (a background job of a script). capture exits with the command's exit code.
"""

from __future__ import annotations

import contextlib
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
from djtrace.aggregate import percentile
from djtrace.cli import otlp_cli
from djtrace.cli.autotrace import ENV_ACTIVE, ENV_BODY, ENV_READY, ENV_SAMPLE, ENV_STORE
from djtrace.cli.errors import CliError
from djtrace.cli.render import DEFAULT_HIDE_UNDER_MS, ms, plural, render_trace
from djtrace.cli.store_access import StoreOption, store_path
from djtrace.cli.store_cmds import worker
from djtrace.exporters.store import StoreDamaged, StoreError, Summary, TraceStore
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

Then: [bold]djtrace list[/], [bold]djtrace stats[/], [bold]djtrace show slowest[/].
"""

BOOTSTRAP_DIR = Path(__file__).resolve().parent / "bootstrap"
DEFAULT_BODY_LIMIT = 64 * 1024
POLL_S = 0.2
COUNTS_EVERY_S = 5.0  # running counts, printed while requests keep coming

_TO_GROUP = (signal.SIGINT, signal.SIGTERM, signal.SIGQUIT)
_TO_CHILD = (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)


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
        try:
            if signum in _TO_GROUP:
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
        self.durations: list[int] = []
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
        self.durations.append(row.duration)
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

    def counts(self) -> Text:
        durations = sorted(self.durations)
        text = Text("── ", "dim")
        text.append(plural(len(durations), "request"), "bold")
        for name in sorted(self.classes):
            style = "red" if name.startswith("5") else "yellow" if name[0] in "4n" else ""
            text.append(" · ")
            text.append(f"{name} {self.classes[name]}", style)
        if durations:
            text.append(
                f" · p50 {ms(percentile(durations, 50))} · p95 {ms(percentile(durations, 95))}"
            )
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
) -> None:
    """Run a server command with every request traced into the trace store, shown live."""
    if not command:
        raise CliError(
            "give the command to run after --, e.g. djtrace capture -- gunicorn mysite.wsgi"
        )
    otlp_cli.check_options(otlp, otlp_endpoint, otlp_protocol, service_name)
    otlp_env = otlp_cli.capture_env(otlp_endpoint, otlp_protocol, service_name) if otlp else {}
    path = store_path(store).absolute()
    try:
        opened = TraceStore.open(path, create=True, check=True)
    except StoreDamaged as exc:
        raise CliError(f"{exc}: move it away or pass another --store before capturing") from None
    except StoreError as exc:
        raise CliError(str(exc)) from None
    console = _CaptureConsole(highlight=False)
    view = LiveView(console, opened, tree_over, quiet, hide_under)
    with tempfile.TemporaryDirectory(prefix="djtrace-capture-") as scratch:
        ready = Path(scratch) / "traced-pids"
        env = capture_env(path, body_limit if capture_body else 0, ready, sample=sample)
        env.update(otlp_env)
        with SignalForwarder() as forwarder:
            child = _start(command, env, opened)
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
                time.sleep(POLL_S)
            forwarder.report(console)  # one that stopped the server before the loop saw it
            _drain(view)
        opened.close()
        traced = _traced_pids(ready)
    code = child.returncode
    _summary(console, view, path, code, traced)
    raise typer.Exit(code if code >= 0 else 128 - code)


def _start(command: list[str], env: dict[str, str], opened: TraceStore) -> subprocess.Popen[Any]:
    try:
        return subprocess.Popen(command, env=env, start_new_session=True)
    except FileNotFoundError:
        opened.close()
        raise CliError(f"command not found: {command[0]}", code=127) from None
    except PermissionError:
        opened.close()
        raise CliError(f"cannot run {command[0]}: permission denied", code=126) from None


def _traced_pids(ready: Path) -> list[int]:
    """The processes of the command in which djtrace became active (set up Django)."""
    with contextlib.suppress(OSError):
        return [int(word) for word in ready.read_text().split() if word.isdigit()]
    return []


def _drain(view: LiveView) -> None:
    """The server has exited: show what its last writes added (stragglers included)."""
    quiet_polls = 0
    while quiet_polls < 2:
        before = view.seq
        view.poll()
        quiet_polls = quiet_polls + 1 if view.seq == before else 0
        if quiet_polls < 2:
            time.sleep(POLL_S)


def _summary(console: Console, view: LiveView, path: Path, code: int, traced: list[int]) -> None:
    if code >= 0:
        exit_text = f"exited with {code}"
    else:
        exit_text = f"was killed by {signal.Signals(-code).name}"
    view.print_counts()
    console.print(
        Text.assemble(
            ("djtrace capture: ", "bold"),
            f"{plural(len(view.durations), 'request')} recorded into {path}; "
            f"the server {exit_text}.",
        ),
        soft_wrap=True,
    )
    if view.durations:
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
