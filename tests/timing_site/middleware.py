"""Middleware of every style, for the middleware hook tests."""

from __future__ import annotations

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpResponse
from django.utils.deprecation import MiddlewareMixin


def async_only_middleware(get_response):
    async def middleware(request):
        response = await get_response(request)
        response["X-Async-Only"] = "yes"
        return response

    middleware.async_capable = True
    middleware.sync_capable = False
    return middleware


async_only_middleware.async_capable = True
async_only_middleware.sync_capable = False


class DualModeMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self.__acall__(request)
        return self.get_response(request)

    async def __acall__(self, request):
        return await self.get_response(request)


class HooksMiddleware(MiddlewareMixin):
    def process_template_response(self, request, response):
        response.context_data = {**(response.context_data or {}), "hooked": True}
        return response

    def process_exception(self, request, exception):
        if isinstance(exception, KeyError):
            return HttpResponse("handled by HooksMiddleware", status=418)
        return None
