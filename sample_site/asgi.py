"""ASGI entry point (uvicorn sample_site.asgi:application)."""

import os
from concurrent.futures import ThreadPoolExecutor

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djtrace.sample_site.settings")

application = get_asgi_application()


def _seed() -> None:
    from django.db import connections
    from djtrace.sample_site.seed import ensure_database

    try:
        ensure_database()
    finally:
        connections.close_all()


# A demo should answer on a fresh machine: create and seed its database on first start. In a
# thread, because uvicorn may import this module inside its event loop, where Django refuses
# synchronous database work.
with ThreadPoolExecutor(max_workers=1) as _pool:
    _pool.submit(_seed).result()
