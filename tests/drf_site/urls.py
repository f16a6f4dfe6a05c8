from django.urls import include, path
from rest_framework.routers import DefaultRouter

from tests.drf_site import views

router = DefaultRouter()
router.register("books", views.BookViewSet, basename="book")

urlpatterns = [
    path("api/", include(router.urls)),
    path("authors/", views.authors_page, name="authors"),
]
