"""Cache operations on every alias and backend, as `cache` spans named by the operation.

Each backend instance is instrumented as `CacheHandler.create_connection` makes it: its
operations (get, set, add, delete, *_many, incr, decr, touch, has_key, get_or_set, clear and
their async a-variants) are wrapped on the instance, so it works for any backend class
(locmem, redis, db, file, memcached, custom ones) without touching the classes.

Attrs: alias, backend (class name), key (length-capped; session keys and secret-looking
keys redacted), hit (get, get_or_set, has_key), count and hits (many-variants). Values are
never recorded, sized or converted to text. A cache operation made by another operation
of the same alias (BaseCache's aget → get, get_many → get, get_or_set → get/add) is part
of the outer span, so nothing is counted twice.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from functools import lru_cache
from types import FunctionType, MethodType
from typing import Any

from django.core.cache import CacheHandler, caches
from djtrace.model import ATTRS, NAME, PARENT, PHASE
from djtrace.patching import patch
from djtrace.recorder import async_span_scope, current, span_scope, tracer_failed
from djtrace.redact import REDACTED, is_sensitive

#: Operation → what its arguments and result say: "get" (key, default → hit),
#: "has" (key → hit), "getset" (key; a nested add means a miss), "key", "many" (keys or a
#: dict → count), "getmany" (keys → count and hits), "none" (clear).
OPERATIONS = {
    "get": "get",
    "get_or_set": "getset",
    "has_key": "has",
    "get_many": "getmany",
    "set": "key",
    "add": "key",
    "delete": "key",
    "touch": "key",
    "incr": "key",
    "decr": "key",
    "set_many": "many",
    "delete_many": "many",
    "clear": "none",
}
ASYNC_OPERATIONS = {"a" + name: kind for name, kind in OPERATIONS.items()}

KEY_CHARS = 200
# Session engines key their cache entries by prefix + the session key, which is a secret.
_SESSION_PREFIXES = ("django.contrib.sessions.cached_db", "django.contrib.sessions.cache")
_SESSION_ANY = "django.contrib.sessions."

_instrumented: weakref.WeakSet[Any] = weakref.WeakSet()


@lru_cache(maxsize=4096)
def _safe_key(key: str) -> str:
    if key.startswith(_SESSION_ANY):
        prefix = next((p for p in _SESSION_PREFIXES if key.startswith(p)), _SESSION_ANY)
        return prefix + REDACTED
    if is_sensitive(key):
        namespace, sep, _ = key.partition(":")
        return f"{namespace[:40]}:{REDACTED}" if sep else REDACTED
    return key if len(key) <= KEY_CHARS else key[:KEY_CHARS] + "…"


def shown_key(key: Any) -> str:
    """A cache key as it may appear in a trace (never the value, never a secret)."""
    if isinstance(key, str):
        return _safe_key(key)
    if isinstance(key, int):
        return str(key)
    return f"<{type(key).__name__}>"


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str) -> Any:
    return args[index] if len(args) > index else kwargs.get(name)


def _size(items: Any) -> int | None:
    """How many keys, without consuming an iterator."""
    return len(items) if hasattr(items, "__len__") else None


def _before(kind: str, attrs: dict[str, Any], args: tuple, kwargs: dict) -> None:
    if kind in ("get", "getset", "has", "key"):
        attrs["key"] = shown_key(_arg(args, kwargs, 0, "key"))
        if kind == "getset":
            attrs["hit"] = True  # until a nested add says the value had to be computed
    elif kind in ("many", "getmany"):
        items = _arg(args, kwargs, 0, "keys" if kind == "getmany" else "data")
        if items is None:
            items = kwargs.get("keys")
        count = _size(items)
        if count is not None:
            attrs["count"] = count
        if count:
            attrs["key"] = shown_key(next(iter(items)))


def _after(kind: str, attrs: dict[str, Any], result: Any, args: tuple, kwargs: dict) -> None:
    if kind == "get":
        attrs["hit"] = result is not _arg(args, kwargs, 1, "default")
    elif kind == "has":
        attrs["hit"] = bool(result)
    elif kind == "getmany" and isinstance(result, dict):
        attrs["hits"] = len(result)
        if "count" in attrs:
            attrs["hit"] = len(result) == attrs["count"]


def _nested(state: Any, alias: str, name: str) -> bool:
    """True when a cache operation of the same alias is already being timed (an async one
    runs its sync half through sync_to_async: past that hop's span)."""
    parent = state.span
    if parent is not None and parent[PHASE] == "async.hop":
        parent = parent[PARENT]
    if parent is None or parent[PHASE] != "cache" or parent[ATTRS].get("alias") != alias:
        return False
    if name in ("add", "aadd") and parent[NAME] in ("get_or_set", "aget_or_set"):
        parent[ATTRS]["hit"] = False  # get_or_set only adds what it did not find
    return True


def _method(backend: Any, name: str) -> Callable[..., Any]:
    """The class's method, looked up at call time: a test that patches the backend class
    (mock.patch.object(RedisCache, "get")) must still be what the app calls."""
    cls = type(backend)
    attr = getattr(cls, name)
    if type(attr) is FunctionType:  # the usual case, bound the quick way
        return MethodType(attr, backend)
    get = getattr(type(attr), "__get__", None)  # bind as attribute lookup would
    return get(attr, backend, cls) if get is not None else attr


def _sync(backend: Any, name: str, kind: str, alias: str, backend_name: str) -> Any:
    def operation(*args: Any, **kwargs: Any) -> Any:
        bound = _method(backend, name)
        state = current.get()
        if state is None or _nested(state, alias, name):
            return bound(*args, **kwargs)
        attrs: dict[str, Any] = {"alias": alias, "backend": backend_name}
        try:
            _before(kind, attrs, args, kwargs)
        except Exception:
            tracer_failed(state.trace, f"cache {name}")
        with span_scope(state, "cache", name, attrs):
            result = bound(*args, **kwargs)
        try:
            _after(kind, attrs, result, args, kwargs)
        except Exception:
            tracer_failed(state.trace, f"cache {name}")
        return result

    return operation


def _async(backend: Any, name: str, kind: str, alias: str, backend_name: str) -> Any:
    async def operation(*args: Any, **kwargs: Any) -> Any:
        bound = _method(backend, name)
        state = current.get()
        if state is None or _nested(state, alias, name):
            return await bound(*args, **kwargs)
        attrs: dict[str, Any] = {"alias": alias, "backend": backend_name}
        try:
            _before(kind, attrs, args, kwargs)
        except Exception:
            tracer_failed(state.trace, f"cache {name}")
        with async_span_scope(state, "cache", name, attrs):
            result = await bound(*args, **kwargs)
        try:
            _after(kind, attrs, result, args, kwargs)
        except Exception:
            tracer_failed(state.trace, f"cache {name}")
        return result

    return operation


def instrument(backend: Any, alias: str) -> None:
    """Wrap one backend instance's operations (once)."""
    if backend in _instrumented:
        return
    backend_name = type(backend).__name__
    cls = type(backend)
    for table, make in ((OPERATIONS, _sync), (ASYNC_OPERATIONS, _async)):
        for name, kind in table.items():
            if callable(getattr(cls, name, None)) and name not in vars(backend):
                setattr(backend, name, make(backend, name, kind, alias, backend_name))
    _instrumented.add(backend)


def _create_connection(original: Any) -> Any:
    def create_connection(self: CacheHandler, alias: str) -> Any:
        backend = original(self, alias)
        try:
            instrument(backend, alias)
        except Exception:
            tracer_failed(None, "cache instrument")
        return backend

    return create_connection


def install() -> None:
    patch(CacheHandler, "create_connection", _create_connection)
    # Backends this thread made before djtrace was installed.
    try:
        for alias in caches.settings:
            backend = getattr(caches._connections, alias, None)
            if backend is not None:
                instrument(backend, alias)
    except Exception:
        tracer_failed(None, "cache instrument existing")


def uninstall() -> None:
    """Take the wrappers off every instrumented instance."""
    for backend in list(_instrumented):
        for name in (*OPERATIONS, *ASYNC_OPERATIONS):
            backend.__dict__.pop(name, None)
    _instrumented.clear()
