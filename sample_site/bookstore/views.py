"""Bookstore views: each one exercises a different part of Django's request pipeline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.response import TemplateResponse
from django.views.generic import DetailView
from djtrace.sample_site.bookstore.forms import OrderForm
from djtrace.sample_site.bookstore.models import Book
from djtrace.sample_site.bookstore.signals import book_viewed

COUNT_KEY = "bookstore:count"
PAIR_KEYS = ("bookstore:first-title", "bookstore:last-title")
CACHE_SECONDS = 30


def index(request: HttpRequest) -> HttpResponse:
    latest = Book.objects.select_related("author").order_by("-published", "id")[:3]
    return render(request, "bookstore/index.html", {"latest": latest})


def book_list(request: HttpRequest) -> HttpResponse:
    books = list(Book.objects.order_by("id"))
    rows = []
    for book in books:
        # Deliberate N+1: `book.author` runs one query per book. Compare /books/fast/.
        rows.append(
            {"id": book.pk, "title": book.title, "author": book.author.name, "price": book.price}
        )
    return render(request, "bookstore/book_list.html", {"rows": rows, "heading": "Books (N+1)"})


def book_list_fast(request: HttpRequest) -> HttpResponse:
    books = list(Book.objects.select_related("author").order_by("id"))
    rows = []
    for book in books:
        rows.append(
            {"id": book.pk, "title": book.title, "author": book.author.name, "price": book.price}
        )
    return render(request, "bookstore/book_list.html", {"rows": rows, "heading": "Books"})


class BookDetailView(DetailView):
    model = Book
    queryset = Book.objects.select_related("author", "publisher")
    template_name = "bookstore/book_detail.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        book_viewed.send(sender=Book, book=self.object, request=self.request)
        return context


def book_reviews(request: HttpRequest, pk: int) -> TemplateResponse:
    # A TemplateResponse renders lazily, after the view returns (a separate trace phase).
    book = get_object_or_404(Book, pk=pk)
    return TemplateResponse(
        request, "bookstore/reviews.html", {"book": book, "reviews": book.reviews.all()}
    )


def _stream_lines() -> Iterator[str]:
    yield "id\ttitle\tauthor\n"
    # The query runs while the body streams, after the view has returned.
    for book in Book.objects.select_related("author").order_by("id"):
        yield f"{book.pk}\t{book.title}\t{book.author.name}\n"


def stream(request: HttpRequest) -> StreamingHttpResponse:
    return StreamingHttpResponse(_stream_lines(), content_type="text/plain; charset=utf-8")


def api_books(request: HttpRequest) -> JsonResponse:
    books = Book.objects.select_related("author").order_by("id")
    data = [{"id": b.pk, "title": b.title, "author": b.author.name} for b in books]
    return JsonResponse({"books": data})


async def async_books(request: HttpRequest) -> JsonResponse:
    count = await Book.objects.acount()
    titles = [book.title async for book in Book.objects.order_by("id")[:5]]
    return JsonResponse({"count": count, "first": titles})


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("boom: deliberate failure for djtrace")


def jinja_books(request: HttpRequest) -> HttpResponse:
    books = list(Book.objects.select_related("author").order_by("id"))
    # `using` pins the Jinja2 engine; the Django engine is never asked for this template.
    return render(request, "bookstore/books.jinja", {"books": books}, using="jinja2")


def cached(request: HttpRequest) -> JsonResponse:
    count = cache.get(COUNT_KEY)
    hit = count is not None
    if not hit:
        count = Book.objects.count()
        cache.set(COUNT_KEY, count, CACHE_SECONDS)
    pair = cache.get_many(PAIR_KEYS)
    pair_hit = len(pair) == len(PAIR_KEYS)
    if not pair_hit:
        ordered = Book.objects.order_by("id")
        first, last = ordered.first(), ordered.last()
        titles = (first.title if first else "", last.title if last else "")
        pair = dict(zip(PAIR_KEYS, titles, strict=True))
        cache.set_many(pair, CACHE_SECONDS)
    return JsonResponse({"count": count, "hit": hit, "pair_hit": pair_hit, "pair": pair})


def session_visits(request: HttpRequest) -> JsonResponse:
    visits = request.session.get("visits", 0) + 1
    request.session["visits"] = visits
    return JsonResponse({"visits": visits})


@login_required
def private(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"username": request.user.get_username()})


def order_form(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = OrderForm(request.POST)
        if form.is_valid():
            messages.success(request, f"Thanks {form.cleaned_data['name']}, order received.")
            return redirect("form")  # post/redirect/get; the message shows on the next GET
    else:
        form = OrderForm()
    return render(request, "bookstore/form.html", {"form": form})
