"""Terminal renderers: a trace as a timing tree, with the phase table and findings under it.

Like pyinstrument's console renderer: each line shows total and self time, coloured by
its share of the request; similar siblings are already folded by `djtrace.analysis.fold`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from http import HTTPStatus
from typing import Annotated, Any

import typer
from djtrace import analysis
from djtrace.analysis import Node
from djtrace.cli.service_labels import SERVICE_PHASES, always_shown, service_label, service_summary
from djtrace.model import Trace
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

#: Phases always drawn, however fast: the pipeline's skeleton.
STRUCTURAL = ("request", "middleware", "url.resolve", "view", "response.", "exception")

DEFAULT_HIDE_UNDER_MS = 0.1
#: The width of a tree written to a pipe or a file: wide enough that no line is ever cut.
UNCUT = 10_000

WidthOption = Annotated[
    int | None,
    typer.Option(
        "--width",
        min=40,
        metavar="COLUMNS",
        help="Cut tree lines at this width (default: the terminal's; piped or redirected,"
        " lines are kept whole).",
        show_default=False,
    ),
]


def tree_console(width: int | None = None, stderr: bool = False) -> Console:
    """A console for trees: a terminal's width, COLUMNS if set, else (a pipe, a file, a CI
    log) whole lines, since a cut SQL statement or view name is lost to a reader of the log."""
    console = Console(stderr=stderr)
    if width is not None:
        console.width = width
    elif not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = UNCUT
    return console


#: The width of tables and reports written to a pipe or a file: they keep every column (at
#: a pipe's 80 they lose some) and charts stay a readable size.
PIPED_REPORT_WIDTH = 200


def report_console() -> Console:
    """A console for tables and reports (load, list, stats): a terminal's width, COLUMNS if set,
    else 200."""
    console = Console(highlight=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = PIPED_REPORT_WIDTH
    return console


def ms(ns: int | float) -> str:
    value = ns / 1e6
    if abs(value) >= 1000:
        return f"{value / 1000:.2f} s"
    if abs(value) >= 100:
        return f"{value:.0f} ms"
    if abs(value) >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def plural(count: int, singular: str, many: str | None = None) -> str:
    """`1 query`, `2 queries`."""
    return f"{count} {singular if count == 1 else (many or singular + 's')}"


def share_style(part: int, whole: int) -> str:
    share = part / whole if whole > 0 else 0
    if share >= 0.4:
        return "bold red"
    if share >= 0.15:
        return "yellow"
    if share >= 0.05:
        return "green"
    return "bright_black"


def _dotted(name: str) -> Text:
    module, dot, last = name.rpartition(".")
    return Text.assemble((module + dot, "dim"), (last, "bold")) if dot else Text(name, "bold")


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB"


def _label(node: Node) -> Text:
    span = node.first
    attrs = span.attrs
    phase = node.phase
    if phase == "db.query":
        sql = analysis.short_sql(str(attrs.get("sql", "")))
        text = Text.assemble(
            ("SQL ", "cyan"),
            (f"× {node.count} similar: " if node.count > 1 else "", "bold magenta"),
            (sql if len(sql) <= 160 else sql[:159] + "…", ""),
        )
        if attrs.get("source"):
            text.append(f" — {attrs['source'].rpartition('/')[2]}", "dim")
        if node.count == 1 and "rows" in attrs:
            text.append(f" ({attrs['rows']} rows)", "dim")
        return text
    if phase == "middleware":
        short = node.name.rpartition(".")[2]
        # "SessionMiddleware" says what it is; "request_id" would not.
        kind = "" if "middleware" in short.lower() else "middleware "
        text = Text.assemble((kind, "cyan"), (short, "bold"))
        if node.before is not None:
            text.append(f"  before {ms(node.before)[:-3]} · after {ms(node.after or 0)}", "dim")
        return text
    if phase.startswith("middleware."):
        hook = phase.split(".", 1)[1].replace("_", " ")
        return Text.assemble((hook + " ", "cyan"), (node.name.rpartition(".")[2], ""))
    if phase == "url.resolve":
        if attrs.get("resolved") is False:
            return Text.assemble(
                ("URL resolve ", "cyan"), (node.name, ""), (" → no match (404)", "red")
            )
        text = Text.assemble(("URL resolve ", "cyan"), (repr(attrs.get("route", node.name)), ""))
        text.append(f" → {attrs.get('view', '?')}", "dim")
        if attrs.get("url_name"):
            text.append(f" [{attrs['url_name']}]", "dim")
        return text
    if phase == "view":
        text = Text.assemble(("view ", "cyan"), _dotted(node.name))
        if attrs.get("handler"):
            text.append(f".{attrs['handler']}()", "bold")
        return text
    if phase == "template":
        engine = attrs.get("engine", "django")
        text = Text.assemble(("template ", "cyan"), (node.name, "bold"))
        if engine != "django":
            text.append(f" ({engine})", "dim")
    elif phase == "response.stream":
        text = Text.assemble(("response body", "cyan"))
        if "bytes" in attrs:
            chunks = attrs.get("chunks")
            text.append(
                f"  {_size(int(attrs['bytes']))}" + (f" in {chunks} chunks" if chunks else ""),
                "dim",
            )
    elif phase == "response.render":
        text = Text.assemble(("response render ", "cyan"), (node.name, ""))
    elif phase == "response.close":
        text = Text("response close", "cyan")
    elif phase == "exception":
        text = Text.assemble(("exception → response ", "cyan"), (node.name, "bold"))
        if "status" in attrs:
            text.append(f"  {attrs['status']}", "dim")
    elif phase in SERVICE_PHASES:
        text = service_label(node)
    else:
        text = Text.assemble((phase + " ", "cyan"), (node.name, ""))
    if node.count > 1:
        text.append(f"  × {node.count}", "bold magenta")
    return text


def _line(node: Node, whole: int, guide: str) -> Text:
    style = share_style(node.total, whole)
    line = Text.assemble(
        (f"{ms(node.total):>9}", style),
        (f" {ms(node.own):>9}  ", "dim"),
        (guide, "bright_black"),
        _label(node),
        no_wrap=True,
        overflow="ellipsis",
    )
    errors = [s.error for s in node.spans if s.error]
    if errors:
        line.append(
            f"  ✗ {errors[0]['type'].rsplit('.', 1)[-1]}: {errors[0]['message'][:120]}", "bold red"
        )
    return line


def _visible(node: Node, hide_under: int) -> bool:
    return (
        node.total >= hide_under
        or node.phase.startswith(STRUCTURAL)
        or always_shown(node)
        or any(s.error for s in node.spans)
    )


def _lines(nodes: list[Node], whole: int, hide_under: int, prefix: str | None = None) -> list[Text]:
    """One line per visible node; `prefix` is the guide so far (None at the top level)."""
    shown = [n for n in nodes if _visible(n, hide_under)]
    hidden = [n for n in nodes if not _visible(n, hide_under)]
    out: list[Text] = []
    for i, node in enumerate(shown):
        last = i == len(shown) - 1 and not hidden
        if prefix is None:
            out.append(_line(node, whole, ""))
            out += _lines(node.children, whole, hide_under, "")
            continue
        out.append(_line(node, whole, prefix + ("└ " if last else "├ ")))
        out += _lines(node.children, whole, hide_under, prefix + ("  " if last else "│ "))
    if hidden:
        count = sum(n.count for n in hidden)
        out.append(
            Text.assemble(
                (f"{ms(sum(n.total for n in hidden)):>9}{'':>12}", "dim"),
                ((prefix or "") + "└ ", "bright_black"),
                (f"… {plural(count, 'faster span')} under {ms(hide_under)}", "dim"),
                no_wrap=True,
                overflow="ellipsis",
            )
        )
    return out


def headline(trace: Trace) -> Text:
    req = trace.request
    if not req:
        return Text.assemble(("inline work", "bold"), f"  {ms(trace.duration)}")
    status = req.get("status")
    try:
        phrase = HTTPStatus(status).phrase if status else ""
    except ValueError:
        phrase = ""
    status_style = "green" if status and status < 400 else "bold red" if status else "yellow"
    text = Text.assemble(
        (f"{req.get('method', '')} {req.get('path', '')}", "bold"),
        ("?" + req["query"] if req.get("query") else "", "bold"),
        "  →  ",
        (f"{status} {phrase}".strip() if status else "no response", status_style),
        f"  {ms(trace.duration)}",
    )
    if req.get("route") is not None:
        text.append(f"  route '{req['route']}'", "dim")
    if not trace.closed:
        text.append("  (response never closed)", "yellow")
    return text


FIRST_RUN_NOTE = (
    "first request in this process: includes one-time work (URL patterns, template compile,"
    " DB connect); --repeat N shows warm runs"
)


def phase_table(trace: Trace) -> Table:
    table = Table(title="where the time went", title_justify="left", box=None, pad_edge=False)
    table.add_column("phase")
    table.add_column("time", justify="right")
    table.add_column("share", justify="right")
    total = max(trace.duration, 1)
    for name, ns in analysis.breakdown(trace):
        if ns == 0 and name not in ("unaccounted",):
            continue
        table.add_row(name, ms(ns), f"{100 * ns / total:.1f}%", style=share_style(ns, total))
    table.add_row(Text("total", "bold"), Text(ms(trace.duration), "bold"), "100.0%")
    return table


def findings_text(trace: Trace) -> Text | None:
    found = trace.findings if trace.findings is not None else analysis.findings(trace)
    if not found:
        return None
    text = Text()
    for finding in found:
        style = "bold red" if finding["kind"] == "error" else "yellow"
        text.append(f"⚠ {finding['kind']}: ", style)
        text.append(finding["message"])
        if finding.get("fingerprint"):
            text.append(f"  {analysis.short_sql(finding['fingerprint'])[:120]}", "dim")
        if finding["kind"] not in analysis.NOTE_KINDS:
            text.append(f"  ({ms(finding['duration'])})", "dim")
        text.append("\n")
    text.rstrip()
    return text


def summary_text(trace: Trace) -> Text:
    info = analysis.summary(trace)
    where = trace.where
    text = Text.assemble(
        (plural(info["queries"], "query", "queries"), "bold"),
        f" ({ms(info['query_time'])} in the database)  ·  "
        f"{plural(info['templates'], 'template')}  ·  {plural(info['spans'], 'span')}",
    )
    services = service_summary(info)
    if services:
        text.append(f"  ·  {services}")
    if where:
        text.append(
            f"  ·  pid {where.get('pid')} {where.get('thread', '')} {where.get('mode', '')}", "dim"
        )
    if trace.dropped_spans:
        text.append(f"  ·  {plural(trace.dropped_spans, 'span')} dropped (cap reached)", "yellow")
    if trace.tracer_errors:
        text.append(f"  ·  {plural(trace.tracer_errors, 'tracer error')}", "yellow")
    return text


def render_trace(trace: Trace, hide_under_ms: float = DEFAULT_HIDE_UNDER_MS) -> RenderableType:
    """The whole picture of one trace: headline, tree, findings, phase table, counts."""
    whole = max(trace.duration, 1)
    columns = Text(f"{'total':>9} {'self':>9}", "dim")
    lines = _lines(analysis.fold(trace), whole, int(hide_under_ms * 1e6))
    parts: list[RenderableType] = [headline(trace), columns, *lines, Text()]
    found = findings_text(trace)
    if found is not None:
        parts += [found, Text()]
    if analysis.is_light(trace):
        parts.append(Text(LIGHT, "yellow"))
    elif trace.request:
        parts.append(phase_table(trace))
    parts.append(summary_text(trace))
    return Group(*parts)


LIGHT = (
    "A light trace (capture --sample sampled it out): the root span with its timing and CPU "
    "(and under a sync handler its query totals); its phases were not recorded."
)


def print_traces(traces: list[Trace], console: Console | None = None, **options: Any) -> None:
    console = console or tree_console()
    for i, trace in enumerate(traces):
        if i:
            console.print()
        console.print(render_trace(trace, **options))


def reflow_help(text: str | None) -> str | None:
    """Help prose with one line per paragraph: typer's rich help keeps a docstring's single
    line breaks and then wraps to the terminal, so hard-wrapped prose broke twice. A
    paragraph with indented or bulleted lines (examples, lists) keeps its breaks."""
    if not text:
        return text
    out = []
    for paragraph in text.split("\n\n"):
        lines = paragraph.split("\n")
        if any(line.startswith((" ", "\b", "- ", "* ")) for line in lines):
            out.append(paragraph)
        else:
            out.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def flags_read_as_flags(params: Iterable[Any]) -> None:
    """In --help, `--asgi` rather than `--asgi <bool>`: a flag takes no value."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
