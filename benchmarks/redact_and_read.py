"""What redaction costs a request, and what checking a trace costs reading it back.

Redaction runs on the request path (every request's headers and query string); the check
(`djtrace.validate.check`, inside `Trace.from_dict`) runs on every trace read from a store
or a file. Each figure is the median of --rounds timeit runs of --number calls, in µs.

    python benchmarks/redact_and_read.py [--number 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

# A browser's request: the headers a page load sends, a Referer with a query, a cookie.
META = {
    "HTTP_HOST": "localhost:8000",
    "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
    "HTTP_ACCEPT": "text/html,application/xhtml+xml,application/xml;q=0.9,image/webp,*/*;q=0.8",
    "HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.5",
    "HTTP_ACCEPT_ENCODING": "gzip, deflate, br",
    "HTTP_REFERER": "http://localhost:8000/books/?page=2",
    "HTTP_COOKIE": "sessionid=abc; csrftoken=def",
    "HTTP_CONNECTION": "keep-alive",
    "PATH_INFO": "/books/",
    "QUERY_STRING": "page=2&sort=title",
    "REQUEST_METHOD": "GET",
    "SERVER_NAME": "localhost",
    "SERVER_PORT": "8000",
}
QUERIES = {
    "plain": "page=2&sort=title",
    "percent-encoded name": "p%61ssword=s1&%74oken=s2&page=2",
}


def _median_us(call: Callable[[], object], number: int, rounds: int) -> float:
    times = timeit.repeat(call, number=number, repeat=rounds)
    return statistics.median(times) / number * 1e6


def _trace_document() -> dict:
    """A real trace of sample_site's /books/ (an N+1: 21 queries, 24 templates)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    import django

    django.setup()
    from djtrace.cli.inprocess import RequestSpec, run
    from djtrace.sample_site.seed import ensure_database

    ensure_database()
    return run(RequestSpec("GET", "/books/")).to_dict()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per timing run")
    parser.add_argument("--rounds", type=int, default=5, help="timing runs (the median is shown)")
    args = parser.parse_args(argv)
    for option in ("number", "rounds"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1")

    from djtrace import redact

    rows = [("headers_from_meta (a browser's 8 headers)", lambda: redact.headers_from_meta(META))]
    rows += [
        (f"query_string ({k})", lambda q=q: redact.query_string(q)) for k, q in QUERIES.items()
    ]

    from djtrace.model import Trace
    from djtrace.validate import check

    document = _trace_document()
    text = json.dumps(document)
    reads = max(1, args.number // 100)
    rows_read = [
        (f"json.loads of the trace ({len(document['spans'])} spans)", lambda: json.loads(text)),
        ("validate.check of it", lambda: check(document)),
        (
            "Trace.from_dict(json.loads(…)), check included",
            lambda: Trace.from_dict(json.loads(text)),
        ),
    ]
    print(f"{'':52} {'µs':>8}")
    for label, call in rows:
        print(f"{label:52} {_median_us(call, args.number, args.rounds):8.2f}")
    for label, call in rows_read:
        print(f"{label:52} {_median_us(call, reads, args.rounds):8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
