"""`djtrace replay ID`: run a captured request again, in-process or against a loopback server.

The request is rebuilt from the trace: method, path, query, headers and, when it was
captured, the body. Secrets were never stored, so they cannot be replayed: a request that
carried cookies (a session) replays anonymously unless `--user` logs a user in.
"""

from __future__ import annotations

import inspect
import ipaddress
import os
import socket
import statistics
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Annotated
from urllib.parse import quote, urlsplit

import typer
from djtrace.cli import break_cli
from djtrace.cli.diff_cmd import render_diff
from djtrace.cli.errors import CliError
from djtrace.cli.inprocess import RequestSpec, run
from djtrace.cli.project import setup_project
from djtrace.cli.render import DEFAULT_HIDE_UNDER_MS, ms, plural, render_trace
from djtrace.cli.store_access import StoreOption, check_ms, finish, load_trace, store_path
from djtrace.compare import compare
from djtrace.exporters.store import StoreError, Summary, TraceStore
from djtrace.model import Trace
from djtrace.redact import REDACTED
from rich.console import Console
from rich.text import Text

EXAMPLES = """
[bold]Examples[/]

  djtrace replay latest
  djtrace replay 3f9a2c --repeat 20              [dim]# median run shown, spread below[/]
  djtrace replay 3f9a2c --user alice             [dim]# it was a logged-in request[/]
  djtrace replay 3f9a2c --target http://127.0.0.1:8000
  djtrace replay books.json --settings mysite.settings --pythonpath ~/src/mysite
  djtrace replay latest --cold                   [dim]# no warm-up run first[/]
  djtrace replay latest --break-on 'sql~/UPDATE .*stock/'  [dim]# stop in pdb at that query[/]
"""

REPLAY_HEADER = "X-Djtrace-Replay"
_NOT_REPLAYED = {"host", "content-length", "cookie", "connection", "keep-alive", "te", "upgrade"}
_STORE_WAIT_S = 5.0  # how long a --target replay waits for the server to store its trace


def request_spec(original: Trace, user: str | None, asgi: bool) -> tuple[RequestSpec, list[str]]:
    """The request to send again, and notes on what could not be reproduced."""
    req = original.request
    notes: list[str] = []
    headers: list[tuple[str, str]] = []
    redacted = []
    for name, value in (req.get("headers") or {}).items():
        if value == REDACTED:
            redacted.append(name)
        elif name not in _NOT_REPLAYED and name != REPLAY_HEADER.lower():
            headers.append((name, str(value)))
    host = (req.get("headers") or {}).get("host")
    query = req.get("query") or ""
    path = quote(str(req.get("path") or "/"), safe="/:@!$&'()*+,;=-._~")
    body = b""
    if "body" in req:
        body = str(req["body"]).encode()
        if REDACTED in req["body"]:
            notes.append("the body had sensitive fields; they are sent as '[redacted]'")
    else:
        size = req.get("body_size") or _content_length(req.get("headers") or {})
        if size:
            reason = req.get("body_omitted") or "captured without --capture-body"
            notes.append(
                f"the original sent a {size}-byte body that was not recorded ({reason}); "
                "replaying without it"
            )
    if REDACTED in query:
        notes.append("sensitive query parameters were redacted; they are sent as '[redacted]'")
    if "cookie" in redacted and not user:
        notes.append(
            "the original request carried cookies (a session?); cookies are never stored, so "
            "this replay is anonymous — if it was a logged-in request, pass --user USERNAME"
        )
    other = [h for h in redacted if h != "cookie"]
    if other:
        notes.append(f"redacted headers not replayed: {', '.join(other)}")
    spec = RequestSpec(
        method=str(req.get("method") or "GET"),
        path=path + (f"?{query}" if query else ""),
        headers=headers,
        body=body,
        user=user,
        host=host if host and host != REDACTED else None,
        asgi=asgi,
    )
    return spec, notes


def _content_length(headers: dict[str, str]) -> int:
    try:
        return int(headers.get("content-length") or 0)
    except ValueError:
        return 0


def check_target(target: str) -> str:
    """The base URL, if it is http(s) on a loopback address; a clear error otherwise."""
    shown = repr(target if len(target) <= 60 else target[:57] + "…")
    try:
        parts = urlsplit(target)
        parts.port  # noqa: B018 (a port that is not a number, or past 65535, raises here)
    except ValueError as exc:  # "http://[::1" (an unclosed IPv6 address)
        raise CliError(f"--target {shown}: not a URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"--target {shown}: expected a URL like http://127.0.0.1:8000")
    host = parts.hostname
    if not _loopback(host):
        raise CliError(
            f"--target {shown}: only loopback addresses (127.0.0.1, ::1, localhost) are "
            "allowed; replay never sends captured requests to another machine"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host != "localhost" and not host.endswith(".localhost"):
        return False
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(i[4][0]).is_loopback for i in infos)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None  # a replay reports the redirect; it does not follow it


def send(base: str, spec: RequestSpec, nonce: str) -> tuple[int, int]:
    """Send the request to the server; (status, client-side ns)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
    headers = dict(spec.headers)
    headers[REPLAY_HEADER] = nonce
    request = urllib.request.Request(
        base + spec.path, data=spec.body or None, headers=headers, method=spec.method
    )
    start = time.perf_counter_ns()
    try:
        with opener.open(request, timeout=60) as response:
            response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        exc.read()
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(f"cannot reach {base}: {reason}", code=1) from None
    return status, time.perf_counter_ns() - start


def _stored(path: Path, nonce: str, since: int) -> Trace | None:
    """The server's own trace of a --target replay, if it is captured into this store."""
    deadline = time.monotonic() + _STORE_WAIT_S
    while True:
        try:
            with TraceStore.open(path) as store:
                found = store.find_tagged(REPLAY_HEADER.lower(), nonce, since)
        except StoreError:
            return None
        if found is not None or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def _setup(
    settings: str | None, pythonpath: str | None, original: Trace, summary: Summary | None
) -> Text:
    """Set up the project the trace came from; a dim line saying which settings run it.

    The settings module comes from --settings, else the trace itself (every trace records
    it), else the store row (older captures), else DJANGO_SETTINGS_MODULE, else sample_site.
    """
    source = "from --settings"
    if not settings:
        recorded = original.where.get("settings") or (summary.settings if summary else None)
        if isinstance(recorded, str) and recorded:
            settings, source = recorded, "the ones the trace was recorded with"
        elif os.environ.get("DJANGO_SETTINGS_MODULE"):
            source = "from DJANGO_SETTINGS_MODULE: the trace does not say which it ran with"
        else:
            source = (
                "the bundled sample_site: the trace does not say which settings it ran with; "
                "pass --settings (and --pythonpath) for your project"
            )
    if not pythonpath and summary is not None and summary.cwd and os.path.isdir(summary.cwd):
        pythonpath = summary.cwd  # where the captured server ran
    try:
        project = setup_project(settings, pythonpath)
    except CliError as exc:
        if source.startswith("the ones"):
            raise CliError(
                f"{exc}; the trace was recorded with settings {settings!r}: run replay from "
                "that project's directory, or pass --pythonpath (or --settings)",
                exc.code,
            ) from None
        raise
    if project.source == "manage.py" and not settings:  # found where the user is
        source = f"from {project.root}/manage.py: the trace does not say which it ran with"
    return Text(f"in-process, with settings {project.settings} ({source})", "dim")


def _headline(original: Trace) -> Text:
    req = original.request
    queries = sum(1 for s in original.spans if s.phase == "db.query")
    return Text.assemble(
        ("replaying ", "bold"),
        (original.id, "cyan"),
        f": {req.get('method', '')} {req.get('path', '')}",
        ("?" + req["query"]) if req.get("query") else "",
        (
            f"  — original {req.get('status') or 'no response'} in {ms(original.duration)}, "
            f"{plural(queries, 'query', 'queries')}, pid {original.where.get('pid', '?')}",
            "dim",
        ),
    )


def replay(
    ref: Annotated[
        str, typer.Argument(metavar="ID|latest|slowest|FILE", help="The captured request.")
    ],
    repeat: Annotated[
        int, typer.Option("--repeat", min=1, max=10000, help="Run N times; compare the median.")
    ] = 1,
    target: Annotated[
        str | None,
        typer.Option("--target", help="Send to a running server on loopback instead."),
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="Log in as this user (in-process only).")
    ] = None,
    settings: Annotated[
        str | None,
        typer.Option(
            "--settings", help="Settings module (default: the one the trace was recorded with)."
        ),
    ] = None,
    pythonpath: Annotated[
        str | None, typer.Option("--pythonpath", help="Directory to put on sys.path first.")
    ] = None,
    asgi: Annotated[
        bool | None,
        typer.Option("--asgi/--wsgi", help="Handler to use (default: as the original ran)."),
    ] = None,
    cold: Annotated[
        bool,
        typer.Option(
            "--cold",
            help="In-process: skip the warm-up run. By default the request runs once first,"
            " not shown nor compared, so one-time costs of a fresh process (URL patterns,"
            " template compile, DB connect) do not count; that run repeats any side effect.",
        ),
    ] = False,
    store: StoreOption = None,
    hide_under: Annotated[
        float,
        typer.Option("--hide-under", metavar="MS", min=0, help="Hide detail spans under MS."),
    ] = DEFAULT_HIDE_UNDER_MS,
    break_on: break_cli.BreakOnOption = None,
    nth: break_cli.NthOption = 1,
) -> None:
    """Re-run a captured request and compare it with the original, phase by phase.

    In-process (the default), the replay runs with the settings the trace was recorded
    with, after one warm-up run (see --cold).
    """
    base = check_target(target) if target else None
    hide_under = check_ms(hide_under)
    original, summary, damaged = load_trace(ref, store)
    use_asgi = asgi if asgi is not None else original.where.get("mode") == "async"
    if target and user:
        raise CliError("--user works in-process only; a --target server needs its own login")
    if target and break_on:
        raise CliError("--break-on works in-process only, not with --target")
    breakpoints = break_cli.parse_break_on(break_on, nth)
    spec, notes = request_spec(original, user, use_asgi)
    console = Console()
    console.print(_headline(original), soft_wrap=True)
    for note in notes:
        console.print(Text.assemble(("note: ", "yellow"), note), soft_wrap=True)
    if base:
        replays = _replay_remote(console, base, spec, repeat, store_path(store))
        if not replays:
            finish(damaged)
            return
    else:
        console.print(_setup(settings, pythonpath, original, summary), soft_wrap=True)
        if not cold:
            run(spec)  # warm-up: pays this process's one-time costs; not shown
        with break_cli.armed(breakpoints, nth):  # not in the warm-up: it is not shown
            replays = [run(spec) for _ in range(repeat)]
    shown = sorted(replays, key=lambda t: t.duration)[(len(replays) - 1) // 2]
    console.print()
    console.print(render_trace(shown, hide_under_ms=hide_under))
    if repeat > 1:
        durations = sorted(t.duration for t in replays)
        console.print(
            f"{len(replays)} runs: min {ms(durations[0])} · median "
            f"{ms(statistics.median(durations))} · max {ms(durations[-1])} (compared: the median)"
        )
    elif cold and not base:
        console.print(Text("cold run: includes this process's one-time costs", "dim"))
    console.print()
    console.print(render_diff(compare(original, shown), "original", "replay"))
    finish(damaged)


def _replay_remote(
    console: Console, base: str, spec: RequestSpec, repeat: int, path: Path
) -> list[Trace]:
    """Send to the server; its traces when it is captured into this store, else client numbers."""
    found: list[Trace] = []
    timings = []
    for i in range(repeat):
        nonce = os.urandom(8).hex()
        since = time.time_ns() - 1_000_000_000  # the server's clock may lag ours a little
        status, elapsed = send(base, spec, nonce)
        timings.append((status, elapsed))
        if i == 0 or found:  # not captured the first time: do not wait for the others
            trace = _stored(path, nonce, since)
            if trace is not None:
                found.append(trace)
    if found:
        return found
    statuses = sorted({s for s, _ in timings})
    median = statistics.median(t for _, t in timings)
    console.print(
        f"{base}: status {', '.join(map(str, statuses))}, median {ms(median)} over "
        f"{plural(len(timings), 'request')} (client side)."
    )
    console.print(
        Text(
            f"The server is not captured into {path}, so there is no trace to compare: run it "
            "under `djtrace capture` (same --store) to see the tree and the diff.",
            "yellow",
        ),
        soft_wrap=True,
    )
    return []


replay.__doc__ = inspect.cleandoc(replay.__doc__ or "") + "\n\n" + EXAMPLES
