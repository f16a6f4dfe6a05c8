"""Views for the lab-tracing tests: a DRF API that echoes what it was sent, a view that uses
a pooled PostgreSQL alias, and a receiver that takes a known time at request_started."""

from __future__ import annotations

import time
from typing import Any

from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

#: The raw bodies the echo API read, in order (the test compares them with what it sent).
received: list[bytes] = []

POOLED = "pooled"  # the alias test_lab_tracing adds, a PostgreSQL pool of 2
HOLD_S = 0.15
RECEIVER_SLEEP_S = 0.005


class BookIn(serializers.Serializer):
    title = serializers.CharField(max_length=100)
    pages = serializers.IntegerField(required=False)


class Echo(APIView):
    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []

    def post(self, request: Request) -> Response:
        return self._echo(request, 201)

    def patch(self, request: Request) -> Response:
        return self._echo(request, 200)

    def _echo(self, request: Request, status: int) -> Response:
        received.append(request.body)
        book = BookIn(data=request.data)
        book.is_valid(raise_exception=True)  # an empty body: 400, as DRF answers it
        return Response(book.validated_data, status=status)


def hold_pooled(request: HttpRequest) -> HttpResponse:
    """Check a connection out of the pool and keep it while the query sleeps."""
    with connections[POOLED].cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [HOLD_S])
    return JsonResponse({"held_s": HOLD_S})


def slow_receiver(sender: Any, **kwargs: Any) -> None:
    time.sleep(RECEIVER_SLEEP_S)


urlpatterns = [
    path("echo/", Echo.as_view()),
    path("hold-pooled/", hold_pooled),
    path("", include("djtrace.sample_site.urls")),
]
