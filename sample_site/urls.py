from django.urls import include, path

urlpatterns = [
    path("", include("djtrace.sample_site.bookstore.urls")),
]
