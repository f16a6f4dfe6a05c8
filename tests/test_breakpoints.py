"""Breakpoints on events, driven as a user drives them: the real `djtrace request` (and an
inline `trace(break_on=...)` script) in a pseudo-terminal, answering a real pdb prompt."""

from __future__ import annotations

import os
import re
import sys
import textwrap
import time
from pathlib import Path

import pexpect
import pytest
from djtrace.breakpoints import BreakpointError, parse

from tests.conftest import ROOT

VIEWS = ROOT / "sample_site" / "bookstore" / "views.py"
PROMPT = r"\(Pdb\) "
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _line_of(text: str, path: Path = VIEWS) -> int:
    """The line of `path` holding `text` (first match), so no line number is hard-coded."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return number
    raise AssertionError(f"{text!r} not in {path}")


class Session:
    """A command in a pseudo-terminal, its output kept as plain text."""

    def __init__(self, args: list[str]) -> None:
        env = {**os.environ, "NO_COLOR": "1", "TERM": "xterm", "COLUMNS": "200"}
        env.pop("PYTHONBREAKPOINT", None)
        self.child = pexpect.spawn(
            sys.executable,
            args,
            env=env,
            cwd=str(ROOT),
            encoding="utf-8",
            timeout=90,
            dimensions=(60, 200),
        )

    @property
    def seen(self) -> str:
        return ANSI.sub("", self.child.before or "").replace("\r\n", "\n")

    def prompt(self) -> str:
        """Wait for pdb's prompt; what was printed before it."""
        self.child.expect(PROMPT)
        return self.seen

    def ask(self, command: str) -> str:
        """Send a pdb command; what it printed up to the next prompt."""
        self.child.sendline(command)
        self.child.expect(PROMPT)
        return self.seen.split("\n", 1)[1] if "\n" in self.seen else ""

    def finish(self, command: str = "continue") -> str:
        """Send the last command; all output up to the end; the exit status must be 0."""
        self.child.sendline(command)
        self.child.expect(pexpect.EOF)
        self.child.close()
        assert self.child.exitstatus == 0, self.seen
        return self.seen


def djtrace_request(*args: str) -> Session:
    return Session(["-m", "djtrace.cli", "request", *args])


def test_n_plus_one_stops_on_the_views_query_line_with_the_tree_so_far(djtrace):
    session = djtrace_request("/books/", "--break-on", "n+1")
    before = session.prompt()
    line = _line_of("book.author.name")
    assert "djtrace: break on n+1 (1st match): N+1: 3 similar queries" in before
    assert f"views.py:{line} in book_list, thread MainThread" in before
    # The tree so far: the request is in its view, the third author query has run.
    assert "GET /books/  →  no response" in before
    assert "SQL × 3 similar: SELECT … FROM bookstore_author" in before
    assert f"views.py({line})book_list()" in before  # pdb's own frame line
    assert session.ask("p len(rows)").strip() == "2"  # the loop's third book
    assert "SQL × 3 similar" in session.ask("djtrace_tree()")
    stepped = session.ask("next")
    assert "book_list()" in stepped  # stepping stays in the user's view
    after = session.finish()
    # `continue` let the request finish as it would have without a breakpoint.
    plain = djtrace("request", "/books/")
    assert plain.returncode == 0
    assert "GET /books/  →  200 OK" in after
    queries = re.search(r"\n(\d+ queries) \(", plain.stdout)
    assert queries and queries.group(1) in after
    assert "break on" not in after  # one stop only


def test_nth_stops_at_that_match_only(djtrace):
    session = djtrace_request("/books/", "--break-on", "sql~/bookstore_author/", "--nth", "5")
    before = session.prompt()
    assert "djtrace: break on sql~/bookstore_author/ (5th match): query SELECT" in before
    assert session.ask("p len(rows)").strip() == "4"
    after = session.finish()
    assert "djtrace: break on" not in after
    assert "GET /books/  →  200 OK" in after


def test_under_asgi_it_stops_in_the_thread_that_ran_the_query():
    session = djtrace_request("/books/", "--asgi", "--break-on", "sql~/bookstore_author/")
    before = session.prompt()
    thread = re.search(r"in book_list, thread (\S+)", before)
    assert thread, before
    assert thread.group(1) != "MainThread"  # sync views run in asgiref's thread under ASGI
    here = session.ask("p __import__('threading').current_thread().name")
    assert here.strip() == repr(thread.group(1))
    assert session.ask("p len(rows)").strip() == "0"
    assert "GET /books/  →  200 OK" in session.finish()


def test_a_view_time_limit_stops_inside_the_running_view():
    session = djtrace_request("/books/", "--break-on", "view>0ms")
    before = session.prompt()
    assert "djtrace: break on view>0ms (1st match): view" in before
    assert "still running after" in before
    assert "in book_list, thread MainThread" in before
    assert "GET /books/  →  200 OK" in session.finish()


def test_inline_trace_stops_on_a_cache_miss_in_the_users_code(tmp_path):
    script = tmp_path / "shell_session.py"
    script.write_text(
        textwrap.dedent(
            """
            import django
            django.setup()
            from django.core.cache import cache
            from django.test import Client
            from djtrace import trace

            cache.clear()
            with trace(break_on="cache.miss~/count/") as t:
                status = Client().get("/cached/").status_code
            print("done", status, len(t.requests), t.requests[0].request["path"])
            """
        )
    )
    session = Session([str(script)])
    before = session.prompt()
    line = _line_of("cache.get(COUNT_KEY)")
    assert "break on cache.miss~/count/ (1st match): cache get 'bookstore:count' miss" in before
    assert f"views.py:{line} in cached" in before
    assert session.ask("p request.path").strip() == "'/cached/'"
    assert "done 200 1 /cached/" in session.finish()


def test_without_a_terminal_it_refuses_instead_of_waiting(djtrace):
    result = djtrace("request", "/books/", "--break-on", "n+1")
    assert result.returncode == 2
    assert "needs an interactive terminal" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("sql~/(/", "bad regular expression"),
        ("view>fast", "is not a breakpoint; use one of: sql~/REGEX/"),
    ],
)
def test_a_bad_breakpoint_is_a_one_line_error(djtrace, spec, message):
    with pytest.raises(BreakpointError, match=re.escape(message)):
        parse(spec)
    result = djtrace("request", "/books/", "--break-on", spec)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_breakpoints_parse_their_forms():
    assert parse("n+1").event == "n+1"
    slow = parse("sql>2.5ms")
    assert (slow.event, slow.limit_ns) == ("sql", 2_500_000)
    miss = parse("cache.miss~/^session/i")
    assert (miss.event, miss.outcome) == ("cache", "miss")
    assert miss.pattern is not None and miss.pattern.search("SESSION:abc")
    assert parse("view > 1s").limit_ns == 1_000_000_000


def test_replay_stops_in_the_replayed_request_not_the_warm_up(djtrace, tmp_path):
    recorded = djtrace("request", "/books/", "--format", "json")
    assert recorded.returncode == 0, recorded.stderr
    saved = tmp_path / "books.json"
    saved.write_text(recorded.stdout)
    session = Session(["-m", "djtrace.cli", "replay", str(saved), "--break-on", "n+1"])
    before = session.prompt()
    assert before.count("djtrace: break on n+1 (1st match)") == 1
    assert "in book_list, thread MainThread" in before
    after = session.finish()
    assert "GET /books/  →  200 OK" in after
    assert "break on" not in after


def test_an_async_view_stops_in_its_coroutine_on_the_event_loops_thread():
    session = djtrace_request("/async/", "--asgi", "--break-on", "view>0ms")
    before = session.prompt()
    assert "djtrace: break on view>0ms (1st match): view async_books still running" in before
    assert "in async_books, thread MainThread" in before  # asyncio.run's loop: the main thread
    assert session.ask("p request.path").strip() == "'/async/'"
    assert "GET /async/  →  200 OK" in session.finish()


def test_capture_stops_in_the_single_threaded_servers_process(tmp_path):
    import threading
    import urllib.request

    from tests.capture_support import free_port

    port = free_port()
    server = [sys.executable, "sample_site/manage.py", "runserver", "--noreload", "--nothreading"]
    store = str(tmp_path / "store.sqlite3")
    args = ["-m", "djtrace.cli", "capture", "--store", store, "--break-on", "n+1", "--"]
    session = Session([*args, *server, f"127.0.0.1:{port}"])
    session.child.expect("Quit the server with")
    answered: dict[str, int] = {}

    def fetch() -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/books/", timeout=60) as response:
            answered["status"] = response.status

    client = threading.Thread(target=fetch)
    client.start()
    before = session.prompt()
    assert "djtrace: break on n+1 (1st match)" in before
    assert "in book_list, thread MainThread" in before
    assert session.ask("p len(rows)").strip() == "2"
    session.child.sendline("continue")
    session.child.expect('"GET /books/ HTTP/1.1" 200')  # the server logged the answer
    client.join(30)
    assert answered == {"status": 200}
    # Ctrl-C: the server stops, as it would have. Not while runserver is still writing its
    # log line: a KeyboardInterrupt there is taken as the request's error and serving goes on.
    time.sleep(1)
    session.child.sendintr()
    session.child.expect("1 request recorded")
    session.child.expect(pexpect.EOF)


def test_a_slow_query_limit_stops_after_that_query():
    session = djtrace_request("/books/", "--break-on", "sql>0ms", "--nth", "2")
    before = session.prompt()
    assert re.search(r"break on sql>0ms \(2nd match\): query \([\d.]+ ms\) SELECT", before)
    assert session.ask("p len(rows)").strip() == "0"  # the first author lookup of the loop
    assert "GET /books/  →  200 OK" in session.finish()
