"""Session load and save as spans, with the DB and cache work of each engine inside.

The cached_db case runs the real `djtrace request` on sample_site with PostgreSQL and Redis
(this module's own database and Redis db); the other engines run in-process on SQLite.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Iterator

import pytest
from django.test import Client, override_settings
from djtrace import Trace, trace

from tests.conftest import run_djtrace
from tests.services import inside, jsonl_traces, pg_database, redis_db, spans_of
from tests.services_site.views import SECRET_SESSION

DB_NAME = "djtrace_test_sess"
REDIS_DB = 11


@pytest.fixture(scope="module")
def services(postgres: dict, redis: str) -> Iterator[dict[str, str]]:
    with pg_database(postgres, DB_NAME), redis_db(redis, REDIS_DB):
        env = {
            "DJTRACE_SAMPLE_DB": "postgres",
            "DJTRACE_SAMPLE_PG_NAME": DB_NAME,
            "DJTRACE_SAMPLE_CACHE": "redis",  # which also makes sessions cached_db
            "DJTRACE_SAMPLE_REDIS_DB": str(REDIS_DB),
        }
        # The first run creates and seeds sample_site's tables in the new database.
        result = run_djtrace("request", "/books/fast/", "--format", "json", env=env)
        assert result.returncode == 0, result.stderr
        yield env


def _stored_session(postgres: dict, data: dict) -> tuple[str, str]:
    """A session row written straight into PostgreSQL (so Redis has never seen it)."""
    import psycopg
    from django.contrib.sessions.backends.db import SessionStore

    key = secrets.token_hex(16)
    encoded = SessionStore().encode(data)
    expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
    with psycopg.connect(dbname=DB_NAME, autocommit=True, **postgres) as conn:
        conn.execute(
            "INSERT INTO django_session (session_key, session_data, expire_date)"
            " VALUES (%s, %s, %s)",
            (key, encoded, expires),
        )
    return key, encoded


def _kinds(trace: Trace, span) -> list[tuple[str, str]]:
    return [(s.phase, s.name) for s in inside(trace, span) if s.phase in ("cache", "db.query")]


@pytest.mark.postgres
@pytest.mark.redis
def test_cached_db_session_load_and_save_show_their_cache_and_db_work(services, postgres):
    key, encoded = _stored_session(postgres, {"visits": 41, "note": SECRET_SESSION})
    result = run_djtrace(
        "request",
        "/session/",
        "-H",
        f"Cookie: sessionid={key}",
        "--repeat",
        "2",
        "--format",
        "jsonl",
        env=services,
    )
    assert result.returncode == 0, result.stderr
    first, second = jsonl_traces(result.stdout)

    # First request: Redis has never seen the session → MISS, read from PostgreSQL, cached.
    (load,) = spans_of(first, "session", engine="cached_db")[:1]
    assert load.name == "load" and load.attrs["empty"] is False
    lookup, stored = (s for s in inside(first, load) if s.phase == "cache")
    assert (lookup.name, lookup.attrs["hit"], stored.name) == ("get", False, "set")
    assert lookup.attrs["backend"] == "RedisCache"
    queries = [s for s in inside(first, load) if s.phase == "db.query"]
    assert len(queries) == 1 and "django_session" in queries[0].attrs["sql"]
    assert lookup.start < queries[0].start < stored.start

    # The view changed the session: saved to PostgreSQL (in a transaction), then to Redis.
    (save,) = spans_of(first, "session", engine="cached_db")[1:]
    assert save.name == "save"
    saved = [s for s in inside(first, save) if s.phase == "db.query"]
    assert any(s.attrs["sql"].startswith("UPDATE") for s in saved)
    assert spans_of(first, "db.transaction") and all(
        t in inside(first, save) for t in spans_of(first, "db.transaction")
    )
    assert [s.name for s in inside(first, save) if s.phase == "cache"] == ["set"]

    # Second request: the session comes from Redis alone.
    load2, save2 = spans_of(second, "session")
    assert _kinds(second, load2) == [("cache", "get")]
    assert next(s for s in inside(second, load2) if s.phase == "cache").attrs["hit"] is True
    assert save2.name == "save"

    # Neither the session's contents nor its key (the cookie) are anywhere in the traces.
    for secret in (SECRET_SESSION, key, key[:8], key[-8:], encoded, encoded[:20]):
        assert secret not in result.stdout
    assert lookup.attrs["key"] == "django.contrib.sessions.cached_db[redacted]"


@pytest.mark.parametrize(
    ("engine", "load_work"),
    [
        ("db", [("db.query", "default")]),
        ("cache", [("cache", "get")]),
        ("cached_db", [("cache", "get")]),
        ("file", []),
        ("signed_cookies", []),
    ],
)
def test_each_engine_is_named_and_holds_its_own_work(engine, load_work, tmp_path):
    with override_settings(
        SESSION_ENGINE=f"django.contrib.sessions.backends.{engine}", SESSION_FILE_PATH=str(tmp_path)
    ):
        client = Client()
        with trace() as t:
            client.get("/session/")  # no cookie yet: nothing to load, a new session saved
            response = client.get("/session/")
    first, second = t.requests
    assert json.loads(response.content) == {"visits": 2}
    assert [s.name for s in spans_of(first, "session")] == ["save"]
    load, save = spans_of(second, "session")
    assert (load.name, save.name) == ("load", "save")
    assert load.attrs["engine"] == engine == save.attrs["engine"]
    assert _kinds(second, load) == load_work
    # Sessions nest under the middleware or view that touched them.
    assert all(s.parent is not None for s in (load, save))


def test_the_tree_names_the_engine():
    from djtrace.cli.render import render_trace

    from tests.helpers import rendered

    client = Client()
    client.get("/session/")
    with trace() as t:
        client.get("/session/")
    text = rendered(render_trace(t.requests[0], hide_under_ms=0))
    assert "session load (db)" in text
    assert "session save (db)" in text
