"""The documented JSON form: round trip, schema check, and the inline API's data."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from djtrace import SCHEMA_VERSION, SchemaError, Trace, trace
from djtrace.cli.render import render_trace

from tests.helpers import rendered


def traced(path: str) -> Trace:
    with trace() as t:
        Client().get(path)
    return t.requests[0]


def test_a_trace_survives_a_json_round_trip():
    original = traced("/books/")
    document = json.loads(json.dumps(original.to_dict()))
    assert document["schema"] == SCHEMA_VERSION
    loaded = Trace.from_dict(document)
    assert loaded.id == original.id
    assert loaded.duration == original.duration
    assert [(s.id, s.parent, s.phase, s.name, s.start, s.duration) for s in loaded.spans] == [
        (s.id, s.parent, s.phase, s.name, s.start, s.duration) for s in original.spans
    ]
    assert loaded.findings == document["findings"]
    assert all(isinstance(s.start, int) and isinstance(s.duration, int) for s in loaded.spans)


@pytest.mark.parametrize("schema", [None, 0, SCHEMA_VERSION + 1, "1"])
def test_a_reader_refuses_a_schema_it_does_not_know(schema):
    document = traced("/books/fast/").to_dict()
    document["schema"] = schema
    with pytest.raises(SchemaError, match="not supported by this djtrace"):
        Trace.from_dict(document)


def test_a_malformed_document_is_a_schema_error_not_a_crash():
    document = traced("/books/fast/").to_dict()
    del document["spans"][0]["phase"]
    with pytest.raises(SchemaError, match="malformed trace"):
        Trace.from_dict(document)
    with pytest.raises(SchemaError):
        Trace.from_dict(["not", "an", "object"])


def test_inline_session_exposes_requests_queries_and_spans_and_shows_the_tree(capsys):
    with trace() as t:
        client = Client()
        client.get("/books/")
        client.get("/books/fast/")
    assert [r.request["path"] for r in t.requests] == ["/books/", "/books/fast/"]
    assert len(t.queries) == 22
    assert len(t.spans) == sum(len(r.spans) for r in t.requests)
    t.show()
    out = capsys.readouterr().out
    assert "GET /books/  →  200 OK" in out and "GET /books/fast/  →  200 OK" in out


def test_rendered_tree_prunes_fast_detail_but_never_the_pipeline():
    tr = traced("/books/")
    everything = rendered(render_trace(tr, 0))
    pruned = rendered(render_trace(tr, hide_under_ms=1000))
    assert "template _nav.html" in everything and "template _nav.html" not in pruned
    assert "faster span" in pruned
    for phase in ("SecurityMiddleware  before", "URL resolve", "view ", "response close"):
        assert phase in pruned
