"""A custom signal, so traces show a signal send with a receiver that does a query."""

from __future__ import annotations

from typing import Any

from django.db.models import F
from django.dispatch import Signal

# Sent by BookDetailView with kwargs: book, request.
book_viewed = Signal()


def count_book_view(sender: Any, book: Any, **kwargs: Any) -> None:
    from djtrace.sample_site.bookstore.models import Book

    # F() makes it a single atomic UPDATE, with no read-modify-write race.
    Book.objects.filter(pk=book.pk).update(views=F("views") + 1)
