"""Pages for the concurrency lab (`djtrace load`): each one stresses one resource.

/lab/io/?ms=50         waits on I/O (a sleep standing in for an upstream call)
/lab/cpu/?ms=20        burns its thread's CPU (holds the GIL)
/lab/async-io/?ms=50   an async view awaiting async I/O (no thread while it waits)
/lab/hold-db/?ms=50    runs a query and keeps its database connection while it waits
/lab/stall-once/?after=N&ms=M   the Nth request this process serves stalls for M ms
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time

from django.db import connection, transaction
from django.http import HttpRequest, JsonResponse

_MAX_MS = 10_000  # a typo in a query string must not hang a worker for an hour


def _ms(request: HttpRequest, default: int) -> int:
    try:
        return min(max(int(request.GET.get("ms", default)), 0), _MAX_MS)
    except ValueError:
        return default


def io_wait(request: HttpRequest) -> JsonResponse:
    ms = _ms(request, 50)
    time.sleep(ms / 1000)
    return JsonResponse({"waited_ms": ms})


def cpu_bound(request: HttpRequest) -> JsonResponse:
    ms = _ms(request, 20)
    # Spin until this thread has used `ms` of CPU: under contention the wall time grows,
    # the CPU time does not.
    until = time.thread_time_ns() + ms * 1_000_000
    spins = 0
    while time.thread_time_ns() < until:
        spins += sum(range(200))
    return JsonResponse({"cpu_ms": ms, "spins": spins})


async def async_io(request: HttpRequest) -> JsonResponse:
    ms = _ms(request, 50)
    await asyncio.sleep(ms / 1000)
    return JsonResponse({"waited_ms": ms})


def hold_db(request: HttpRequest) -> JsonResponse:
    ms = _ms(request, 50)
    with transaction.atomic():  # the connection stays checked out while it waits
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        time.sleep(ms / 1000)
    return JsonResponse({"held_ms": ms, "vendor": connection.vendor})


_served = itertools.count(1)
_served_lock = threading.Lock()


def stall_once(request: HttpRequest) -> JsonResponse:
    try:
        after = int(request.GET.get("after", 50))
    except ValueError:
        after = 50
    with _served_lock:
        number = next(_served)
    stalled = number == after
    if stalled:
        time.sleep(_ms(request, 1000) / 1000)
    return JsonResponse({"number": number, "stalled": stalled})
