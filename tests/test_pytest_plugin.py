"""djtrace's pytest plugin, run the way a user runs it: a real pytest (pytester, in a child
process) over a small test suite of sample_site, with pytest-django and pytest-asyncio."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.conftest import run_djtrace

pytest_plugins = ["pytester"]

# What the users' suites share: pytest-django on sample_site, a few books by different authors.
CONFTEST = """
import pytest

@pytest.fixture
def books(db):
    import datetime
    from djtrace.sample_site.bookstore.models import Author, Book, Publisher

    press = Publisher.objects.create(name="Press")
    for n in range(4):
        author = Author.objects.create(name=f"Author {n}")
        Book.objects.create(
            title=f"Book {n}", author=author, publisher=press, price=10,
            published=datetime.date(2020, 1, n + 1),
        )
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(
        """
        [pytest]
        DJANGO_SETTINGS_MODULE = djtrace.sample_site.settings
        asyncio_default_fixture_loop_scope = function
        """
    )
    return pytester


def run(suite: pytest.Pytester, *args: str) -> pytest.RunResult:
    return suite.runpytest_subprocess("-p", "no:cacheprovider", "-p", "django", *args)


def test_budgets_pass_and_fail_with_the_tree_and_the_n_plus_one_source_line(suite):
    suite.makepyfile(
        test_books="""
        import pytest

        @pytest.mark.djtrace(max_queries=3, no_n_plus_one=True, max_duplicates=0)
        def test_fast_list(client, books):
            assert client.get("/books/fast/").status_code == 200

        @pytest.mark.djtrace(no_n_plus_one=True)
        def test_slow_list(client, books):
            assert client.get("/books/").status_code == 200

        @pytest.mark.djtrace(max_queries=1)
        def test_too_many_queries(client, books):
            client.get("/books/fast/")
            client.get("/books/fast/")
        """
    )
    result = run(suite)
    result.assert_outcomes(passed=1, failed=2)
    out = result.stdout.str()
    assert "djtrace budget broken: an N+1 pattern" in out
    # The finding names the view's line that ran the query in a loop, and the tree is shown.
    assert "n+1: 4 similar queries from" in out and "bookstore/views.py:" in out
    assert "GET /books/  →  200 OK" in out
    assert "SQL × 4 similar" in out
    assert "djtrace budget broken: 2 queries, budget max_queries=1" in out


def test_plain_django_test_cases_and_async_tests_are_held_to_budgets(suite):
    suite.makepyfile(
        test_kinds="""
        import pytest
        from django.test import TestCase

        class BookPages(TestCase):
            @pytest.mark.djtrace(max_queries=0)
            def test_list(self):
                self.client.get("/books/fast/")

        @pytest.mark.asyncio
        @pytest.mark.django_db(transaction=True)
        @pytest.mark.djtrace(max_queries=0)
        async def test_async_view(async_client, books):
            response = await async_client.get("/async/")
            assert response.status_code == 200
        """
    )
    result = run(suite)
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    # Each test's own request was traced and counted: sync in a TestCase, async in a task.
    result.stdout.fnmatch_lines(
        [
            "*_ BookPages.test_list _*",
            "djtrace budget broken: 1 query, budget max_queries=0",
            "GET /books/fast/  →  200 OK*",
            "*_ test_async_view _*",
            "djtrace budget broken: 2 queries, budget max_queries=0",
        ]
    )
    assert "GET /async/  →  200 OK" in out


def test_the_fixture_coexists_with_pytest_djangos_query_assertions(suite):
    suite.makepyfile(
        test_fixture="""
        def test_counts_agree(client, books, djtrace, django_assert_num_queries):
            with django_assert_num_queries(5):
                client.get("/books/")
            assert [r.request["path"] for r in djtrace.requests] == ["/books/"]
            assert len(djtrace.requests[0].queries) == 5
        """
    )
    run(suite).assert_outcomes(passed=1)


def test_time_budgets_are_reported_and_only_enforced_when_asked(suite):
    suite.makepyfile(
        test_timed="""
        import pytest

        @pytest.mark.djtrace(view_ms=0.0001, total_ms=60000)
        def test_list(client, books):
            client.get("/books/fast/")
        """
    )
    reported = run(suite)
    reported.assert_outcomes(passed=1)
    reported.stdout.fnmatch_lines(
        [
            "*djtrace time budgets*",
            "*test_timed.py::test_list*view*0.0001 ms*over (not enforced)*",
            "*test_timed.py::test_list*total*60000 ms*ok*",
        ]
    )
    enforced = run(suite, "--djtrace-enforce-time")
    enforced.assert_outcomes(failed=1)
    enforced.stdout.fnmatch_lines(["*djtrace time budget broken*", "*view*OVER*"])


def test_a_recorded_baseline_fails_a_new_query_shape_and_shows_the_diff(suite):
    suite.makepyfile(test_shapes=_view_test("/books/fast/"))
    recorded = run(suite, "--djtrace-record")
    recorded.assert_outcomes(passed=1)
    baseline = json.loads((suite.path / "test_shapes.djtrace.json").read_text())
    (shapes,) = baseline["tests"]["test_list"]
    assert shapes["request"] == "GET /books/fast/"
    assert any(q.startswith("view | SELECT") and "INNER JOIN" in q for q in shapes["queries"])
    assert "bookstore/book_list.html" in shapes["templates"]

    run(suite).assert_outcomes(passed=1)  # the same shapes: still green

    suite.makepyfile(test_shapes=_view_test("/books/"))  # the N+1 version of the page
    changed = run(suite)
    changed.assert_outcomes(failed=1)
    out = changed.stdout.str()
    assert "djtrace baseline broken (test_shapes.djtrace.json; --djtrace-record to accept)" in out
    assert "new query shape: view | SELECT" in out
    assert "new N+1:" in out
    assert "--- recorded baseline" in out and "+++ this run" in out
    assert "+request GET /books/" in out


def _view_test(path: str) -> str:
    return textwrap.dedent(
        f"""
        def test_list(client, books):
            assert client.get("{path}").status_code == 200
        """
    )


def test_failing_tests_show_their_requests_and_the_session_lists_the_slowest(suite, tmp_path):
    suite.makepyfile(
        test_report="""
        def test_fails_after_a_request(client, books):
            client.get("/books/")
            assert False, "the page was wrong"

        def test_passes(client, books):
            client.get("/books/fast/")
        """
    )
    store = tmp_path / "tests.sqlite3"
    result = run(
        suite,
        "--djtrace",
        "--djtrace-slowest",
        "2",
        "--djtrace-capture",
        f"--djtrace-store={store}",
    )
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "djtrace: this test's requests" in out
    assert "the page was wrong" in out
    assert out.count("GET /books/  →  200 OK") == 1  # only the failing test's tree
    result.stdout.fnmatch_lines(
        [
            "*djtrace: the 2 slowest requests*",
            "*worst findings*",
            "*n+1: 4 similar queries*test_report.py::test_fails_after_a_request*",
        ]
    )
    from djtrace.exporters.store import TraceStore

    with TraceStore.open(store) as kept:
        paths = sorted(s.path for s in kept.summaries())
        assert paths == ["/books/", "/books/fast/"]
    listed = run_djtrace("list", "--store", str(store))  # the CLI reads a test run's store
    assert listed.returncode == 0, listed.stderr
    assert "/books/fast/" in listed.stdout


def test_bad_budgets_and_a_missing_django_are_one_line_failures(pytester):
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.djtrace(max_queries=-1)
        def test_negative():
            pass

        @pytest.mark.djtrace(max_querys=1)
        def test_typo():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:django")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "djtrace budget max_queries takes a number >= 0, not -1" in out
    assert "unknown djtrace budget max_querys" in out
    assert "Traceback" not in out


def test_the_plugin_leaves_a_suite_without_django_alone(pytester):
    pytester.makepyfile(test_plain="def test_one():\n    assert 1 + 1 == 2\n")
    args = ("-p", "no:cacheprovider", "-p", "no:django", "--djtrace", "--djtrace-slowest=3")
    result = pytester.runpytest_subprocess(*args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*djtrace: no requests were traced*"])
    # And `-p no:djtrace` turns it off altogether.
    off = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:djtrace", "--djtrace")
    assert off.ret == pytest.ExitCode.USAGE_ERROR


def test_plain_pytest_with_django_set_up_in_conftest_works_too(pytester):
    # No pytest-django: the project calls django.setup() itself and uses Django's own
    # SimpleTestCase against the (seeded) sample database.
    pytester.makeconftest("import django\n\ndjango.setup()\n")
    pytester.makepyfile(
        test_unittest="""
        import pytest
        from django.test import SimpleTestCase

        class Pages(SimpleTestCase):
            databases = {"default"}

            @pytest.mark.djtrace(max_queries=1)
            def test_fast(self):
                self.client.get("/books/fast/")

            @pytest.mark.djtrace(no_n_plus_one=True)
            def test_slow(self):
                self.client.get("/books/")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:django")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*_ Pages.test_slow _*", "djtrace budget broken: an N+1 pattern"])


def test_loading_the_plugin_imports_neither_django_nor_rich():
    import subprocess
    import sys

    code = (
        "import sys, djtrace.cli.pytest_plugin\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('django', 'rich', 'typer', 'IPython', 'opentelemetry')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
