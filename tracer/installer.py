"""Installing and removing djtrace's hooks.

`install()` is what adding "djtrace" to INSTALLED_APPS does; it is idempotent. Hooks apply
to handlers whose middleware is loaded after it (every handler Django builds after setup).
"""

from __future__ import annotations

import threading

from djtrace.patching import restore_all

_lock = threading.Lock()
_installed = False


def install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        from djtrace.hooks import (
            cache,
            connections,
            db,
            exceptions,
            handler,
            hops,
            middleware,
            sessions,
            signals,
            templates,
            transactions,
            urls,
            views,
            wagtail_pages,
        )

        for hook in (handler, middleware, urls, views, exceptions, db, templates):
            hook.install()
        for hook in (connections, transactions, cache, sessions, signals, hops):
            hook.install()
        wagtail_pages.install()  # only where Wagtail is an installed app
        _installed = True


def uninstall() -> None:
    """Restore Django exactly as it was (for tests)."""
    global _installed
    with _lock:
        restore_all()
        from djtrace.hooks import cache

        cache.uninstall()  # per-instance wrappers are not in patching's list
        _installed = False


def installed() -> bool:
    return _installed
