"""No session value, cache value, session key or password-like SQL parameter in a trace.

The whole JSON of every trace is searched, on SQLite with local memory and on the real
PostgreSQL and Redis.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.db import connections
from django.test import Client, override_settings
from djtrace import trace

from tests import services
from tests.helpers import rendered
from tests.services_site.views import SECRET_CACHE, SECRET_PASSWORD, SECRET_SESSION, TABLE

DB_NAME = "djtrace_test_secrets"
REDIS_DB = 10
LOCAL = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "secrets"}


@pytest.fixture(
    params=[
        "sqlite-locmem",
        pytest.param("postgres-redis", marks=[pytest.mark.postgres, pytest.mark.redis]),
    ]
)
def backends(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(database alias, cache alias) with a users table holding alice."""
    if request.param == "sqlite-locmem":
        with override_settings(CACHES={"default": LOCAL}):
            yield _with_table("default"), "default"
        return
    postgres = request.getfixturevalue("postgres")
    redis = request.getfixturevalue("redis")
    with (
        services.pg_alias(postgres, DB_NAME, "secretpg") as alias,
        services.redis_db(redis, REDIS_DB),
    ):
        caches = {
            "default": LOCAL,
            "redis": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"{redis}/{REDIS_DB}",
            },
        }
        # Sessions in Redis too (and in the suite's database, via cached_db).
        with override_settings(
            CACHES=caches,
            SESSION_CACHE_ALIAS="redis",
            SESSION_ENGINE="django.contrib.sessions.backends.cached_db",
        ):
            yield _with_table(alias), "redis"


def _with_table(alias: str) -> str:
    with connections[alias].cursor() as cursor:
        cursor.execute(
            f"CREATE TABLE IF NOT EXISTS {TABLE} (name varchar(100), password varchar(200))"
        )
        cursor.execute(f"DELETE FROM {TABLE}")
        cursor.execute(f"INSERT INTO {TABLE} (name, password) VALUES (%s, %s)", ["alice", "-"])
    return alias


def test_no_secret_reaches_a_trace(backends):
    from djtrace.cli.render import render_trace

    db, cache = backends
    query = f"?db={db}&alias={cache}"
    with override_settings(ROOT_URLCONF="tests.services_site.urls"):
        client = Client()
        with trace() as t:
            client.get(f"/secrets/{query}")  # writes all three secrets
            response = client.get(f"/secrets/read/{query}")  # reads them back
    # The secrets really were stored and read: the test looks where they went.
    assert response.json() == {"session": True, "cache": True, "password": True}
    session_key = client.cookies["sessionid"].value
    phases = {s.phase for s in t.spans}
    assert {"session", "cache", "db.query"} <= phases

    whole = json.dumps([tr.to_dict() for tr in t.traces])
    shown = "".join(rendered(render_trace(tr, hide_under_ms=0)) for tr in t.traces)
    for secret in (SECRET_SESSION, SECRET_CACHE, SECRET_PASSWORD, session_key, session_key[:8]):
        assert secret not in whole
        assert secret not in shown
    # The UPDATE is there, its password parameter redacted, the other one kept.
    (update,) = [s for s in t.spans if s.attrs.get("sql", "").startswith("UPDATE")]
    assert update.attrs["params"] == ["[redacted]", "alice"]
