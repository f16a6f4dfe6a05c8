"""Installing and removing djtrace's hooks.

`install()` is what adding "tracer" to INSTALLED_APPS does; it is idempotent. Hooks apply
to handlers whose middleware is loaded after it (every handler Django builds after setup).
"""

from __future__ import annotations

import threading

from tracer.patching import restore_all

_lock = threading.Lock()
_installed = False


def install() -> None:
    global _installed
    with _lock:
        if _installed:
            return
        from tracer.hooks import db, handler, middleware, templates, urls, views

        for hook in (handler, middleware, urls, views, db, templates):
            hook.install()
        _installed = True


def uninstall() -> None:
    """Restore Django exactly as it was (for tests)."""
    global _installed
    with _lock:
        restore_all()
        _installed = False


def installed() -> bool:
    return _installed
