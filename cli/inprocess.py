"""One request through the project's real handler stack, in this process.

The request goes through Django's own WSGIHandler (or ASGIHandler), every middleware
included, and its body is iterated and closed as a server would, so the trace holds the
streaming and close phases too. Like Django's test client, CSRF checks are not enforced
unless asked (the middleware still runs and is traced).
"""

from __future__ import annotations

import asyncio
import io
import sys
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from djtrace import Trace, trace
from djtrace.cli.errors import CliError, describe

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_BODY_METHODS = ("POST", "PUT", "PATCH")  # a client sends Content-Length even when empty


@dataclass
class RequestSpec:
    method: str = "GET"
    path: str = "/"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    user: str | None = None
    host: str | None = None
    enforce_csrf: bool = False
    asgi: bool = False

    def split(self) -> tuple[str, str]:
        parts = urlsplit(self.path)
        return parts.path or "/", parts.query


def parse_header(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition(":")
    name = name.strip()
    if not sep or not name or any(c.isspace() for c in name):
        raise CliError(f"malformed header {raw!r}: expected 'Name: value'")
    return name, value.strip()


def default_host() -> str:
    """A host the project's ALLOWED_HOSTS accepts, so the request is not refused as a 400."""
    from django.conf import settings

    for host in settings.ALLOWED_HOSTS:
        if host == "*":
            break
        if host:
            return host.lstrip(".")
    return "localhost"


def _login_cookie(username: str) -> str:
    from django.contrib.auth import get_user_model
    from django.db import DatabaseError
    from django.test import Client

    model = get_user_model()
    try:
        user = model._default_manager.get_by_natural_key(username)
        client = Client()
        client.force_login(user)
    except model.DoesNotExist:
        raise CliError(f"--user: no user {username!r} in this project's database") from None
    except DatabaseError as exc:
        raise CliError(f"--user: cannot log in ({describe(exc)}); has migrate run?") from None
    return "; ".join(f"{m.key}={m.value}" for m in client.cookies.values())


def _wsgi_environ(spec: RequestSpec, host: str) -> dict[str, Any]:
    path, query = spec.split()
    environ: dict[str, Any] = {
        "REQUEST_METHOD": spec.method,
        "PATH_INFO": unquote(path).encode().decode("latin-1"),
        "SCRIPT_NAME": "",
        "QUERY_STRING": query,
        "SERVER_NAME": host,
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "djtrace-request",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": host,
        "CONTENT_LENGTH": str(len(spec.body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(spec.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in spec.headers:
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"] = value
    return environ


def _run_wsgi(spec: RequestSpec, host: str) -> None:
    from django.core.handlers.wsgi import WSGIHandler

    class Handler(WSGIHandler):
        def get_response(self, request: Any) -> Any:
            request._dont_enforce_csrf_checks = not spec.enforce_csrf
            return super().get_response(request)

    response = Handler()(_wsgi_environ(spec, host), lambda status, headers, exc_info=None: None)
    try:
        for _ in response:
            pass
    finally:
        response.close()


def _run_asgi(spec: RequestSpec, host: str) -> None:
    from django.core.handlers.asgi import ASGIHandler

    class Handler(ASGIHandler):
        async def get_response_async(self, request: Any) -> Any:
            request._dont_enforce_csrf_checks = not spec.enforce_csrf
            return await super().get_response_async(request)

    path, query = spec.split()
    headers = [(b"host", host.encode())] + [
        (name.lower().encode(), value.encode("latin-1")) for name, value in spec.headers
    ]
    # As a client sends it (and as the WSGI run says it): without it Django reads no body.
    if (spec.body or spec.method in _BODY_METHODS) and not any(
        name == b"content-length" for name, _ in headers
    ):
        headers.append((b"content-length", str(len(spec.body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": spec.method,
        "scheme": "http",
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": (host, 80),
    }

    async def main() -> None:
        done = asyncio.Event()
        sent_body = False

        async def receive() -> dict[str, Any]:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": spec.body, "more_body": False}
            await done.wait()  # the client stays connected until the response is complete
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done.set()

        await Handler()(scope, receive, send)
        done.set()

    asyncio.run(main())


def run(spec: RequestSpec) -> Trace:
    """Send the request through the real stack and return its trace."""
    headers = list(spec.headers)
    if spec.user:
        headers.append(("Cookie", _login_cookie(spec.user)))
    spec = RequestSpec(**{**spec.__dict__, "headers": headers})
    host = spec.host or default_host()
    # Start as a server's next request would: a connection djtrace's own setup left open
    # (logging in, a previous --repeat run) is closed first, not by this request_started.
    from django.db import close_old_connections

    close_old_connections()
    with trace() as session:
        try:
            (_run_asgi if spec.asgi else _run_wsgi)(spec, host)
        except Exception as exc:
            # Django turns a request's errors into responses; what escapes is the project
            # failing to load (a middleware that cannot be imported, a broken setting).
            raise CliError(f"the project failed before it could answer: {describe(exc)}") from None
    if not session.requests:
        raise CliError("the request did not reach Django's handler; nothing was traced", code=1)
    return session.requests[-1]
