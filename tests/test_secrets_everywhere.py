"""No secret a client sends reaches anything djtrace writes or shows.

Every variant of issue 17 (percent-encoded names in the query and in form bodies, a
Referer carrying a token, session and refresh headers, `;` separated pairs) and the ones
covered before (Authorization, Cookie, X-Api-Key, JSON fields) go through a real gunicorn
(gthread) under `djtrace capture --capture-body --otlp`. Then the store file, every export
format, the OTLP bytes a real receiver got and the output of every command are searched for
the secret values: zero hits.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.capture_support import capture, fetch, free_port, gunicorn_args, wait_for_traces
from tests.conftest import run_djtrace
from tests.test_otlp import Receiver

FORM = "application/x-www-form-urlencoded"

# Each secret is a distinct word found nowhere else, so any hit is a leak of that one.
S = {name: f"Zq{name}Secret{i}x" for i, name in enumerate(
    ["QueryPwd", "QueryTok", "SemiPwd", "NextPwd", "FormPwd", "FormKey", "Referer",
     "SessionHdr", "RefreshHdr", "Bearer", "Cookie", "ApiKey", "JsonTok", "TextPwd"]
)}  # fmt: skip

REQUESTS: list[tuple[str, str, bytes | None, dict[str, str]]] = [
    # (method, path and query, body, headers)
    ("GET", f"/books/fast/?p%61ssword={S['QueryPwd']}&%74oken={S['QueryTok']}&page=1", None, {}),
    ("GET", f"/books/fast/?q=1;password={S['SemiPwd']}", None, {}),
    ("GET", f"/books/fast/?next={quote('/login/?password=' + S['NextPwd'], safe='')}", None, {}),
    (
        "POST",
        "/form/",
        f"name=Ada&p%61ssword={S['FormPwd']}&api%5Fkey={S['FormKey']}".encode(),
        {"Content-Type": FORM},
    ),
    (
        "GET",
        "/books/fast/",
        None,
        {
            "Referer": f"http://127.0.0.1/login/?token={S['Referer']}&x=1",
            "X-Session-Id": S["SessionHdr"],
            "X-Refresh": S["RefreshHdr"],
            "Authorization": f"Bearer {S['Bearer']}",
            "Cookie": f"sessionid={S['Cookie']}",
            "X-Api-Key": S["ApiKey"],
        },
    ),
    (
        "POST",
        "/api/books/",
        json.dumps({"title": "Dune", "auth": {"token": S["JsonTok"]}}).encode(),
        {"Content-Type": "application/json"},
    ),
    ("POST", "/api/books/", f"p%61ssword: {S['TextPwd']}".encode(), {"Content-Type": "text/plain"}),
]


def leaks(text: str | bytes) -> list[str]:
    data = text.encode("utf-8", "replace") if isinstance(text, str) else text
    return [name for name, value in S.items() if value.encode() in data]


@pytest.fixture
def receiver():
    rx = Receiver()
    yield rx
    rx.close()


def test_no_secret_reaches_the_store_any_export_otlp_or_any_command(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export within 0.1 s, not 5 s
    port = free_port()
    options = ("--capture-body", "--otlp", "--otlp-endpoint", receiver.base)
    with capture(tmp_path, gunicorn_args(port, workers=1, threads=4), port, *options) as server:
        for method, path, body, headers in REQUESTS:
            status, _ = fetch(server.base + path, data=body, headers=headers)
            assert status < 500 or method == "POST", (path, status)
        wait_for_traces(server.store, len(REQUESTS))
        for _ in range(1200):  # a hang guard, not a time limit
            if len(receiver.traces()) >= len(REQUESTS):
                break
            time.sleep(0.05)
        assert len(receiver.traces()) >= len(REQUESTS), server.stderr()
    store = server.store
    outputs: dict[str, str | bytes] = {
        "capture stdout": server.stdout(),
        "capture stderr": server.stderr(),
        "otlp bytes": b"".join(m.SerializeToString() for m in receiver.requests),
    }
    for suffix in ("", "-wal"):
        if Path(f"{store}{suffix}").exists():
            outputs[f"store file{suffix}"] = Path(f"{store}{suffix}").read_bytes()

    # The redaction really ran on what was sent (not a request that never arrived).
    lines = [
        json.loads(line)
        for line in run_djtrace("export", "--store", str(store)).stdout.splitlines()
    ]
    queries = " ".join(str(t["request"].get("query")) for t in lines)
    assert "p%61ssword=[redacted]" in queries and "%74oken=[redacted]" in queries
    assert "q=1;password=[redacted]" in queries and "next=[redacted]" in queries
    bodies = " ".join(str(t["request"].get("body")) for t in lines)
    assert "p%61ssword=[redacted]" in bodies and "api%5Fkey=[redacted]" in bodies
    headers = [t["request"]["headers"] for t in lines if "referer" in t["request"]["headers"]]
    assert headers[0]["referer"] == "http://127.0.0.1/login/?token=[redacted]&x=1"
    assert headers[0]["x-session-id"] == headers[0]["x-refresh"] == "[redacted]"

    at = ["--store", str(store)]
    for fmt in ("jsonl", "jaeger-json", "chrome"):
        out = tmp_path / f"export.{fmt}"
        result = run_djtrace("export", "--to", fmt, "-o", str(out), *at)
        assert result.returncode == 0, result.stderr
        outputs[f"export {fmt}"] = out.read_bytes()
    before = len(receiver.requests)
    result = run_djtrace("export", "--to", "otlp", "-o", receiver.base, *at)
    assert result.returncode == 0 and len(receiver.requests) > before, result.stderr
    outputs["export otlp bytes"] = b"".join(m.SerializeToString() for m in receiver.requests)

    ids = [t["id"] for t in lines]
    commands = [
        ["list", "--limit", "100"],
        ["list", "--format", "json"],
        ["stats"],
        ["diff", ids[0], ids[-1]],
        *[["show", trace_id, "--hide-under", "0"] for trace_id in ids],
        *[["show", trace_id, "--format", "json"] for trace_id in ids],
        ["timeline", "--perfetto", str(tmp_path / "timeline.json")],
        ["replay", ids[0], "--cold"],  # in-process: the replay's own tree and the comparison
    ]
    for args in commands:
        result = run_djtrace(*args, *at, env={"COLUMNS": "400"})
        assert result.returncode == 0, (args, result.stderr)
        outputs[" ".join(args)] = result.stdout + result.stderr

    outputs["timeline --perfetto file"] = (tmp_path / "timeline.json").read_bytes()
    found = {where: leaks(text) for where, text in outputs.items() if leaks(text)}
    assert found == {}


def test_import_redacts_a_trace_written_before_these_rules(tmp_path: Path) -> None:
    """A file from an older djtrace (or written by hand) holding secrets in the query, the
    headers and a form body: what import puts in the store holds none of them."""
    from djtrace.cli.inprocess import RequestSpec, run

    document = run(RequestSpec("GET", "/books/fast/")).to_dict()
    document["request"].update(
        query=f"p%61ssword={S['QueryPwd']}&q=1;token={S['SemiPwd']}",
        headers={
            "referer": f"http://x/?%74oken={S['Referer']}",
            "x-session-id": S["SessionHdr"],
            "content-type": FORM,
        },
        body=f"api%5Fkey={S['FormKey']}&name=Ada",
    )
    source = tmp_path / "old.jsonl"
    source.write_text(json.dumps(document) + "\n")
    store = tmp_path / "store.sqlite3"
    result = run_djtrace("import", str(source), "--store", str(store))
    assert result.returncode == 0, result.stderr
    exported = run_djtrace("export", "--store", str(store)).stdout
    request = json.loads(exported)["request"]
    assert request["query"] == "p%61ssword=[redacted]&q=1;token=[redacted]"
    assert request["body"] == "api%5Fkey=[redacted]&name=Ada"
    files = b"".join(p.read_bytes() for p in tmp_path.glob("store.sqlite3*"))  # and its WAL
    assert leaks(files + exported.encode()) == []
