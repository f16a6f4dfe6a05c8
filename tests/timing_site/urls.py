"""Views that take a known time, to check each phase is charged what it spent."""

from __future__ import annotations

import time

from django.http import HttpRequest, HttpResponse
from django.urls import include, path

VIEW_SLEEP = 0.08
BEFORE_SLEEP = 0.05
AFTER_SLEEP = 0.03


def slow_view(request: HttpRequest) -> HttpResponse:
    time.sleep(VIEW_SLEEP)
    return HttpResponse("slow")


def sleepy_middleware(get_response):
    def middleware(request: HttpRequest) -> HttpResponse:
        time.sleep(BEFORE_SLEEP)
        response = get_response(request)
        time.sleep(AFTER_SLEEP)
        return response

    return middleware


urlpatterns = [path("slow/", slow_view, name="slow")]


def missing_key(request: HttpRequest) -> HttpResponse:
    return HttpResponse({}["missing"])


def async_hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse("hello")


urlpatterns += [
    path("missing-key/", missing_key),
    path("hello/", async_hello),
    path(
        "", include("djtrace.sample_site.urls")
    ),  # the sample pages, for templates that link to them
]
