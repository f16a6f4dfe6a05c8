"""Views that exercise transactions, every cache operation, signals and secrets.

Used by the connections/transactions/cache/sessions/signals tests through ROOT_URLCONF
"tests.services_site.urls". The database alias and cache alias come from the query string,
so the same views run on SQLite and on the real PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
from typing import Any

import django
from django.core.cache import caches
from django.db import connections, transaction
from django.dispatch import Signal
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import Context, Template

TABLE = "djtrace_tx"
SECRET_SESSION = "session-secret-7f3a9c"
SECRET_CACHE = "cache-secret-51d0e2"
SECRET_PASSWORD = "pbkdf2_sha256$870000$saltsalt$c2VjcmV0LWhhc2gtOTkx"
LONG_KEY = "k" * 240  # capped in traces, still valid for every backend

order_placed = Signal()
audit = Signal()
received: list[str] = []  # what the receivers saw, for the tests


def record_order(sender: Any, **kwargs: Any) -> str:
    with connections[kwargs.get("using", "default")].cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {TABLE}")
    received.append("sync")
    return "recorded"


async def notify_order(sender: Any, **kwargs: Any) -> str:
    await asyncio.sleep(0)
    received.append("async")
    return "notified"


def broken_auditor(sender: Any, **kwargs: Any) -> None:
    raise ValueError("auditor broke")


def quiet_auditor(sender: Any, **kwargs: Any) -> str:
    return "ok"


order_placed.connect(record_order)
if django.VERSION >= (5, 0):  # async receivers are Django 5.0+
    order_placed.connect(notify_order)
audit.connect(broken_auditor)
audit.connect(quiet_auditor)


class Rollback(Exception):
    pass


def _insert(alias: str, name: str) -> None:
    with connections[alias].cursor() as cursor:
        cursor.execute(f"INSERT INTO {TABLE} (name, password) VALUES (%s, %s)", [name, "x"])


def tx(request: HttpRequest, scenario: str) -> HttpResponse:
    alias = request.GET.get("db", "default")
    if scenario == "commit":
        with transaction.atomic(using=alias):
            _insert(alias, "committed")
    elif scenario == "rollback":
        try:
            with transaction.atomic(using=alias):
                _insert(alias, "rolled-back")
                raise Rollback("undo")
        except Rollback:
            pass
    elif scenario == "set_rollback":
        with transaction.atomic(using=alias):
            _insert(alias, "marked")
            transaction.set_rollback(True, using=alias)
    elif scenario == "savepoint":
        with transaction.atomic(using=alias):
            _insert(alias, "outer")
            try:
                with transaction.atomic(using=alias):
                    _insert(alias, "inner")
                    raise Rollback("inner only")
            except Rollback:
                pass
    elif scenario == "raise":
        with transaction.atomic(using=alias):
            _insert(alias, "doomed")
            raise Rollback("escapes the view")
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT name FROM {TABLE} ORDER BY name")
        names = [row[0] for row in cursor.fetchall()]
    return JsonResponse({"names": names})


def cache_ops(request: HttpRequest) -> JsonResponse:
    cache = caches[request.GET.get("alias", "default")]
    cache.delete_many(["a", "b", "n", "missing", "gos", LONG_KEY])
    out = {
        "set": cache.set("a", SECRET_CACHE, 60),
        "get_hit": cache.get("a") == SECRET_CACHE,
        "get_miss": cache.get("missing") is None,
        "add": cache.add("b", SECRET_CACHE, 60),
        "get_or_set_miss": cache.get_or_set("gos", lambda: SECRET_CACHE, 60) == SECRET_CACHE,
        "get_or_set_hit": cache.get_or_set("gos", "other", 60) == SECRET_CACHE,
        "has_key": cache.has_key("a"),
        "set_many": cache.set_many({"n": 1, LONG_KEY: SECRET_CACHE}, 60),
        "get_many": len(cache.get_many(["a", "b", "missing"])),
        "incr": cache.incr("n"),
        "decr": cache.decr("n"),
        "touch": cache.touch("a", 60),
        "delete": cache.delete("b"),
        "delete_many": cache.delete_many(["a", LONG_KEY]),
        "long": cache.get(LONG_KEY) is None,
    }
    return JsonResponse(out)


async def cache_ops_async(request: HttpRequest) -> JsonResponse:
    cache = caches[request.GET.get("alias", "default")]
    await cache.adelete_many(["a", "missing", "gos"])
    out = {
        "aset": await cache.aset("a", SECRET_CACHE, 60),
        "aget_hit": await cache.aget("a") == SECRET_CACHE,
        "aget_miss": await cache.aget("missing", "fallback") == "fallback",
        "aget_or_set": await cache.aget_or_set("gos", SECRET_CACHE, 60) == SECRET_CACHE,
        "aget_many": len(await cache.aget_many(["a", "missing"])),
        "ahas_key": await cache.ahas_key("a"),
        "adelete": await cache.adelete("a"),
    }
    return JsonResponse(out)


def fragment(request: HttpRequest) -> HttpResponse:
    template = Template("{% load cache %}{% cache 60 shelf %}<p>the shelf</p>{% endcache %}")
    return HttpResponse(template.render(Context({})))


def cacheable(request: HttpRequest) -> HttpResponse:
    return HttpResponse("a page the cache middleware keeps")


def send_signals(request: HttpRequest) -> JsonResponse:
    responses = order_placed.send(sender=HttpRequest, using=request.GET.get("db", "default"))
    robust = audit.send_robust(sender=HttpRequest)
    return JsonResponse(
        {
            "receivers": [getattr(r, "__name__", "?") for r, _ in responses],
            "identity": [r is record_order or r is notify_order for r, _ in responses],
            "results": [str(v) for _, v in responses],
            "robust": [type(v).__name__ for _, v in robust],
        }
    )


async def send_signals_async(request: HttpRequest) -> JsonResponse:
    responses = await order_placed.asend(sender=HttpRequest)
    identity = [r is record_order or r is notify_order for r, _ in responses]
    return JsonResponse({"identity": identity})


def secrets(request: HttpRequest) -> JsonResponse:
    request.session["note"] = SECRET_SESSION
    caches[request.GET.get("alias", "default")].set("note", SECRET_CACHE, 60)
    with connections[request.GET.get("db", "default")].cursor() as cursor:
        cursor.execute(
            f"UPDATE {TABLE} SET password = %s WHERE name = %s", [SECRET_PASSWORD, "alice"]
        )
    return JsonResponse({"ok": True})


def read_secrets(request: HttpRequest) -> JsonResponse:
    cached = caches[request.GET.get("alias", "default")].get("note")
    with connections[request.GET.get("db", "default")].cursor() as cursor:
        cursor.execute(f"SELECT password FROM {TABLE} WHERE name = %s", ["alice"])
        stored = cursor.fetchone()[0]
    return JsonResponse(
        {
            "session": request.session.get("note") == SECRET_SESSION,
            "cache": cached == SECRET_CACHE,
            "password": stored == SECRET_PASSWORD,
        }
    )
