"""The %djtrace magic in a real IPython InteractiveShell, as `%load_ext djtrace` loads it."""

from __future__ import annotations

import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output


@pytest.fixture(scope="module")
def shell() -> InteractiveShell:
    ipython = InteractiveShell.instance()
    ipython.run_line_magic("load_ext", "djtrace")
    ipython.run_cell("from django.test import Client; client = Client()")
    return ipython


def _shown(shell: InteractiveShell, source: str) -> tuple[dict[str, str], object]:
    with capture_output() as captured:
        result = shell.run_cell(source)
    result.raise_error()
    assert len(captured.outputs) == 1, captured.outputs
    return captured.outputs[0].data, result.result


def test_the_line_magic_shows_the_tree_and_returns_the_statements_value(shell):
    data, value = _shown(shell, '%djtrace client.get("/books/")')
    assert value.status_code == 200  # the response, as without the magic
    text = data["text/plain"]
    assert "GET /books/  →  200 OK" in text
    assert "⚠ n+1:" in text  # the findings come with the tree
    session = shell.user_ns["_djtrace"]
    assert [t.request["path"] for t in session.requests] == ["/books/"]


def test_a_notebook_gets_the_same_tree_as_html(shell):
    data, _ = _shown(shell, '%djtrace client.get("/books/fast/")')
    html = data["text/html"]
    assert html.startswith('<pre class="djtrace"')
    assert "GET /books/fast/" in html and "200 OK" in html
    assert "style=" in html and "<span" in html  # rich's colours, inline
    assert "where the time went" in html


def test_the_cell_magic_traces_every_request_of_the_cell(shell):
    data, _ = _shown(
        shell,
        '%%djtrace\nfirst = client.get("/books/fast/")\nsecond = client.get("/api/books/")\n',
    )
    assert shell.user_ns["first"].status_code == 200
    text = data["text/plain"]
    assert text.index("GET /books/fast/") < text.index("GET /api/books/")


def test_an_empty_magic_says_how_to_use_it(shell):
    with capture_output() as captured:
        shell.run_cell("%djtrace")
    said = captured.stderr + captured.stdout
    assert "UsageError: %djtrace STATEMENT" in said
    assert "Traceback" not in said


def test_queries_the_statement_ran_point_at_its_cell(shell):
    """ORM work typed at the prompt is the cell's own: its source was the frame that
    called the shell (`manage.py:10` in `python manage.py shell`)."""
    shell.run_cell("from djtrace.sample_site.bookstore.models import Book")
    count = shell.execution_count
    data, _ = _shown(shell, "%djtrace [b.author.name for b in Book.objects.all()[:3]]")
    queries = shell.user_ns["_djtrace"].queries
    assert len(queries) == 4
    assert {q.attrs["source"] for q in queries} == {f"In [{count}]:1"}
    assert f"n+1: 3 similar queries from In [{count}]:1" in data["text/plain"]
    cell = "%%djtrace\nbooks = list(Book.objects.all()[:2])\nn = Book.objects.count()"
    _shown(shell, cell)
    sources = [q.attrs["source"] for q in shell.user_ns["_djtrace"].queries]
    assert sources == [f"In [{count}]:2", f"In [{count}]:3"]  # the lines as typed
    # As a terminal runs a cell (its history kept, the count moved on before it runs).
    with capture_output():
        result = shell.run_cell("%djtrace Book.objects.count()", store_history=True)
    result.raise_error()
    (query,) = shell.user_ns["_djtrace"].queries
    assert query.attrs["source"] == f"In [{result.execution_count}]:1"
