"""A sync-only middleware, switched on by DJTRACE_SAMPLE_SYNC_MIDDLEWARE=1.

Under ASGI Django runs it through sync_to_async on every request (and adapts the layers
around it), so `djtrace load` against uvicorn shows the thread hops it costs.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class SyncOnlyMiddleware:
    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response["X-Sync-Only"] = "1"
        return response
