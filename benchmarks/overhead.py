"""What tracing costs a Django request: djtrace against no tracer, OpenTelemetry and Sentry.

The same request mix (a trivial view, sample_site's N+1 page /books/, the cache view
/cached/ and the JSON view /api/books/) goes through Django's real WSGIHandler in-process,
body iterated and closed as a server does. Each configuration runs in a process of its
own, and the configurations take turns, round after round, so a slow stretch of the
machine hits them all alike. Every ratio compares a configuration with the baseline of
the same round.

    python benchmarks/overhead.py                 # 7 rounds, Markdown tables on stdout
    python benchmarks/overhead.py --rounds 9 --requests 300 --json results.json

Configurations:
  baseline       djtrace not installed ("tracer" removed from INSTALLED_APPS)
  djtrace        every hook on, every request traced (config.record_all), traces kept in
                 a bounded in-memory ring
  djtrace+store  the same, plus the trace store's writer (a bounded queue drained by a
                 background thread)
  otel           opentelemetry-instrumentation-django + -sqlite3, SimpleSpanProcessor into
                 an InMemorySpanExporter
  sentry         sentry-sdk's DjangoIntegration (middleware spans on), traces_sample_rate=1,
                 a transport that drops every envelope
  djtrace-idle   (on request) djtrace installed but recording nothing: the cost of its hooks
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ("baseline", "djtrace", "djtrace+store", "otel", "sentry", "djtrace-idle")
DEFAULT_CONFIGS = CONFIGS[:5]
PATHS = ("/bench/trivial/", "/books/", "/cached/", "/api/books/")
LABELS = {"/bench/trivial/": "trivial", "/books/": "N+1 /books/", "/cached/": "/cached/"}
LABELS["/api/books/"] = "/api/books/"
#: The modules a configuration needs beyond djtrace's own dependencies.
NEEDS = {
    "otel": ("opentelemetry.instrumentation.django", "opentelemetry.instrumentation.sqlite3"),
    "sentry": ("sentry_sdk",),
}


# --- the child: one configuration, one round --------------------------------------------------


def _environ(path: str) -> dict[str, Any]:
    """A WSGI environ like the one a server builds for `GET path` (same for every config)."""
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "localhost",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "SERVER_SOFTWARE": "djtrace-bench",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "localhost",
        "HTTP_USER_AGENT": "djtrace-bench/1",
        "HTTP_ACCEPT": "text/html,application/json",
        "CONTENT_LENGTH": "0",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def _start_response(status: str, headers: list[Any], exc_info: Any = None) -> None:
    if not status.startswith("200"):
        raise SystemExit(f"benchmark request failed: {status}")


def _serve(handler: Any, path: str) -> None:
    """One request exactly as a WSGI server runs it: call, iterate the body, close."""
    response = handler(_environ(path), _start_response)
    try:
        for _ in response:
            pass
    finally:
        response.close()


def _setup_otel() -> Callable[[], int]:
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    DjangoInstrumentor().instrument(tracer_provider=provider)
    SQLite3Instrumentor().instrument(tracer_provider=provider)

    def spans() -> int:
        count = len(exporter.get_finished_spans())
        exporter.clear()
        return count

    return spans


def _setup_sentry() -> Callable[[], int]:
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration
    from sentry_sdk.transport import Transport

    seen = [0]

    class DropTransport(Transport):
        """Counts the spans of each transaction and sends nothing anywhere."""

        def capture_envelope(self, envelope: Any) -> None:
            for item in envelope.items:
                event = item.get_transaction_event()
                if event is not None:
                    seen[0] += 1 + len(event.get("spans") or [])

    sentry_sdk.init(
        dsn="http://public@127.0.0.1:9/1",  # never contacted: the transport drops everything
        transport=DropTransport,
        traces_sample_rate=1.0,
        integrations=[DjangoIntegration(middleware_spans=True)],
    )

    def spans() -> int:
        count, seen[0] = seen[0], 0
        return count

    return spans


def _store_sink() -> tuple[Callable[[Any], None], str]:
    """The trace store's writer (exporters.writer.StoreWriter: a bounded queue drained into
    SQLite by a background thread) or, where that module is missing, a stand-in of the same
    shape: a bounded queue and a thread doing to_dict + json.dumps."""
    try:
        from exporters.writer import StoreWriter
    except ImportError:
        StoreWriter = None  # noqa: N806
    if StoreWriter is not None:
        path = Path(os.environ["DJTRACE_SAMPLE_DATA"]) / f"bench-store-{os.getpid()}.sqlite3"
        return StoreWriter(path), "exporters.writer.StoreWriter (SQLite trace store)"
    import queue
    import threading

    pending: queue.Queue[Any] = queue.Queue(maxsize=1000)

    def write() -> None:
        while True:
            trace = pending.get()
            json.dumps(trace.to_dict())

    threading.Thread(target=write, name="djtrace-bench-writer", daemon=True).start()

    def sink(trace: Any) -> None:
        try:
            pending.put_nowait(trace)
        except queue.Full:
            pass  # dropped, as the real writer does: never block a request

    return sink, "stand-in queue+thread (to_dict + json.dumps)"


def _setup_djtrace(store: bool) -> tuple[Callable[[], int], dict[str, Any]]:
    from collections import deque

    from tracer.recorder import add_sink, config

    config.record_all = True
    kept: deque[Any] = deque(maxlen=64)  # traces collected in memory, as a live view keeps them
    add_sink(kept.append)
    info: dict[str, Any] = {}
    if store:
        sink, info["store"] = _store_sink()
        add_sink(sink)
        info["writer"] = sink

    def spans() -> int:
        return len(kept[-1].spans) if kept else 0

    return spans, info


def _memory_per_trace(handler: Any, path: str, count: int = 30) -> int:
    """Bytes a finished trace of `path` keeps alive (tracemalloc, traces held in a list)."""
    import gc
    import tracemalloc

    from tracer.recorder import add_sink, remove_sink

    held: list[Any] = []
    for _ in range(3):
        _serve(handler, path)  # let tracemalloc-visible caches settle
    gc.collect()
    tracemalloc.start()
    _serve(handler, path)
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    add_sink(held.append)
    try:
        for _ in range(count):
            _serve(handler, path)
    finally:
        remove_sink(held.append)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) // max(len(held), 1)


def child(config: str, requests: int, warmup: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    os.environ["DJTRACE_BENCH_TRACER"] = "1" if config.startswith("djtrace") else "0"
    spans: Callable[[], int] = lambda: 0  # noqa: E731
    info: dict[str, Any] = {}
    if config == "otel":
        spans = _setup_otel()
    elif config == "sentry":
        spans = _setup_sentry()

    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler

    from sample_site.seed import ensure_database

    ensure_database()
    if config in ("djtrace", "djtrace+store"):
        spans, info = _setup_djtrace(store=config == "djtrace+store")
    handler = WSGIHandler()

    for _ in range(warmup):
        for path in PATHS:
            _serve(handler, path)
            spans()
    clock = time.perf_counter_ns
    times: dict[str, list[int]] = {path: [] for path in PATHS}
    counts: dict[str, list[int]] = {path: [] for path in PATHS}
    for _ in range(requests):
        for path in PATHS:  # the paths interleave too
            t0 = clock()
            _serve(handler, path)
            times[path].append(clock() - t0)
            counts[path].append(spans())
    writer = info.pop("writer", None)
    if writer is not None:  # traces the writer had to drop (queue full) while measured
        info["dropped"] = getattr(writer, "dropped", None)
    result: dict[str, Any] = {
        "config": config,
        "median_ns": {path: statistics.median(values) for path, values in times.items()},
        "spans": {path: statistics.median(values) for path, values in counts.items()},
        **info,
    }
    if config == "djtrace":
        result["memory"] = {path: _memory_per_trace(handler, path) for path in PATHS}
    return result


# --- the parent: rounds of child processes, then the table ------------------------------------


def _run_child(config: str, args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", config]
    command += ["--requests", str(args.requests), "--warmup", str(args.warmup)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"error: {config} failed:\n{done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in (
        "django",
        "opentelemetry-sdk",
        "opentelemetry-instrumentation-django",
        "opentelemetry-instrumentation-sqlite3",
        "sentry-sdk",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def _machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def _us(ns: float) -> str:
    return f"{ns / 1000:,.0f} µs"


def report(rounds: list[dict[str, dict[str, Any]]], args: argparse.Namespace) -> str:
    configs = [c for c in CONFIGS if c in rounds[0]]
    lines: list[str] = []
    out = lines.append

    def per_round(config: str, path: str | None) -> tuple[list[float], list[float]]:
        """(medians, ratios to the same round's baseline); path None is the whole mix."""
        medians, ratios = [], []
        for r in rounds:
            mine, base = r[config]["median_ns"], r["baseline"]["median_ns"]
            m = sum(mine.values()) if path is None else mine[path]
            b = sum(base.values()) if path is None else base[path]
            medians.append(m)
            ratios.append(m / b)
        return medians, ratios

    columns = [*PATHS, None]
    header = ["config", *(LABELS[p] for p in PATHS), "whole mix"]
    out("| " + " | ".join(header) + " |")
    out("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for config in configs:
        cells = [config]
        for path in columns:
            medians, ratios = per_round(config, path)
            cells.append(f"{_us(statistics.median(medians))} {statistics.median(ratios):.3f}×")
        out("| " + " | ".join(cells) + " |")
    out("")
    out(
        "Median µs per request (whole mix: one request of each kind), then the median over "
        f"{len(rounds)} rounds of the ratio to that round's baseline."
    )
    spread = []
    for path in columns:
        medians, _ = per_round("baseline", path)
        mid = statistics.median(medians)
        spread.append(max(abs(m / mid - 1) for m in medians))
    out(f"Baseline round-to-round spread: up to ±{max(spread) * 100:.1f}% (the noise floor).")
    out("")

    out("| spans per request | " + " | ".join(LABELS[p] for p in PATHS) + " |")
    out("|---|" + "---:|" * len(PATHS))
    for config in configs:
        if config == "baseline":
            continue
        counts = [statistics.median(r[config]["spans"][p] for r in rounds) for p in PATHS]
        out(f"| {config} | " + " | ".join(f"{c:g}" for c in counts) + " |")
    out("")

    out("| cost per span (overhead ÷ spans) | " + " | ".join(LABELS[p] for p in PATHS) + " |")
    out("|---|" + "---:|" * len(PATHS))
    for config in configs:
        if config == "baseline":
            continue
        cells = []
        for path in PATHS:
            per_span = []
            for r in rounds:
                extra = r[config]["median_ns"][path] - r["baseline"]["median_ns"][path]
                n = r[config]["spans"][path]
                if n:
                    per_span.append(extra / n)
            cells.append(f"{statistics.median(per_span) / 1000:.2f} µs" if per_span else "–")
        out(f"| {config} | " + " | ".join(cells) + " |")
    out("")

    memory = [r["djtrace"]["memory"] for r in rounds if "memory" in r.get("djtrace", {})]
    if memory:
        cells = [f"{statistics.median(m[p] for m in memory) / 1024:.1f} KiB" for p in PATHS]
        out("| memory per finished djtrace trace | " + " | ".join(cells) + " |")
        out("|---|" + "---:|" * len(PATHS))
        out("")
    store = next((r["djtrace+store"].get("store") for r in rounds if "djtrace+store" in r), None)
    if store:
        dropped = [r["djtrace+store"].get("dropped") for r in rounds if "djtrace+store" in r]
        drops = sum(d for d in dropped if d) if any(d is not None for d in dropped) else "?"
        out(f"djtrace+store writer: {store}; traces dropped on a full queue: {drops}.")
    out(
        f"{len(rounds)} rounds × {len(configs)} configurations, one process each; "
        f"{args.warmup} warm-up and {args.requests} measured requests of each kind per process."
    )
    out("")
    for name, value in _versions().items():
        out(f"- {name} {value}")
    out(f"- machine: {_machine()}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--requests", type=int, default=100, help="per request kind per round")
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument(
        "--configs",
        default=",".join(DEFAULT_CONFIGS),
        help=f"comma-separated, from {', '.join(CONFIGS)}",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every round's raw figures")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(child(args.child, args.requests, args.warmup)))
        return 0

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configuration(s) {', '.join(unknown)}; pick from {CONFIGS}")
    if "baseline" not in configs:
        configs.insert(0, "baseline")
    skipped = [c for c in configs if not all(_importable(m) for m in NEEDS.get(c, ()))]
    for config in skipped:
        configs.remove(config)
        print(
            f"skipping {config}: {', '.join(NEEDS[config])} not installed "
            "(pip install --no-deps -r benchmarks/requirements.txt)",
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory(prefix="djtrace-bench-") as data:
        env = {**os.environ, "DJTRACE_SAMPLE_DATA": data, "PYTHONPATH": str(ROOT)}
        for name in ("DJTRACE_SAMPLE_DB", "DJTRACE_SAMPLE_CACHE", "DJTRACE_SAMPLE_DEBUG"):
            env.pop(name, None)  # sample_site's embedded defaults: SQLite, locmem cache
        _run_child("baseline", argparse.Namespace(requests=1, warmup=1), env)  # seed the db
        rounds: list[dict[str, dict[str, Any]]] = []
        for i in range(args.rounds):
            # Rotate the order so no configuration always runs right after another.
            order = configs[i % len(configs) :] + configs[: i % len(configs)]
            results = {}
            for config in order:
                results[config] = _run_child(config, args, env)
                print(f"round {i + 1}/{args.rounds}: {config} done", file=sys.stderr)
            rounds.append(results)
    if args.json:
        Path(args.json).write_text(json.dumps(rounds, indent=1))
    print(report(rounds, args))
    for config in skipped:
        print(f"\n{config}: not measured (its packages are not installed).")
    return 0


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


if __name__ == "__main__":
    sys.exit(main())
