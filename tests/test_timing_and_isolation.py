"""Honest numbers, and each request sees only its own spans across threads and tasks."""

from __future__ import annotations

import asyncio
import threading

from django.conf import settings
from django.test import AsyncClient, Client, override_settings
from djtrace import analysis, trace

from tests.helpers import one, only
from tests.timing_site.urls import AFTER_SLEEP, BEFORE_SLEEP, VIEW_SLEEP

SLACK_NS = 250_000_000  # generous: these machines are noisy; lower bounds are exact


@override_settings(
    ROOT_URLCONF="tests.timing_site.urls",
    MIDDLEWARE=[*settings.MIDDLEWARE, "tests.timing_site.urls.sleepy_middleware"],
)
def test_a_phase_that_sleeps_is_charged_that_time():
    with trace() as t:
        assert Client().get("/slow/").status_code == 200
    (tr,) = t.requests
    kids = analysis.children_of(tr)
    own = analysis.self_times(tr, kids)
    view = one(tr, "view")
    assert VIEW_SLEEP * 1e9 <= own[view.id] <= VIEW_SLEEP * 1e9 + SLACK_NS
    sleepy = next(s for s in only(tr, "middleware") if s.name.endswith("sleepy_middleware"))
    before, after = analysis.middleware_halves(sleepy, kids[sleepy.id])
    assert BEFORE_SLEEP * 1e9 <= before <= BEFORE_SLEEP * 1e9 + SLACK_NS
    assert AFTER_SLEEP * 1e9 <= after <= AFTER_SLEEP * 1e9 + SLACK_NS
    rows = dict(analysis.breakdown(tr))
    assert rows["view"] >= VIEW_SLEEP * 1e9
    assert rows["middleware (before)"] >= BEFORE_SLEEP * 1e9
    assert rows["middleware (after)"] >= AFTER_SLEEP * 1e9


PAGES = {"/books/": 21, "/books/fast/": 1, "/api/books/": 1, "/books/4/": 4}


def _check_own_spans(tr, path: str) -> None:
    assert tr.request["path"] == path
    assert len(only(tr, "db.query")) == PAGES[path]
    resolve = one(tr, "url.resolve")
    assert resolve.attrs["resolved"] is True
    assert len(only(tr, "view")) == 1
    ids = {s.id for s in tr.spans}
    assert all(s.parent in ids for s in tr.spans if s is not tr.root)


def test_requests_on_threads_each_record_only_their_own_spans():
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        try:
            path = list(PAGES)[n % len(PAGES)]
            client = Client()
            barrier.wait()
            with trace() as t:
                for _ in range(3):
                    assert client.get(path).status_code == 200
            results[n] = [(path, tr) for tr in t.requests]
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sum(len(v) for v in results.values()) == 24
    for traces in results.values():
        for path, tr in traces:
            _check_own_spans(tr, path)


def test_requests_in_concurrent_asyncio_tasks_each_record_only_their_own_spans():
    async def one_request(path: str):
        with trace() as t:
            response = await AsyncClient().get(path)
        assert response.status_code == 200
        return path, t.requests

    async def main():
        return await asyncio.gather(*(one_request(p) for p in list(PAGES) * 2))

    for path, requests in asyncio.run(main()):
        assert len(requests) == 1
        _check_own_spans(requests[0], path)
        assert requests[0].where["mode"] == "async"
