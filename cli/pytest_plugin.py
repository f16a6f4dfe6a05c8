"""djtrace's pytest plugin: trace the requests a test makes, hold them to budgets.

Registered by the `pytest11` entry point, so it is on wherever djtrace is installed and
`-p no:djtrace` turns it off. It must be harmless everywhere, Django or not: importing it
imports only pytest, and a test is traced only when Django is already configured (by
pytest-django, or a conftest's django.setup()) and something asked for it:

    the `djtrace` fixture            the inline session (`djtrace.queries`, `.show()`…)
    @pytest.mark.djtrace(...)         budgets: max_queries, max_duplicates, no_n_plus_one,
                                      no_queries_in_templates, max_templates,
                                      max_cache_misses; view_ms, sql_ms, total_ms (times)
    --djtrace                         the request trees of every failing test
    --djtrace-slowest N               the session's slowest requests and worst findings
    --djtrace-record                  write each test's query shapes to a baseline file
    --djtrace-capture                 keep every test request's trace in the trace store
    a baseline file next to the test  fail on a new query shape or N+1 against it
"""

from __future__ import annotations

import sys
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from djtrace.budgets import Budget
    from djtrace.inline import TraceSession
    from djtrace.model import Trace


@dataclass
class _Run:
    """What the plugin keeps for one pytest session."""

    tree_on_failure: bool
    slowest: int
    record: bool
    enforce_time: bool
    capture: Path | None
    requests: list[tuple[Trace, str]] = field(default_factory=list)
    time_rows: list[Any] = field(default_factory=list)
    recorded: dict[Path, dict[str, Any]] = field(default_factory=dict)
    baselines: dict[Path, dict[str, Any]] = field(default_factory=dict)
    store: Any = None
    sessions: dict[str, TraceSession] = field(default_factory=dict)  # by nodeid, until judged
    active: set[str] = field(default_factory=set)  # nodeids whose session is entered

    @property
    def trace_every_test(self) -> bool:
        return bool(self.slowest or self.record or self.capture is not None)


# Kept off pytest's own objects' stash (pytest 7+) and hooks are plain or old-style
# wrappers, so that loading the plugin never breaks an older pytest of a user's project.
_runs: weakref.WeakKeyDictionary[pytest.Config, _Run] = weakref.WeakKeyDictionary()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("djtrace", "djtrace: trace the Django requests your tests make")
    group.addoption(
        "--djtrace",
        action="store_true",
        help="print the request trees (timings, queries, findings) of every failing test",
    )
    group.addoption(
        "--djtrace-slowest",
        type=int,
        default=0,
        metavar="N",
        help="after the run, list the N slowest requests and the N worst findings",
    )
    group.addoption(
        "--djtrace-record",
        action="store_true",
        help="write each traced test's query shapes, templates and cache operations to "
        "<test file>.djtrace.json next to it; later runs fail on a new query shape or N+1",
    )
    group.addoption(
        "--djtrace-enforce-time",
        action="store_true",
        help="fail tests over their view_ms/sql_ms/total_ms budgets (by default only reported)",
    )
    group.addoption(
        "--djtrace-capture",
        action="store_true",
        help="keep every test request's trace in the trace store (djtrace list/show/diff)",
    )
    group.addoption(
        "--djtrace-store",
        metavar="PATH",
        default=None,
        help="the trace store for --djtrace-capture (default: $DJTRACE_STORE, else "
        ".djtrace/traces.sqlite3)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "djtrace(**budget): trace this test's requests and fail when they break the budget: "
        "max_queries, max_duplicates, no_n_plus_one, no_queries_in_templates, max_templates, "
        "max_cache_misses; view_ms, sql_ms, total_ms (reported; enforced with "
        "--djtrace-enforce-time)",
    )
    store = config.getoption("--djtrace-store")
    capture = config.getoption("--djtrace-capture")
    if store and not capture:
        raise pytest.UsageError("--djtrace-store names the store for --djtrace-capture")
    if config.getoption("--djtrace-slowest") < 0:
        raise pytest.UsageError("--djtrace-slowest takes a number of requests >= 0")
    capture_path = None
    if capture:
        from djtrace.exporters.store import default_path

        capture_path = Path(store).expanduser() if store else default_path()
    _runs[config] = _Run(
        tree_on_failure=config.getoption("--djtrace"),
        slowest=config.getoption("--djtrace-slowest"),
        record=config.getoption("--djtrace-record"),
        enforce_time=config.getoption("--djtrace-enforce-time"),
        capture=capture_path,
    )


def _django_ready() -> bool:
    """Django configured by someone else; never imported or configured here."""
    conf = sys.modules.get("django.conf")
    return conf is not None and conf.settings.configured


def _session(item: pytest.Item) -> TraceSession:
    """The item's session, made but not yet entered: the call hook enters it, so what
    fixtures do first (pytest-django building the test database) is not traced."""
    run = _runs[item.config]
    session = run.sessions.get(item.nodeid)
    if session is None:
        if not _django_ready():
            pytest.fail(
                "djtrace needs Django configured before tests run: use pytest-django "
                "(DJANGO_SETTINGS_MODULE or --ds) or call django.setup() in conftest.py",
                pytrace=False,
            )
        from djtrace.inline import trace

        session = run.sessions[item.nodeid] = trace()
    return session


@pytest.fixture(name="djtrace")
def djtrace_session(request: pytest.FixtureRequest) -> TraceSession:
    """This test's requests and ORM work, traced while the test runs (`djtrace.requests`,
    `.queries`, `.show()`); budgets from a `djtrace` marker apply to them."""
    return _session(request.node)  # type: ignore[arg-type]


def _finish(item: pytest.Item, session: TraceSession) -> list[Trace]:
    session.__exit__(None, None, None)
    from djtrace.budgets import judged

    traces = judged(session.requests, session.bare)
    for trace in session.requests:
        trace.where["test"] = item.nodeid
    return traces


def _test_key(item: pytest.Item) -> str:
    return item.nodeid.split("::", 1)[1] if "::" in item.nodeid else item.name


def _baseline_entry(run: _Run, item: pytest.Item) -> tuple[Path, list[Any] | None]:
    from djtrace.budgets import baseline_path, load_baseline

    path = baseline_path(Path(str(item.path)))
    if path not in run.baselines:
        try:
            run.baselines[path] = load_baseline(path)
        except ValueError as exc:
            pytest.fail(str(exc), pytrace=False)
    return path, run.baselines[path].get(_test_key(item))


def _budget(item: pytest.Item) -> Budget | None:
    marker = item.get_closest_marker("djtrace")
    if marker is None:
        return None
    from djtrace.budgets import Budget

    if marker.args:
        pytest.fail("the djtrace marker takes keyword budgets only", pytrace=False)
    try:
        return Budget.from_marker(dict(marker.kwargs))
    except ValueError as exc:
        pytest.fail(str(exc), pytrace=False)


def _wanted(run: _Run, item: pytest.Item) -> bool:
    if item.get_closest_marker("djtrace") is not None or item.nodeid in run.sessions:
        return True
    if not _django_ready():
        return False  # a project without Django: the plugin does nothing
    if run.trace_every_test or run.tree_on_failure:
        return True
    return _baseline_entry(run, item)[1] is not None


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """Start tracing right before the test body (after its fixtures' setup)."""
    run = _runs[item.config]
    if not _wanted(run, item):
        return
    _budget(item)  # a bad marker fails here, before the test runs
    session = _session(item)
    session.__enter__()
    run.active.add(item.nodeid)


def _collect(run: _Run, item: pytest.Item, traces: list[Trace]) -> list[str]:
    """Keep what the run asked for; the problems doing so (a store that cannot be used)."""
    requests = [t for t in traces if t.request]
    if run.slowest:
        from djtrace.analysis import findings

        for trace in requests:
            trace.findings = findings(trace)
            run.requests.append((trace, item.nodeid))
    if run.capture is not None and requests:
        from djtrace.exporters.store import StoreError, TraceStore

        try:
            if run.store is None:
                run.store = TraceStore.open(run.capture, create=not run.capture.exists())
            run.store.add(requests)
        except StoreError as exc:
            return [f"djtrace: --djtrace-capture: {exc}"]
    if run.record and traces:
        from djtrace.budgets import baseline_path, shape

        path = baseline_path(Path(str(item.path)))
        run.recorded.setdefault(path, {})[_test_key(item)] = shape(traces)
    return []


def _width(item: pytest.Item) -> int:
    try:
        return max(120, min(item.config.get_terminal_writer().fullwidth, 160))
    except Exception:
        return 120


def _judge(run: _Run, item: pytest.Item, budget: Budget | None, traces: list[Trace]) -> str | None:
    """Why the test fails its budgets or its baseline (with the trees), or None."""
    from djtrace.cli.pytest_report import TimeRow, budget_table, traces_text

    lines: list[str] = []
    shown: list[Trace] = []
    if budget is not None and not traces:
        warnings.warn(
            pytest.PytestWarning(
                f"{item.nodeid}: djtrace traced no request and no query, so its budgets held "
                "trivially (requests made in another thread are not traced)"
            ),
            stacklevel=1,
        )
    if budget is not None:
        from djtrace.budgets import count_violations, time_checks

        for violation in count_violations(budget, traces):
            lines.append(f"djtrace budget broken: {violation.message}")
            for finding in violation.findings:
                lines.append(f"    {finding['kind']}: {finding['message']}")
            if violation.trace is not None and violation.trace not in shown:
                shown.append(violation.trace)
        rows = [
            TimeRow(item.nodeid, c.phase, c.budget, c.measured, run.enforce_time)
            for c in time_checks(budget, traces)
        ]
        run.time_rows += rows
        if run.enforce_time and any(r.over for r in rows):
            lines.append("djtrace time budget broken (--djtrace-enforce-time):")
            lines.append(budget_table([r for r in rows if r.over], _width(item)).rstrip())
            shown += [t for t in traces if t not in shown]
    if not run.record:
        _, recorded = _baseline_entry(run, item)
        if recorded is not None:
            from djtrace.budgets import compare, shape

            problems, diff = compare(recorded, shape(traces))
            if problems:
                path, _ = _baseline_entry(run, item)
                lines.append(f"djtrace baseline broken ({path.name}; --djtrace-record to accept):")
                lines += [f"    {p}" for p in problems]
                lines.append(diff)
                shown += [t for t in traces if t not in shown and t.request]
    if not lines:
        return None
    if shown:
        # Every span, however fast: the offending queries are the evidence.
        lines += ["", traces_text(shown, _width(item), hide_under_ms=0)]
    return "\n".join(lines)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:
    """After the test body: stop tracing, keep what was asked for, and fail a test that
    passed but broke its budgets or its baseline."""
    outcome = yield
    if call.when != "call":
        return
    run = _runs.get(item.config)
    if run is None or item.nodeid not in run.active:
        return
    run.active.discard(item.nodeid)
    session = run.sessions.pop(item.nodeid)
    traces = _finish(item, session)
    report = outcome.get_result()
    problems = _collect(run, item, traces)
    if report.passed:
        budget = _budget_or_none(item)
        verdict = _judge(run, item, budget, traces)
        problems += [verdict] if verdict else []
        if problems:
            report.outcome = "failed"
            report.longrepr = "\n".join(problems)
    elif report.failed and run.tree_on_failure and traces:
        from djtrace.cli.pytest_report import traces_text

        report.sections.append(("djtrace: this test's requests", traces_text(traces)))


def _budget_or_none(item: pytest.Item) -> Budget | None:
    try:
        return _budget(item)
    except BaseException:  # already reported when the test started
        return None


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """A test whose call phase never reported (interrupted): stop tracing all the same."""
    run = _runs.get(item.config)
    if run is not None and item.nodeid in run.active:
        run.active.discard(item.nodeid)
        run.sessions.pop(item.nodeid).__exit__(None, None, None)
    elif run is not None:
        run.sessions.pop(item.nodeid, None)  # a fixture's session the test never entered


def pytest_sessionfinish(session: pytest.Session) -> None:
    run = _runs.get(session.config)
    if run is None:
        return
    if run.recorded:
        from djtrace.budgets import load_baseline, save_baseline

        for path, tests in run.recorded.items():
            try:
                kept = load_baseline(path)
            except ValueError:
                kept = {}  # recording replaces a baseline it cannot read
            save_baseline(path, {**kept, **tests})
    if run.store is not None:
        run.store.close()
        run.store = None


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    run = _runs.get(config)
    if run is None:
        return
    try:
        width = max(120, min(terminalreporter._tw.fullwidth, 160))
    except AttributeError:
        width = 120
    if run.time_rows or run.slowest or run.recorded or run.capture is not None:
        terminalreporter.section("djtrace")
    if run.time_rows:
        from djtrace.cli.pytest_report import budget_table

        terminalreporter.write(budget_table(run.time_rows, width))
    if run.slowest:
        from djtrace.cli.pytest_report import slowest_text

        if run.requests:
            terminalreporter.write(slowest_text(run.requests, run.slowest, width))
        else:
            terminalreporter.write_line("djtrace: no requests were traced")
    for path, tests in run.recorded.items():
        terminalreporter.write_line(f"djtrace: recorded {len(tests)} test(s) in {path}")
    if run.capture is not None:
        terminalreporter.write_line(
            f"djtrace: test requests kept in {run.capture} (djtrace list --store {run.capture})"
        )
