"""Two custom middlewares in the two shapes Django supports, so djtrace shows both."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

GetResponse = Callable[[HttpRequest], HttpResponse]


def request_id_middleware(get_response: GetResponse) -> GetResponse:
    """Function-style factory middleware: echoes or assigns an X-Request-Id header."""
    # A per-process counter instead of uuid4 keeps ids deterministic for tests and demos.
    counter = itertools.count(1)

    def middleware(request: HttpRequest) -> HttpResponse:
        request_id = request.headers.get("X-Request-Id") or f"req-{next(counter):06d}"
        response = get_response(request)
        response["X-Request-Id"] = request_id
        return response

    return middleware


class ServerTimingMiddleware:
    """New-style class middleware: reports the time spent below it in a Server-Timing header."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        start = time.perf_counter()
        response = self.get_response(request)
        elapsed_ms = (time.perf_counter() - start) * 1000
        response["Server-Timing"] = f"app;dur={elapsed_ms:.1f}"
        return response

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: tuple[object, ...],
        view_kwargs: dict[str, object],
    ) -> HttpResponse | None:
        # Deliberately a no-op: it exists so the trace has a process_view hook to show.
        return None
