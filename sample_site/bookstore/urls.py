from django.contrib.auth import views as auth_views
from django.urls import path
from djtrace.sample_site.bookstore import lab_views, views

urlpatterns = [
    path("", views.index, name="index"),
    path("books/", views.book_list, name="book-list"),
    path("books/fast/", views.book_list_fast, name="book-list-fast"),
    path("books/<int:pk>/", views.BookDetailView.as_view(), name="book-detail"),
    path("books/<int:pk>/reviews/", views.book_reviews, name="book-reviews"),
    path("stream/", views.stream, name="stream"),
    path("api/books/", views.api_books, name="api-books"),
    path("async/", views.async_books, name="async-books"),
    path("boom/", views.boom, name="boom"),
    path("jinja/", views.jinja_books, name="jinja-books"),
    path("cached/", views.cached, name="cached"),
    path("session/", views.session_visits, name="session"),
    path("login-required/", views.private, name="private"),
    path(
        "login/", auth_views.LoginView.as_view(template_name="bookstore/login.html"), name="login"
    ),
    path("form/", views.order_form, name="form"),
    # The concurrency lab's pages (`djtrace load`): see lab_views.py.
    path("lab/io/", lab_views.io_wait, name="lab-io"),
    path("lab/cpu/", lab_views.cpu_bound, name="lab-cpu"),
    path("lab/async-io/", lab_views.async_io, name="lab-async-io"),
    path("lab/hold-db/", lab_views.hold_db, name="lab-hold-db"),
    path("lab/stall-once/", lab_views.stall_once, name="lab-stall-once"),
]
