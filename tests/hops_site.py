"""Views that hop threads mid-request (async_to_sync, sync_to_async), for test_thread_hops."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from django.db import connection, transaction
from django.dispatch import Signal, receiver
from django.http import HttpRequest, HttpResponse
from django.urls import path

ping = Signal()  # a sync send: a sync span wherever it runs
hop = Signal()  # its receiver hops through async_to_sync
blocking = Signal()  # its receiver holds a worker thread until released

MARKER = "SELECT 1 /* after the hop */"


@receiver(ping)
def on_ping(sender: Any, **kwargs: Any) -> str:
    return "pong"


async def ping_from_a_loop_thread() -> None:
    ping.send(sender=None)  # sync code on async_to_sync's own thread


@receiver(hop)
def on_hop(sender: Any, **kwargs: Any) -> None:
    async_to_sync(ping_from_a_loop_thread)()


def marker_query() -> None:
    with connection.cursor() as cursor:
        cursor.execute(MARKER)


def after_receiver(request: HttpRequest) -> HttpResponse:
    hop.send(sender=None)
    marker_query()
    return HttpResponse("ok")


def after_atomic(request: HttpRequest) -> HttpResponse:
    with transaction.atomic():
        async_to_sync(ping_from_a_loop_thread)()
    marker_query()
    return HttpResponse("ok")


_events: dict[str, threading.Event] = {}


class OnTheLoop:
    """The sender of the ping sent on the event loop's thread (spans name a class sender)."""


@receiver(blocking)
def on_blocking(sender: Any, **kwargs: Any) -> None:
    _events["started"].set()
    _events["release"].wait(5)


async def gather_while_a_worker_records(request: HttpRequest) -> HttpResponse:
    await sync_to_async(ping.send)(sender=None)  # a first hop to the worker thread
    _events["started"], _events["release"] = threading.Event(), threading.Event()

    def hold_the_worker() -> None:  # a second hop, on the same worker thread
        blocking.send(sender=None)

    async def ping_on_the_loop() -> None:
        await asyncio.get_running_loop().run_in_executor(None, _events["started"].wait, 5)
        ping.send(sender=OnTheLoop)  # while the worker is inside its receiver's span
        _events["release"].set()

    await asyncio.gather(sync_to_async(hold_the_worker)(), ping_on_the_loop())
    return HttpResponse("ok")


urlpatterns = [
    path("after-receiver/", after_receiver),
    path("after-atomic/", after_atomic),
    path("gather/", gather_while_a_worker_records),
]
