from typing import Any

from django.core.management.base import BaseCommand
from django.db import connection
from djtrace.sample_site.seed import ensure_database


class Command(BaseCommand):
    help = "Create, migrate and seed the djtrace sample bookstore database (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        ensure_database()
        self.stdout.write(f"bookstore database ready: {connection.settings_dict['NAME']}")
