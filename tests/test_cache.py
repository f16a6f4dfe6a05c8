"""Cache operations as spans: every operation, hit or miss, on local memory and real Redis."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import Client, override_settings
from djtrace import Trace, trace
from djtrace.hooks.cache import KEY_CHARS

from tests.conftest import run_djtrace
from tests.helpers import ancestors, rendered
from tests.services import jsonl_traces, redis_db, spans_of
from tests.services_site.views import SECRET_CACHE

REDIS_DB = 13  # in-process tests
REDIS_DB_CLI = 12  # the CLI runs on sample_site

LOCAL = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "svc-tests"}


@pytest.fixture(scope="module")
def redis_url(redis: str) -> Iterator[str]:
    with redis_db(redis, REDIS_DB):
        yield f"{redis}/{REDIS_DB}"


def _caches(redis_url: str | None = None) -> dict:
    caches: dict = {"default": LOCAL}
    if redis_url:
        caches["redis"] = {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
        }
    return caches


@pytest.fixture
def local_site() -> Iterator[None]:
    with override_settings(CACHES=_caches(), ROOT_URLCONF="tests.services_site.urls"):
        yield


@pytest.fixture
def site(redis_url: str) -> Iterator[None]:
    """Local memory as "default", the real Redis as "redis"."""
    with override_settings(CACHES=_caches(redis_url), ROOT_URLCONF="tests.services_site.urls"):
        yield


def get(path: str, client: Client | None = None) -> tuple[Trace, dict]:
    with trace() as t:
        response = (client or Client(raise_request_exception=False)).get(path)
    assert response.status_code == 200, response.content[:500]
    (request,) = t.requests
    body = json.loads(response.content) if response["Content-Type"] == "application/json" else {}
    return request, body


def cache_spans(tr: Trace) -> list:
    return sorted(spans_of(tr, "cache"), key=lambda s: s.start)


@pytest.mark.parametrize(
    ("alias", "backend", "fixture"),
    [
        ("default", "LocMemCache", "local_site"),
        pytest.param("redis", "RedisCache", "site", marks=pytest.mark.redis),
    ],
)
def test_every_sync_operation_is_one_span_with_hit_or_miss(request, alias, backend, fixture):
    request.getfixturevalue(fixture)
    tr, body = get(f"/cache/ops/?alias={alias}")
    spans = cache_spans(tr)
    assert [s.name for s in spans] == [
        "delete_many",
        "set",
        "get",
        "get",
        "add",
        "get_or_set",
        "get_or_set",
        "has_key",
        "set_many",
        "get_many",
        "incr",
        "decr",
        "touch",
        "delete",
        "delete_many",
        "get",
    ]
    assert all(s.attrs["alias"] == alias and s.attrs["backend"] == backend for s in spans)
    by_position = dict(enumerate(spans))
    assert by_position[2].attrs["key"] == "a" and by_position[2].attrs["hit"] is True
    assert by_position[3].attrs["key"] == "missing" and by_position[3].attrs["hit"] is False
    assert by_position[5].attrs["hit"] is False  # get_or_set had to compute the value
    assert by_position[6].attrs["hit"] is True
    assert by_position[7].attrs["hit"] is True  # has_key
    assert by_position[8].attrs["count"] == 2  # set_many
    assert by_position[9].attrs["count"] == 3 and by_position[9].attrs["hits"] == 2
    assert by_position[0].attrs["count"] == 6  # delete_many
    long_key = by_position[15].attrs["key"]
    assert long_key.startswith("kkk") and len(long_key) == KEY_CHARS + 1
    # An operation made by another one (get_or_set → get/add) is not a second span.
    assert not any(p.phase == "cache" for s in spans for p in ancestors(tr, s))
    # The view got the same answers it gets untraced.
    untraced = Client().get(f"/cache/ops/?alias={alias}").json()
    assert body == untraced
    assert body["get_hit"] and body["get_miss"] and body["get_or_set_hit"]
    assert SECRET_CACHE not in json.dumps(tr.to_dict())


@pytest.mark.redis
def test_async_operations_are_single_spans_without_their_sync_halves(site):
    tr, body = get("/cache/ops-async/?alias=redis")
    spans = cache_spans(tr)
    assert [s.name for s in spans] == [
        "adelete_many",
        "aset",
        "aget",
        "aget",
        "aget_or_set",
        "aget_many",
        "ahas_key",
        "adelete",
    ]
    hits = [s.attrs.get("hit") for s in spans]
    assert hits == [None, None, True, False, False, False, True, None]
    assert spans[5].attrs["hits"] == 1 and spans[5].attrs["count"] == 2
    assert all(value for name, value in body.items() if name != "aset")  # aset returns None
    assert SECRET_CACHE not in json.dumps(tr.to_dict())


def test_template_fragment_cache_is_under_the_template_that_used_it(local_site):
    first, _ = get("/cache/fragment/")
    second, _ = get("/cache/fragment/")
    for tr, hit in ((first, False), (second, True)):
        (lookup,) = [s for s in cache_spans(tr) if s.name == "get"]
        assert lookup.attrs["hit"] is hit
        assert lookup.attrs["key"].startswith("template.cache.shelf")
        assert ancestors(tr, lookup)[0].phase == "template"
    assert [s.name for s in cache_spans(first)] == ["get", "set"]
    assert [s.name for s in cache_spans(second)] == ["get"]


def test_cache_middleware_lookups_are_under_the_cache_middleware(local_site):
    middleware = [
        "django.middleware.cache.UpdateCacheMiddleware",
        *settings.MIDDLEWARE,
        "django.middleware.cache.FetchFromCacheMiddleware",
    ]
    with override_settings(MIDDLEWARE=middleware):
        client = Client()
        first, _ = get("/cache/page/", client)
        second, _ = get("/cache/page/", client)

    def owner(tr: Trace, span) -> str:
        return next(a.name for a in ancestors(tr, span) if a.phase == "middleware")

    fetch = "django.middleware.cache.FetchFromCacheMiddleware"
    update = "django.middleware.cache.UpdateCacheMiddleware"
    (miss,) = [s for s in cache_spans(first) if s.name == "get"]
    assert miss.attrs["hit"] is False and owner(first, miss) == fetch
    stores = [s for s in cache_spans(first) if s.name == "set"]
    assert stores and all(owner(first, s) == update for s in stores)
    hits = [s for s in cache_spans(second) if s.name == "get"]
    assert hits and all(s.attrs["hit"] and owner(second, s) == fetch for s in hits)
    assert not spans_of(second, "view")  # served from the cache


@pytest.mark.redis
def test_sample_site_on_redis_shows_a_miss_then_a_hit(redis):
    env = {"DJTRACE_SAMPLE_CACHE": "redis", "DJTRACE_SAMPLE_REDIS_DB": str(REDIS_DB_CLI)}
    with redis_db(redis, REDIS_DB_CLI):
        result = run_djtrace("request", "/cached/", "--repeat", "2", "--format", "jsonl", env=env)
        assert result.returncode == 0, result.stderr
        first, second = jsonl_traces(result.stdout)
        tree = run_djtrace("request", "/cached/", env=env)
    assert [(s.name, s.attrs.get("hit")) for s in cache_spans(first)] == [
        ("get", False),
        ("set", None),
        ("get_many", False),
        ("set_many", None),
    ]
    assert [(s.name, s.attrs.get("hit")) for s in cache_spans(second)] == [
        ("get", True),
        ("get_many", True),
    ]
    assert all(s.attrs["backend"] == "RedisCache" for s in cache_spans(first))
    assert cache_spans(first)[0].attrs["key"] == "bookstore:count"
    assert not spans_of(second, "db.query")  # everything came from Redis
    assert tree.returncode == 0, tree.stderr
    assert "cache get bookstore:count  HIT" in tree.stdout
    assert "cache get_many 2 keys" in tree.stdout
    assert "cache 3 hits / 0 misses" in tree.stdout


@pytest.mark.redis
def test_the_tree_marks_hits_and_misses(site):
    from djtrace.cli.render import render_trace

    tr, _ = get("/cache/ops/?alias=redis")
    text = rendered(render_trace(tr, hide_under_ms=0))
    assert "cache has_key a  HIT  [redis]" in text
    assert "cache add b  [redis]" in text
    assert "cache get_many 3 keys (a, …)  2 HIT · 1 MISS" in text
    # Sibling operations of one kind fold into one line that counts them.
    assert "cache get 3 keys  1 HIT · 2 MISS  [redis]  × 3" in text
    assert "cache get_or_set gos  1 HIT · 1 MISS  [redis]  × 2" in text
    assert "cache delete_many 8 keys  [redis]  × 2" in text
    # get: 1 hit, 2 misses; get_or_set: 1 and 1; has_key: 1 hit; get_many: 2 and 1.
    assert "cache 5 hits / 4 misses" in text


def test_patching_a_backend_class_still_reaches_the_app(local_site):
    # The wrappers call the class's method at call time, so a test's mock is what runs.
    from unittest import mock

    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache

    patch = mock.patch.object(LocMemCache, "get", return_value="from the mock")
    with patch as patched, trace() as t:
        value = caches["default"].get("anything")
    assert value == "from the mock" and patched.call_count == 1
    (span,) = spans_of(t.bare, "cache")
    assert span.attrs["hit"] is True
