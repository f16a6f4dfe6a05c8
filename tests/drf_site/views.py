from __future__ import annotations

from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from djtrace.sample_site.bookstore.models import Book
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from tests.drf_site.serializers import BookSerializer


class BookViewSet(viewsets.ModelViewSet):
    queryset = Book.objects.order_by("id")
    serializer_class = BookSerializer

    @action(detail=False)
    def recent(self, request: Request) -> Response:
        books = self.get_queryset()[:6]
        serializer = self.get_serializer(books, many=True)
        return Response(serializer.data)  # the books' query runs in here, the N+1 deeper

    def perform_create(self, serializer: Any) -> None:
        with transaction.atomic():
            serializer.save()

    def perform_update(self, serializer: Any) -> None:
        with transaction.atomic():
            serializer.save()


def authors_page(request: HttpRequest) -> HttpResponse:
    books = Book.objects.order_by("id")[:6]
    return render(request, "drf_site/authors.html", {"books": books})
