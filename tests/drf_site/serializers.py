from __future__ import annotations

from djtrace.sample_site.bookstore.models import Book
from rest_framework import serializers


class BookSerializer(serializers.ModelSerializer):
    author_name = serializers.SerializerMethodField()

    class Meta:
        model = Book
        fields = ["id", "title", "price", "published", "author", "publisher", "author_name"]

    def get_author_name(self, book: Book) -> str:
        return book.author.name  # the N+1: one query per book (the tests look for this line)
