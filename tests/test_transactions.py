"""atomic blocks as db.transaction spans: commit, rollback, savepoints, ATOMIC_REQUESTS.

Each scenario runs on SQLite (the suite's default database) and on the real PostgreSQL,
through a second database alias added for this module.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.db import connections, transaction
from django.test import Client, override_settings
from djtrace import Trace, trace

from tests import services
from tests.helpers import ancestors, rendered
from tests.services import inside, spans_of
from tests.services_site.views import TABLE

DB_NAME = "djtrace_test_tx"
PG_ALIAS = "txpg"
CREATE = f"CREATE TABLE IF NOT EXISTS {TABLE} (name varchar(100), password varchar(200))"


def _reset_table(alias: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute(CREATE)
        cursor.execute(f"DELETE FROM {TABLE}")


@pytest.fixture(scope="module")
def pg_alias(postgres: dict) -> Iterator[str]:
    with services.pg_alias(postgres, DB_NAME, PG_ALIAS) as alias:
        yield alias


@pytest.fixture(params=["default", pytest.param("postgres", marks=pytest.mark.postgres)])
def alias(request: pytest.FixtureRequest) -> Iterator[str]:
    name = request.getfixturevalue("pg_alias") if request.param == "postgres" else "default"
    _reset_table(name)
    with override_settings(ROOT_URLCONF="tests.services_site.urls"):
        yield name


def run(path: str) -> tuple[Trace, int, dict]:
    with trace() as t:
        response = Client(raise_request_exception=False).get(path)
    (request,) = t.requests
    body = json.loads(response.content) if response.status_code == 200 else {}
    return request, response.status_code, body


def blocks(tr: Trace) -> list:
    return sorted(spans_of(tr, "db.transaction"), key=lambda s: s.start)


def sql_inside(tr: Trace, span) -> list[str]:
    return [s.attrs["sql"] for s in inside(tr, span) if s.phase == "db.query"]


def test_a_committed_block_holds_its_queries_and_commit(alias):
    tr, status, body = run(f"/tx/commit/?db={alias}")
    assert status == 200 and body["names"] == ["committed"]
    (block,) = blocks(tr)
    assert block.name == "transaction"
    assert block.attrs == {
        "alias": alias,
        "durable": False,
        "kind": "transaction",
        "outcome": "commit",
    }
    assert block.error is None
    assert any(sql.startswith("INSERT") for sql in sql_inside(tr, block))
    (commit,) = spans_of(tr, "db.commit")
    assert commit in inside(tr, block)
    # The SELECT after the block is outside it.
    (select,) = [s for s in spans_of(tr, "db.query") if "SELECT name" in s.attrs["sql"]]
    assert select not in inside(tr, block)


def test_a_rolled_back_block_is_marked_with_the_exception_that_undid_it(alias):
    tr, status, body = run(f"/tx/rollback/?db={alias}")
    assert status == 200 and body["names"] == []  # the INSERT was undone
    (block,) = blocks(tr)
    assert block.attrs["outcome"] == "rollback"
    assert block.error is not None and block.error["type"].endswith("Rollback")
    assert block.error["message"] == "undo"
    assert any(sql.startswith("INSERT") for sql in sql_inside(tr, block))
    (rollback,) = spans_of(tr, "db.rollback")
    assert rollback in inside(tr, block)
    assert not spans_of(tr, "db.commit")


def test_set_rollback_rolls_back_without_an_error(alias):
    tr, status, body = run(f"/tx/set_rollback/?db={alias}")
    assert status == 200 and body["names"] == []
    (block,) = blocks(tr)
    assert block.attrs["outcome"] == "rollback" and block.error is None


def test_a_failed_savepoint_rolls_back_alone_inside_a_committed_transaction(alias):
    tr, status, body = run(f"/tx/savepoint/?db={alias}")
    assert status == 200 and body["names"] == ["outer"]
    outer, inner = blocks(tr)
    assert outer.attrs["kind"] == "transaction" and outer.attrs["outcome"] == "commit"
    assert inner.attrs["kind"] == "savepoint" and inner.attrs["outcome"] == "rollback"
    assert inner.parent == outer.id
    inner_sql = sql_inside(tr, inner)
    assert any(sql.startswith("SAVEPOINT") for sql in inner_sql)
    assert any(sql.startswith("ROLLBACK TO SAVEPOINT") for sql in inner_sql)
    assert any("inner" in str(s.attrs.get("params")) for s in inside(tr, inner))


def test_atomic_requests_wraps_the_view_and_rolls_back_when_it_raises(alias):
    settings_dict = connections.settings[alias]
    settings_dict["ATOMIC_REQUESTS"] = True
    try:
        tr, status, _ = run(f"/tx/raise/?db={alias}")
    finally:
        settings_dict["ATOMIC_REQUESTS"] = False
    assert status == 500
    request_block, view_block = blocks(tr)
    assert request_block.attrs["kind"] == "transaction"
    assert request_block.attrs["outcome"] == "rollback"
    assert ancestors(tr, request_block)[0].phase == "view"  # the view's own code runs inside
    assert view_block.parent == request_block.id and view_block.attrs["kind"] == "savepoint"
    assert all(
        b.error and b.error["message"] == "escapes the view" for b in (request_block, view_block)
    )
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {TABLE}")
        assert cursor.fetchone()[0] == 0


def test_the_tree_says_rollback(alias):
    from djtrace.cli.render import render_trace

    tr, _, _ = run(f"/tx/savepoint/?db={alias}")
    text = rendered(render_trace(tr))
    assert f"transaction {alias} → commit" in text
    assert f"savepoint {alias} → ROLLBACK" in text
    assert "1 rollback" in text


def test_a_shared_decorator_instance_nests_once_per_call():
    # @atomic is one Atomic object for every call: recursion must still nest correctly.
    _reset_table("default")

    @transaction.atomic
    def insert(depth: int) -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute(f"INSERT INTO {TABLE} (name) VALUES (%s)", [f"level{depth}"])
        if depth:
            insert(depth - 1)

    with trace() as t:
        insert(2)
    spans = blocks(t.bare)
    assert [s.attrs["kind"] for s in spans] == ["transaction", "savepoint", "savepoint"]
    assert spans[1].parent == spans[0].id and spans[2].parent == spans[1].id
    assert all(s.attrs["outcome"] == "commit" and s.duration >= 0 for s in spans)
    assert spans[0].end >= spans[1].end >= spans[2].end
