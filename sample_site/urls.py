from django.urls import include, path

urlpatterns = [
    path("", include("sample_site.bookstore.urls")),
]
