from django.apps import AppConfig


class BookstoreConfig(AppConfig):
    name = "djtrace.sample_site.bookstore"
    label = "bookstore"
    verbose_name = "Bookstore (djtrace sample)"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from djtrace.sample_site.bookstore.signals import book_viewed, count_book_view

        # dispatch_uid keeps it to one receiver even if ready() runs twice (e.g. in tests).
        book_viewed.connect(count_book_view, dispatch_uid="bookstore.count_book_view")
