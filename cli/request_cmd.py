"""`djtrace request [METHOD] PATH`: one request in-process, shown as a timing tree."""

from __future__ import annotations

import json
import statistics
from enum import Enum
from typing import Annotated

import typer
from djtrace import Trace
from djtrace.cli import break_cli, otlp_cli
from djtrace.cli.errors import CliError
from djtrace.cli.inprocess import HTTP_METHODS, RequestSpec, parse_header, run
from djtrace.cli.project import setup_project
from djtrace.cli.render import (
    DEFAULT_HIDE_UNDER_MS,
    FIRST_RUN_NOTE,
    WidthOption,
    ms,
    render_trace,
    tree_console,
)
from djtrace.cli.store_access import check_ms
from rich.console import Console
from rich.text import Text


class Format(str, Enum):
    tree = "tree"
    json = "json"
    jsonl = "jsonl"


EXAMPLES = """
[bold]Examples[/]

  djtrace request /books/                       [dim]# this folder's project, or sample_site[/]
  djtrace request POST /form/ --data 'name=Ann&email=a@b.co&book=1&quantity=1&delivery=post'
  djtrace request /api/books/ -H 'Accept: application/json' --repeat 20
  djtrace request /login-required/ --user alice
  djtrace request /async/ --asgi
  djtrace request /orders/ --settings mysite.settings --pythonpath ~/src/mysite
  djtrace request /books/ --format json > books.json
  djtrace request /books/ --repeat 5 --format jsonl   [dim]# every run, one trace per line[/]
  djtrace request /books/ --otlp                [dim]# also to Jaeger (OTLP, :4318)[/]
  djtrace request /books/ --otlp --otlp-endpoint http://jaeger:4318
  djtrace request /health/ --fail-on-error      [dim]# exit 1 on a 5xx: a CI gate[/]
  djtrace request /books/ | less                [dim]# piped: whole lines (--width to cut)[/]
"""


def _parse_target(target: list[str]) -> tuple[str, str]:
    if len(target) == 1:
        method, path = "GET", target[0]
    elif len(target) == 2:
        method, path = target[0].upper(), target[1]
    else:
        raise CliError("expected [METHOD] PATH, e.g. `djtrace request POST /form/`")
    if method not in HTTP_METHODS:
        raise CliError(f"unknown HTTP method {target[0]!r} (use one of {', '.join(HTTP_METHODS)})")
    if not path.startswith("/"):
        raise CliError(f"path {path!r} must start with '/', e.g. /books/")
    return method, path


def _body(data: str | None, json_body: str | None) -> tuple[bytes, str | None]:
    if data is not None and json_body is not None:
        raise CliError("give --data or --json, not both")
    if json_body is not None:
        try:
            json.loads(json_body)
        except ValueError as exc:
            raise CliError(f"--json is not valid JSON: {exc}") from None
        return json_body.encode(), "application/json"
    if data is not None:
        return data.encode(), "application/x-www-form-urlencoded"
    return b"", None


def _spread(traces: list[Trace]) -> Text:
    durations = sorted(t.duration for t in traces)
    p95 = durations[min(len(durations) - 1, round(0.95 * (len(durations) - 1)))]
    return Text.assemble(
        (f"{len(traces)} runs: ", "bold"),
        f"min {ms(durations[0])} · median {ms(statistics.median_low(durations))} · "
        f"p95 {ms(p95)} · max {ms(durations[-1])}   (tree: the median run)",
    )


def request(
    target: Annotated[
        list[str],
        typer.Argument(
            metavar="[METHOD] PATH", help="e.g. /books/ or POST /form/", show_default=False
        ),
    ],
    settings: Annotated[
        str | None,
        typer.Option(
            "--settings",
            help="Settings module (default: DJANGO_SETTINGS_MODULE, else the manage.py in this"
            " folder or above, else the bundled sample_site).",
        ),
    ] = None,
    pythonpath: Annotated[
        str | None,
        typer.Option(
            "--pythonpath", help="Directory to put on sys.path first (your project root)."
        ),
    ] = None,
    header: Annotated[
        list[str] | None,
        typer.Option("-H", "--header", help="Request header 'Name: value' (repeatable)."),
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", help="Form-encoded body, e.g. 'a=1&b=2'.")
    ] = None,
    json_body: Annotated[
        str | None, typer.Option("--json", help="JSON body (sets Content-Type: application/json).")
    ] = None,
    user: Annotated[
        str | None, typer.Option("--user", help="Log in as this username first (force_login).")
    ] = None,
    repeat: Annotated[
        int,
        typer.Option(
            "--repeat", min=1, max=10000, help="Run N times; show the median run and the spread."
        ),
    ] = 1,
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            help="tree (rich), json (the median run, in the documented trace format) or jsonl"
            " (every run, one JSON trace per line, in run order).",
        ),
    ] = Format.tree,
    asgi: Annotated[
        bool, typer.Option("--asgi", help="Go through ASGIHandler instead of WSGIHandler.")
    ] = False,
    enforce_csrf: Annotated[
        bool,
        typer.Option(
            "--enforce-csrf",
            help="Enforce CSRF checks (off by default, as in Django's test client).",
        ),
    ] = False,
    host: Annotated[
        str | None,
        typer.Option(
            "--host", help="Host header (default: the first concrete ALLOWED_HOSTS entry)."
        ),
    ] = None,
    hide_under: Annotated[
        float,
        typer.Option(
            "--hide-under",
            metavar="MS",
            min=0,
            help="Hide detail spans faster than this (ms); pipeline phases always show.",
        ),
    ] = DEFAULT_HIDE_UNDER_MS,
    fail_on_error: Annotated[
        bool,
        typer.Option(
            "--fail-on-error", help="Exit 1 if a run answered 5xx (after showing it): a CI gate."
        ),
    ] = False,
    width: WidthOption = None,
    otlp: otlp_cli.OtlpFlag = False,
    otlp_endpoint: otlp_cli.EndpointOption = None,
    otlp_protocol: otlp_cli.ProtocolOption = None,
    service_name: otlp_cli.ServiceOption = None,
    break_on: break_cli.BreakOnOption = None,
    nth: break_cli.NthOption = 1,
) -> None:
    """Trace one request in-process through your project's full stack; show where its time went."""
    method, path = _parse_target(target)
    hide_under = check_ms(hide_under)
    headers = [parse_header(h) for h in header or []]
    body, content_type = _body(data, json_body)
    if content_type and not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", content_type))
    otlp_cli.check_options(otlp, otlp_endpoint, otlp_protocol, service_name)
    breakpoints = break_cli.parse_break_on(break_on, nth)
    project = setup_project(settings, pythonpath)
    exporting = otlp_cli.prepare(otlp_endpoint, otlp_protocol) if otlp else None
    spec = RequestSpec(method, path, headers, body, user, host, enforce_csrf, asgi)
    with break_cli.armed(breakpoints, nth):
        traces = [run(spec) for _ in range(repeat)]
    shown = sorted(traces, key=lambda t: t.duration)[(len(traces) - 1) // 2]  # median_low
    if fmt is not Format.tree and project.found:
        # On stderr, so stdout stays the JSON alone; said only when djtrace chose the project.
        Console(stderr=True, highlight=False).print(project.describe(), style="dim", soft_wrap=True)
    if fmt is Format.json:
        typer.echo(json.dumps(shown.to_dict(), indent=2))
    elif fmt is Format.jsonl:
        for one in traces:
            typer.echo(json.dumps(one.to_dict(), separators=(",", ":")))
    else:
        console = tree_console(width)
        console.print(render_trace(shown, hide_under_ms=hide_under))
        if repeat > 1:
            console.print(_spread(traces))
        else:
            console.print(FIRST_RUN_NOTE, style="dim")
        console.print(project.describe(), style="dim", highlight=False)
    if exporting is not None:
        otlp_cli.send(exporting, traces, service_name)
    if fail_on_error:
        _fail_on_server_errors(traces)


def _fail_on_server_errors(traces: list[Trace]) -> None:
    failed = [t for t in traces if (t.request.get("status") or 0) >= 500]
    if failed:
        status = failed[0].request.get("status")
        runs = f"{len(failed)} of {len(traces)} runs" if len(traces) > 1 else "the request"
        raise CliError(f"{runs} answered {status} (--fail-on-error)", code=1)


request.__doc__ = (request.__doc__ or "") + "\n\n" + EXAMPLES + break_cli.EXAMPLES
