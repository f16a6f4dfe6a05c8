"""sample_site's pages plus the cheapest possible one, for the benchmark's trivial request."""

from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def trivial(request: HttpRequest) -> HttpResponse:
    return HttpResponse(b"ok", content_type="text/plain")


urlpatterns = [
    path("bench/trivial/", trivial, name="bench-trivial"),
    path("", include("djtrace.sample_site.bookstore.urls")),
]
