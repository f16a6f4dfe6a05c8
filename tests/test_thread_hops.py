"""A request that hops threads mid-way keeps every span under the right parent.

A sync span moves its context's State in place; these are the cases where a context is
copied to another thread (async_to_sync, sync_to_async) and asgiref copies it back after.
"""

from __future__ import annotations

import asyncio
import sys
import threading

from django.test import AsyncClient, Client, override_settings
from djtrace import Span, Trace, trace
from djtrace.recorder import open_span

from tests.hops_site import MARKER

HOPS = override_settings(ROOT_URLCONF="tests.hops_site")


def parent(tr: Trace, span: Span) -> Span:
    return next(s for s in tr.spans if s.id == span.parent)


def after_the_hop(tr: Trace) -> Span:
    (query,) = [s for s in tr.spans if s.phase == "db.query" and s.attrs["sql"] == MARKER]
    return query


def get(path: str) -> Trace:
    with HOPS, trace() as t:
        assert Client().get(path).status_code == 200
    (tr,) = t.requests
    return tr


def test_a_query_after_a_receiver_that_hopped_threads_is_the_views():
    tr = get("/after-receiver/")
    assert parent(tr, after_the_hop(tr)).phase == "view"
    # The hop's own work nests where it ran: ping's span inside the hop, inside the receiver.
    (receiver,) = [s for s in tr.spans if s.name.endswith("on_hop")]
    (ping,) = [s for s in tr.spans if s.phase == "signal" and s.name == "ping"]
    hop = parent(tr, ping)
    assert hop.phase == "async.hop" and hop.name == "async_to_sync ping_from_a_loop_thread"
    assert parent(tr, hop) == receiver
    assert ping.thread != receiver.thread == hop.thread
    assert hop.attrs["wait_ns"] >= 0 and hop.attrs["thread"] != "MainThread"


def test_a_query_after_an_atomic_block_that_hopped_threads_is_the_views():
    tr = get("/after-atomic/")
    assert parent(tr, after_the_hop(tr)).phase == "view"
    (block,) = [s for s in tr.spans if s.phase == "db.transaction"]
    assert block.duration >= 0


def test_gathered_tasks_on_two_threads_each_nest_under_their_own_parent():
    async def request() -> Trace:
        with HOPS, trace() as t:
            assert (await AsyncClient().get("/gather/")).status_code == 200
        (tr,) = t.requests
        return tr

    tr = asyncio.run(request())
    (on_loop,) = [
        s for s in tr.spans if s.phase == "signal" and s.attrs.get("sender") == "OnTheLoop"
    ]
    assert parent(tr, on_loop).phase == "view"
    (held,) = [s for s in tr.spans if s.name.endswith("on_blocking")]
    assert parent(tr, held).name == "blocking"


def test_spans_opened_on_several_threads_into_one_trace_get_distinct_ids():
    tr = Trace({}, {})
    root = open_span(tr, None, "request", "GET /")

    def record() -> None:
        for _ in range(1000):  # 4,001 spans in all: under the default cap of 5,000
            open_span(tr, root, "template", "row.html")

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        threads = [threading.Thread(target=record) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    ids = [span.id for span in tr.spans]
    assert len(ids) == 4001
    assert len(set(ids)) == len(ids)
