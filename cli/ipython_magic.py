"""`%load_ext djtrace`: the `%djtrace` line magic and `%%djtrace` cell magic for IPython
and Jupyter.

    %djtrace client.get("/books/")          trace one statement, show its tree
    %%djtrace                               trace a whole cell
    r1 = client.get("/books/")
    r2 = client.get("/books/fast/")

The tree is shown as rich text in a terminal and as HTML in a notebook (one display, both
forms: the front end picks). A line magic's expression value is returned as usual; the
session (`.requests`, `.queries`, `.show()`) is left in `_djtrace`.
"""

from __future__ import annotations

import io
import shutil
import sys
from typing import Any

from djtrace.cli.render import render_trace
from djtrace.inline import TraceSession, trace
from djtrace.model import Trace
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display
from rich.console import Console

USAGE = '%djtrace STATEMENT (e.g. %djtrace client.get("/books/")) or %%djtrace over a cell'


def _console(record_html: bool) -> Console:
    width = shutil.get_terminal_size((120, 40)).columns
    return Console(
        file=io.StringIO(),
        record=True,
        width=max(80, min(width, 200)),
        force_terminal=not record_html and sys.stdout.isatty(),
        color_system="truecolor" if record_html else "auto",
    )


def bundle(traces: list[Trace]) -> dict[str, str]:
    """The traces as a display bundle: text for a terminal, HTML for a notebook."""
    if not traces:
        message = "djtrace: nothing was traced (no request and no query ran)"
        return {"text/plain": message, "text/html": f"<p>{message}</p>"}
    text = _console(record_html=False)
    html = _console(record_html=True)
    for console in (text, html):
        for i, one in enumerate(traces):
            if i:
                console.print()
            console.print(render_trace(one))
    plain = text.file.getvalue()  # type: ignore[attr-defined]
    fragment = html.export_html(
        inline_styles=True,
        code_format='<pre class="djtrace" style="font-family:Menlo,Consolas,monospace;'
        'font-size:12px;line-height:1.3">{code}</pre>',
    )
    return {"text/plain": plain.rstrip("\n"), "text/html": fragment}


def _django_ready() -> None:
    from django.conf import settings

    if not settings.configured:
        raise UsageError(
            "djtrace: Django is not set up here; use `python manage.py shell`, or run "
            "os.environ['DJANGO_SETTINGS_MODULE'] = '...'; django.setup() first"
        )


@magics_class
class DjtraceMagics(Magics):
    @line_cell_magic
    def djtrace(self, line: str, cell: str | None = None) -> Any:
        """Trace the statement (line) or the cell: its requests and queries, as a tree."""
        code = cell if cell is not None else line
        if not code.strip():
            raise UsageError(USAGE)
        _django_ready()
        namespace = self.shell.user_ns
        value = None
        session: TraceSession
        # Named as IPython names a cell, so a query's source line is `In [3]:1`.
        name = f"<ipython-input-{self._cell_number()}-djtrace>"
        with trace() as session:
            if cell is None:
                try:
                    compiled = compile(line, name, "eval")
                except SyntaxError:
                    exec(compile(line, name, "exec"), namespace)
                else:
                    value = eval(compiled, namespace)
            else:  # the cell's lines as the user numbers them: `%%djtrace` is line 1
                exec(compile("\n" + cell, name, "exec"), namespace)
        namespace["_djtrace"] = session
        display(bundle(session.traces), raw=True)
        return value

    def _cell_number(self) -> int:
        """The In [N] of the cell running this magic: the nearest IPython cell frame's (a
        terminal or InteractiveShell names them `<ipython-input-N-…>`), else the count
        IPython has already moved on by one (a kernel's cells are files)."""
        frame = sys._getframe(1)
        for _ in range(30):
            if frame is None:
                break
            name = frame.f_code.co_filename
            if name.startswith("<ipython-input-"):
                number = name[15:].split("-")[0]
                if number.isdigit():
                    return int(number)
            frame = frame.f_back
        return max(1, int(self.shell.execution_count) - 1)


def load_ipython_extension(ipython: Any) -> None:
    """Called by `%load_ext djtrace`."""
    ipython.register_magics(DjtraceMagics)
