"""Database connections on the real PostgreSQL: pool checkout, open/close per request, reuse.

Each case runs the real `djtrace request` on sample_site with DJTRACE_SAMPLE_DB=postgres,
in this module's own database.
"""

from __future__ import annotations

from collections.abc import Iterator

import django
import pytest
from djtrace import Trace

from tests.conftest import run_djtrace
from tests.services import inside, jsonl_traces, pg_database, spans_of

pytestmark = pytest.mark.postgres

DB_NAME = "djtrace_test_conn"


@pytest.fixture(scope="module")
def pg_env(postgres: dict) -> Iterator[dict[str, str]]:
    with pg_database(postgres, DB_NAME):
        yield {"DJTRACE_SAMPLE_DB": "postgres", "DJTRACE_SAMPLE_PG_NAME": DB_NAME}


def _runs(env: dict[str, str], path: str = "/books/", repeat: int = 2) -> list[Trace]:
    result = run_djtrace("request", path, "--repeat", str(repeat), "--format", "jsonl", env=env)
    assert result.returncode == 0, result.stderr
    traces = jsonl_traces(result.stdout)
    assert len(traces) == repeat
    return traces


def _tree(env: dict[str, str], path: str = "/books/") -> str:
    result = run_djtrace("request", path, env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _first_query(trace: Trace) -> int:
    return min(s.start for s in trace.spans if s.phase == "db.query")


@pytest.mark.skipif(django.VERSION < (5, 1), reason="Django's psycopg pool needs Django 5.1+")
def test_each_request_checks_a_connection_out_of_the_pool_and_returns_it(pg_env):
    env = {**pg_env, "DJTRACE_SAMPLE_PG_POOL": "1"}
    for trace in _runs(env):
        (checkout,) = spans_of(trace, "db.connect")
        assert checkout.attrs["action"] == "checkout"
        assert checkout.attrs["pooled"] is True
        assert checkout.attrs["vendor"] == "postgresql"
        assert checkout.attrs["pool_size"] >= 1
        assert checkout.start <= _first_query(trace)  # before the request's first query
        (returned,) = spans_of(trace, "db.close")
        assert returned.attrs["action"] == "returned"
        # Returned when the response is closed (request_finished → close_old_connections).
        (close,) = spans_of(trace, "response.close")
        assert returned in inside(trace, close)

    tree = _tree(env)
    assert "connection default checked out of the pool" in tree
    assert "connection default returned to the pool" in tree
    assert "connections 1 opened, 1 closed" in tree


def test_with_conn_max_age_0_every_request_opens_and_closes_its_connection(pg_env):
    env = {**pg_env, "DJTRACE_SAMPLE_PG_POOL": "0", "DJTRACE_SAMPLE_CONN_MAX_AGE": "0"}
    for trace in _runs(env):
        (opened,) = spans_of(trace, "db.connect")
        assert opened.attrs == {
            "alias": "default",
            "vendor": "postgresql",
            "pooled": False,
            "action": "opened",
            "reused": False,
        }
        assert opened.duration > 0
        assert opened.start <= _first_query(trace)
        (closed,) = spans_of(trace, "db.close", action="closed")
        (close,) = spans_of(trace, "response.close")
        assert closed in inside(trace, close)

    tree = _tree(env)
    assert "connection default opened" in tree
    assert "connection default closed" in tree
    assert "connections 1 opened, 1 closed" in tree


def test_a_persistent_connection_is_reused_by_the_next_request(pg_env):
    env = {**pg_env, "DJTRACE_SAMPLE_PG_POOL": "0", "DJTRACE_SAMPLE_CONN_MAX_AGE": "300"}
    second = _runs(env)[1]
    (reused,) = spans_of(second, "db.connect")
    assert reused.attrs["action"] == "reused"
    assert reused.attrs["reused"] is True
    assert reused.duration == 0
    assert not spans_of(second, "db.connect", action="opened")
    assert not spans_of(second, "db.close")  # it stays open for the next request
    # Marked where the request first touched it: just before its first query.
    assert reused.start <= _first_query(second)

    tree = _tree(env)
    assert "connection default reused" in tree
    assert "connections 1 reused" in tree
    assert "closed" not in tree.split("where the time went")[0]
