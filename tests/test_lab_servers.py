"""The lab's view of real servers under `djtrace capture` on 127.0.0.1: uvicorn with a
sync-only middleware shows each thread hop as a span; `capture --sample` keeps light traces
that the lab still joins by their tag (lab contract 1–7)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.capture_support import (
    capture,
    exported,
    fetch,
    free_port,
    gunicorn_args,
    uvicorn_args,
    wait_for_traces,
)
from tests.conftest import run_djtrace

SYNC_ONLY = "djtrace.sample_site.lab_middleware.SyncOnlyMiddleware"


def tag(seq: int, full: bool = False) -> dict[str, str]:
    value = f"run=lab-test;stage=1;seq={seq};sent={time.time_ns()}" + (";full=1" if full else "")
    return {"X-Djtrace-Load": value}


def spans(trace: dict[str, Any], phase: str) -> list[dict[str, Any]]:
    return [s for s in trace["spans"] if s["phase"] == phase]


def ancestors(trace: dict[str, Any], span: dict[str, Any]) -> list[dict[str, Any]]:
    by_id = {s["id"]: s for s in trace["spans"]}
    out = []
    while span["parent"] is not None:
        span = by_id[span["parent"]]
        out.append(span)
    return out


def test_uvicorn_with_a_sync_only_middleware_records_each_hop_and_the_tag(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("DJTRACE_SAMPLE_SYNC_MIDDLEWARE", "1")
    port = free_port()
    sent: list[dict[str, str]] = []
    with capture(tmp_path, uvicorn_args(port, 1), port, "--quiet") as server:
        for seq in range(3):
            sent.append(tag(seq))
            status, _ = fetch(f"{server.base}/lab/io/?ms=20", headers=sent[-1])
            assert status == 200
        wait_for_traces(server.store, 3)
    traces = sorted(exported(server.store), key=lambda t: t["request"]["load"]["seq"])
    assert [t["request"]["load"]["seq"] for t in traces] == [0, 1, 2]
    for trace, header in zip(traces, sent, strict=True):
        load = trace["request"]["load"]
        assert f"sent={load['sent_ns']}" in header["X-Djtrace-Load"]
        assert load["run"] == "lab-test" and load["stage"] == 1
        assert "x-djtrace-load" not in trace["request"]["headers"]
        assert trace["started_at"] >= load["sent_ns"]  # the handler starts after it was sent
        assert trace["where"]["mode"] == "async" and isinstance(trace["where"]["thread_id"], int)
        root = trace["spans"][0]
        assert root["phase"] == "request" and root["attrs"]["cpu_ns"] > 0
        (body,) = spans(trace, "request.body")
        assert body["parent"] == root["id"]
        hops = spans(trace, "async.hop")
        assert all(h["attrs"]["wait_ns"] >= 0 and h["attrs"]["thread"] for h in hops)
        (layer,) = [s for s in spans(trace, "middleware") if s["name"] == SYNC_ONLY]
        assert any(a["phase"] == "async.hop" for a in ancestors(trace, layer))
        (view,) = spans(trace, "view")  # a sync view: a hop of its own, with its CPU
        assert any(a["phase"] == "async.hop" for a in ancestors(trace, view))
        assert view["attrs"]["cpu_ns"] < view["duration"]  # it slept 20 ms


def test_capture_sample_keeps_light_traces_and_a_tag_can_ask_for_a_full_one(tmp_path: Path):
    port = free_port()
    with capture(tmp_path, gunicorn_args(port, 1, 2), port, "--quiet", "--sample", "0") as server:
        for seq in range(3):
            assert fetch(f"{server.base}/books/fast/", headers=tag(seq))[0] == 200
        assert fetch(f"{server.base}/books/fast/", headers=tag(3, full=True))[0] == 200
        wait_for_traces(server.store, 4)
    traces = {t["request"]["load"]["seq"]: t for t in exported(server.store)}
    assert sorted(traces) == [0, 1, 2, 3]
    for seq in (0, 1, 2):
        light = traces[seq]
        (root,) = light["spans"]  # the root only
        assert root["attrs"]["sampled"] is False and root["attrs"]["cpu_ns"] > 0
        assert light["request"]["status"] == 200 and light["request"]["route"] == "books/fast/"
        assert light["duration"] == root["duration"] > 0
        assert light["where"]["pid"] and light["where"]["thread_id"]
    full = traces[3]
    assert full["request"]["load"]["full"] is True
    # A light trace still counts its queries (and their time) on the root.
    queries = spans(full, "db.query")
    for seq in (0, 1, 2):
        attrs = traces[seq]["spans"][0]["attrs"]
        assert attrs["db_count"] == len(queries) > 0
        assert 0 < attrs["db_ns"] < traces[seq]["duration"]
    assert "sampled" not in full["spans"][0]["attrs"]
    assert {"middleware", "view", "db.query", "response.close"} <= {
        s["phase"] for s in full["spans"]
    }
    # Every command counts a light trace's queries from those totals, and says what it is.
    listed = json.loads(
        run_djtrace("list", "--store", str(server.store), "--format", "json").stdout
    )
    assert [row["queries"] for row in listed] == [len(queries)] * 4
    light_id = traces[0]["id"]
    shown = run_djtrace("show", light_id, "--store", str(server.store)).stdout
    assert f"\n{len(queries)} quer" in shown and "A light trace (capture --sample" in shown
    assert "unaccounted" not in shown
    # stats takes a page's phases from its full traces alone: three light traces do not
    # make its time "unaccounted".
    (page,) = json.loads(
        run_djtrace("stats", "--store", str(server.store), "--format", "json").stdout
    )
    assert page["count"] == 4 and page["mean_queries"] == len(queries)
    phases = page["phases_p95_ms"]
    assert phases["view"] > 0 and phases.get("unaccounted", 0) < phases["view"]
    # Under gunicorn too the root starts as the handler is entered: request_started is in it.
    (started,) = [s for s in spans(full, "signal") if s["name"] == "request_started"]
    assert started["parent"] == full["spans"][0]["id"]
