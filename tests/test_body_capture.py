"""Request bodies: recorded only when switched on, size-capped, secrets redacted, and the view
still reads exactly what the client sent."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
from djtrace import trace
from djtrace.recorder import config

FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def bodies():
    config.capture_body = 1024
    yield
    config.capture_body = 0


@pytest.fixture
def order() -> dict[str, str]:
    from djtrace.sample_site.bookstore.models import Book

    book = Book.objects.order_by("id").first()
    return {
        "name": "Ada",
        "email": "ada@example.com",
        "book": str(book.pk),
        "quantity": "1",
        "delivery": "post",
        "password": "hunter2",
    }


def test_form_body_is_recorded_redacted_and_the_view_reads_it(client, bodies, order):
    with trace() as t:
        response = client.post("/form/", urlencode(order), content_type=FORM)
    assert response.status_code == 302  # the form was valid: the view got the whole body
    request = t.requests[0].request
    assert "name=Ada" in request["body"] and "password=[redacted]" in request["body"]
    assert request["body_size"] == len(urlencode(order))
    assert "hunter2" not in json.dumps(t.requests[0].to_dict())


def test_bodies_are_off_by_default(client, order):
    with trace() as t:
        client.post("/form/", urlencode(order), content_type=FORM)
    assert "body" not in t.requests[0].request
    assert "body_size" not in t.requests[0].request


def test_json_body_keys_are_redacted_at_any_depth(client, bodies):
    payload = {"title": "Dune", "auth": {"token": "t-1", "user": "ada"}, "items": [{"pwd": "x"}]}
    with trace() as t:
        client.post("/api/books/", json.dumps(payload), content_type="application/json")
    body = json.loads(t.requests[0].request["body"])
    assert body == {"title": "Dune", "auth": "[redacted]", "items": [{"pwd": "[redacted]"}]}


def test_uploads_large_and_unparseable_bodies_are_left_out(client, bodies, order):
    with trace() as t:
        response = client.post("/form/", order)  # multipart, as a browser upload would be
        client.post("/api/books/", "x" * 5000, content_type="text/plain")
        client.post("/api/books/", "my secret is 42", content_type="text/plain")
        client.post("/api/books/", b"\xff\xfe\x00", content_type="application/octet-stream")
    assert response.status_code == 302  # the multipart form still parsed
    upload, large, secret, binary = (r.request for r in t.requests)
    assert upload["body_omitted"].startswith("multipart") and "body" not in upload
    assert large == {**large, "body_size": 5000, "body_omitted": "larger than the 1024-byte cap"}
    assert secret["body_omitted"] == "mentions a sensitive-looking field"
    assert binary["body_omitted"] == "binary"
