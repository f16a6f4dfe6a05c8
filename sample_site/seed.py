"""Creates, migrates and seeds the sample database. Idempotent; cheap once done."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

from djtrace.sample_site.paths import data_dir

__all__ = ["data_dir", "ensure_database"]

PUBLISHERS = ["Penrose Press", "Lamport House", "Hopper & Co", "Dijkstra Books", "Knuth Editions"]
TAGS = ["fiction", "science", "history", "poetry", "mystery", "travel", "cooking", "computing"]
AUTHORS = [
    "Ada Quill",
    "Basil Thorn",
    "Cora Lind",
    "Dmitri Vale",
    "Edith Marsh",
    "Felix Rowe",
    "Greta Holm",
    "Hugo Pratt",
    "Iris Kent",
    "Jonas Beck",
    "Kira Sato",
    "Leo Grant",
    "Mina Okafor",
    "Nils Berg",
    "Olga Ruiz",
    "Pavel Novak",
    "Quinn Adler",
    "Rosa Lima",
    "Sven Dahl",
    "Tara Singh",
]
TITLES = [
    "The Quiet Compiler",
    "Salt and Signal",
    "A Map of Small Rivers",
    "Tea with Turing",
    "The Last Lighthouse",
    "Recursion Garden",
    "Notes from the Night Bus",
    "Paper Moons",
    "The Cartographer's Cat",
    "Kitchen Algorithms",
    "Seven Winters",
    "The Lost Semicolon",
    "Harbor Lights",
    "An Atlas of Clouds",
    "Midnight in the Archive",
    "The Copper Orchard",
    "Letters to a Young Coder",
    "Weather for Travellers",
    "The Glass Library",
    "Ember and Ink",
]
REVIEW_TEXTS = ["Loved it.", "A solid read.", "Not my cup of tea.", "Could not put it down."]
USERNAME, PASSWORD = "alice", "alice-secret-pw"

_done = False  # per-process: once ensured, later calls return immediately


def ensure_database() -> None:
    """Create the database if needed, apply pending migrations, seed an empty bookstore."""
    global _done
    if _done:
        return
    from django.db import connection

    # Several server workers may start at once on a fresh machine: one seeds, the rest wait.
    with _seed_lock():
        if connection.vendor == "postgresql":
            _ensure_pg_database()
        elif connection.vendor == "sqlite":
            name = str(connection.settings_dict["NAME"])
            if name and name != ":memory:" and not name.startswith("file:"):
                Path(name).parent.mkdir(parents=True, exist_ok=True)
        _migrate_if_needed()
        _seed_if_empty()
    _done = True


@contextlib.contextmanager
def _seed_lock() -> Iterator[None]:
    directory = data_dir()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: one process at a time is the user's own doing there
        yield
        return
    with open(directory / ".seed.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _ensure_pg_database() -> None:
    import psycopg
    from django.db import connection
    from psycopg import sql

    params = connection.settings_dict
    conninfo = {
        "host": params.get("HOST") or None,
        "port": params.get("PORT") or None,
        "user": params.get("USER") or None,
        "password": params.get("PASSWORD") or None,
    }
    # CREATE DATABASE can't run inside a transaction, and the target db may not exist yet.
    with psycopg.connect(dbname="postgres", autocommit=True, **conninfo) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (params["NAME"],)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(params["NAME"])))


def _migrate_if_needed() -> None:
    from django.core.management import call_command
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        call_command("migrate", verbosity=0, interactive=False)


def _seed_if_empty() -> None:
    from django.contrib.auth import get_user_model
    from django.db import transaction
    from djtrace.sample_site.bookstore.models import Author, Book, Publisher, Review, Tag

    if Book.objects.exists():
        return
    with transaction.atomic():
        publishers = [Publisher.objects.create(name=name) for name in PUBLISHERS]
        tags = [Tag.objects.create(name=name) for name in TAGS]
        authors = [
            Author.objects.create(name=name, bio=f"{name} writes about {TAGS[i % len(TAGS)]}.")
            for i, name in enumerate(AUTHORS)
        ]
        for i, title in enumerate(TITLES):
            # One distinct author per book, so /books/ does exactly one extra query per row.
            book = Book.objects.create(
                title=title,
                author=authors[i],
                publisher=publishers[i % len(publishers)],
                price=Decimal("9.99") + Decimal(i),
                published=dt.date(2001 + i, i % 12 + 1, i % 28 + 1),
            )
            picks = [i % 8, (i + 3) % 8] + ([(i + 5) % 8] if i % 2 == 0 else [])
            book.tags.set([tags[p] for p in picks])
            for r in range(i % 3 + 1):
                Review.objects.create(
                    book=book, rating=(i + r) % 5 + 1, text=REVIEW_TEXTS[(i + r) % 4]
                )
        user_model = get_user_model()
        if not user_model.objects.filter(username=USERNAME).exists():
            user_model.objects.create_user(USERNAME, "alice@example.com", PASSWORD)
