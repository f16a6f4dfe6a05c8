"""What tracing costs a Django request: djtrace against no tracer, OpenTelemetry and Sentry.

The same request mix (a trivial view, sample_site's N+1 page /books/, the cache view
/cached/ and the JSON view /api/books/) goes through Django's real WSGIHandler in-process,
body iterated and closed as a server does. Each configuration runs in processes of its
own; round after round, every configuration runs one short batch, the baseline included, in
an order that rotates from round to round, and each ratio is to the baseline's batch of the
same round. `control` is a second baseline process measured like a configuration: its ratio
is the method's own error in that run, and should read 1.00×.

    python benchmarks/overhead.py                          # Markdown tables on stdout
    python benchmarks/overhead.py --rounds 60 --json out.json   # longer, raw figures too

Configurations:
  baseline       djtrace not installed ("djtrace" removed from INSTALLED_APPS)
  control        the same as baseline, in processes of its own
  djtrace        every hook on, every request traced (config.record_all), each finished
                 trace handed to an in-memory sink the harness empties between requests
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
CONFIGS = ("baseline", "control", "djtrace", "djtrace+store", "otel", "sentry", "djtrace-idle")
DEFAULT_CONFIGS = CONFIGS[:6]
PATHS = ("/bench/trivial/", "/books/", "/cached/", "/api/books/")
LABELS = {"/bench/trivial/": "trivial", "/books/": "N+1 /books/", "/cached/": "/cached/"}
LABELS["/api/books/"] = "/api/books/"
#: The modules a configuration needs beyond djtrace's own dependencies.
NEEDS = {
    "otel": ("opentelemetry.instrumentation.django", "opentelemetry.instrumentation.sqlite3"),
    "sentry": ("sentry_sdk",),
}


# --- the child: one configuration, batch after batch ------------------------------------------


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


def configure(tracer: bool) -> None:
    """Make this process run sample_site with the benchmark settings, djtrace installed or
    not; before django.setup() (and before a tracer that patches Django is set up)."""
    sys.path.insert(0, str(ROOT))
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    os.environ["DJTRACE_BENCH_TRACER"] = "1" if tracer else "0"


def wsgi_handler() -> Any:
    """Django set up, sample_site's database seeded, and the handler a WSGI server calls."""
    import django

    django.setup()
    from django.core.handlers.wsgi import WSGIHandler
    from djtrace.sample_site.seed import ensure_database

    ensure_database()
    return WSGIHandler()


def child_env(data: str) -> dict[str, str]:
    """The environment of a benchmark's child processes: a data directory of their own
    (never the user's djtrace data) and sample_site's embedded defaults (SQLite, locmem
    cache) whatever the shell has set."""
    env = {**os.environ, "DJTRACE_SAMPLE_DATA": data, "PYTHONPATH": str(ROOT)}
    for name in ("DJTRACE_SAMPLE_DB", "DJTRACE_SAMPLE_CACHE", "DJTRACE_SAMPLE_DEBUG"):
        env.pop(name, None)
    return env


def serve(handler: Any, path: str) -> None:
    """One request exactly as a WSGI server runs it: call, iterate the body, close."""
    try:
        response = handler(_environ(path), _start_response)
    except SystemExit as failed:  # from _start_response: say which request
        raise SystemExit(f"{failed} (GET {path})") from None
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
        from djtrace.exporters.writer import StoreWriter
    except ImportError:
        StoreWriter = None  # noqa: N806
    if StoreWriter is not None:
        path = Path(os.environ["DJTRACE_SAMPLE_DATA"]) / f"bench-store-{os.getpid()}.sqlite3"
        return StoreWriter(path), "djtrace.exporters.writer.StoreWriter (SQLite trace store)"
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
    from djtrace.recorder import add_sink, config

    config.record_all = True
    # Each finished trace is handed to a sink; the harness reads it and lets it go after the
    # request, outside the timed region, as it empties OpenTelemetry's in-memory exporter.
    finished: list[Any] = []
    add_sink(finished.append)
    info: dict[str, Any] = {}
    if store:
        sink, info["store"] = _store_sink()
        add_sink(sink)
        info["writer"] = sink

    def spans() -> int:
        # Counted, not read: reading builds the trace's Spans, work its reader does (the
        # store writer, `djtrace show`), measured apart as "reading a finished trace".
        count = len(finished[-1].records) if finished else 0
        finished.clear()
        return count

    return spans, info


def _finished_traces(handler: Any, path: str, count: int) -> list[Any]:
    """The traces of `count` requests for `path`, kept as djtrace finished them."""
    from djtrace.recorder import add_sink, remove_sink

    held: list[Any] = []
    add_sink(held.append)
    try:
        for _ in range(count):
            serve(handler, path)
    finally:
        remove_sink(held.append)
    return held


def _memory_per_trace(handler: Any, path: str, count: int = 30) -> int:
    """Bytes a finished trace of `path` keeps alive (tracemalloc, traces held in a list)."""
    import gc
    import tracemalloc

    for _ in range(3):
        serve(handler, path)  # let tracemalloc-visible caches settle
    gc.collect()
    tracemalloc.start()
    serve(handler, path)
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    held = _finished_traces(handler, path, count)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) // max(len(held), 1)


def _read_cost(handler: Any, path: str, count: int = 30) -> float:
    """Median ns to read a finished trace of `path` the first time: its Spans built from the
    records the request left (work done off the request path, by whoever reads it)."""
    clock = time.perf_counter_ns
    times = []
    for trace in _finished_traces(handler, path, count):
        t0 = clock()
        trace.spans  # noqa: B018 (the read is what is timed)
        times.append(clock() - t0)
    return statistics.median(times)


def child(config: str, warmup: int) -> None:
    """Set one configuration up, then run a batch of requests each time the parent asks.

    Protocol (one JSON document per line): the child says {"ready": true} once warm; each
    "run N" line gets back the batch's median time and spans per request kind; "quit" gets
    the final extras (memory per trace) and ends the process.
    """
    configure(tracer=config.startswith("djtrace"))
    spans: Callable[[], int] = lambda: 0  # noqa: E731
    info: dict[str, Any] = {}
    if config == "otel":
        spans = _setup_otel()
    elif config == "sentry":
        spans = _setup_sentry()
    handler = wsgi_handler()
    if config in ("djtrace", "djtrace+store"):
        spans, info = _setup_djtrace(store=config == "djtrace+store")
    writer = info.pop("writer", None)

    for _ in range(warmup):
        for path in PATHS:
            serve(handler, path)
            spans()
    _settle(writer)
    _reply({"ready": True, **info})
    clock, cpu = time.perf_counter_ns, time.process_time_ns
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command != "run":
            break
        times: dict[str, list[int]] = {path: [] for path in PATHS}
        cpu_times: dict[str, list[int]] = {path: [] for path in PATHS}
        counts: dict[str, list[int]] = {path: [] for path in PATHS}
        for _ in range(int(arg)):
            for path in PATHS:  # the request kinds interleave too
                c0 = cpu()
                t0 = clock()
                serve(handler, path)
                t1 = clock()
                times[path].append(t1 - t0)
                cpu_times[path].append(cpu() - c0)
                counts[path].append(spans())
        catch_up = _settle(writer)
        _reply(
            {
                "median_ns": {path: statistics.median(v) for path, v in times.items()},
                "cpu_median_ns": {path: statistics.median(v) for path, v in cpu_times.items()},
                "spans": {path: statistics.median(v) for path, v in counts.items()},
                "catch_up_ns": catch_up,
                "dropped": getattr(writer, "dropped", None),
            }
        )
    final: dict[str, Any] = {}
    if config == "djtrace":
        final["memory"] = {path: _memory_per_trace(handler, path) for path in PATHS}
        final["read_ns"] = {path: _read_cost(handler, path) for path in PATHS}
    _reply(final)


def _settle(writer: Any) -> int:
    """Let a background writer finish what the batch queued, so its thread does not run
    during another configuration's batch; returns how long that took (ns)."""
    flush = getattr(writer, "flush", None)
    if flush is None:
        return 0
    t0 = time.perf_counter_ns()
    flush()
    return time.perf_counter_ns() - t0


def _reply(document: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(document) + "\n")
    sys.stdout.flush()


# --- the parent: a process per configuration, rounds of batches, the table -------------------


def _round(
    children: dict[str, _Child], configs: list[str], index: int, requests: int
) -> dict[str, dict[str, Any]]:
    """One round: every configuration runs one batch, the baseline too, in an order that
    rotates from round to round, and each is compared with the baseline's batch of the same
    round. No process runs more often than another or always after the same one: a baseline
    run between every other batch (the first design) always followed the heaviest tracers'
    batches, and an identical second baseline measured as a configuration read 0.976×."""
    shift = index % len(configs)
    order = configs[shift:] + configs[:shift]
    run = f"run {requests}"
    results = {config: {**children[config].ask(run), **children[config].info} for config in order}
    for config in order:
        if config != "baseline":
            for key in KINDS:
                results[config]["base_" + key] = results["baseline"][key]
    return results


def _generation(
    configs: list[str],
    indexes: range,
    args: argparse.Namespace,
    env: dict[str, str],
    rounds: list[dict[str, dict[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """Start a process per configuration, run the rounds `indexes`, end the processes."""
    children: dict[str, _Child] = {}
    try:
        for config in configs:  # one after the other: the first one seeds the database
            children[config] = _Child(config, args, env)
        for i in indexes:
            rounds.append(_round(children, configs, i, args.requests))
            print(f"round {i + 1}/{args.rounds} done", file=sys.stderr)
        return {config: one.finish() for config, one in children.items()}
    finally:
        for one in children.values():
            if one.process.poll() is None:
                one.process.kill()


class _Child:
    """One configuration's process, kept alive between its batches."""

    def __init__(self, config: str, args: argparse.Namespace, env: dict[str, str]) -> None:
        self.config = config
        command = [sys.executable, str(Path(__file__).resolve()), "--child", config]
        command += ["--warmup", str(args.warmup)]
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.info = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            self.process.wait()
            assert self.process.stderr is not None
            error = self.process.stderr.read().strip()[-2000:]
            raise SystemExit(f"error: {self.config} failed:\n{error}")
        return json.loads(line)

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()

    def finish(self) -> dict[str, Any]:
        final = self.ask("quit")
        self.process.wait(timeout=120)
        return final


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


KINDS = {
    "median_ns": "Wall-clock time",
    "cpu_median_ns": "CPU time (the whole process, background threads included)",
}


def report(rounds: list[dict[str, dict[str, Any]]], args: argparse.Namespace) -> str:
    configs = [c for c in CONFIGS if c in rounds[0]]
    lines: list[str] = []
    out = lines.append
    for key, title in KINDS.items():
        out(f"**{title}** per request: median µs, then the median over {len(rounds)} rounds of")
        out("the ratio to that round's baseline (whole mix: one request of each kind). The µs")
        out("are medians over the whole run; each ratio is taken within its round, so one µs")
        out("figure divided by another can differ from the ratio shown.")
        out("")
        _timing_table(rounds, configs, key, out)
        out("")
        _cost_per_span_table(rounds, configs, key, out)
        out("")

    out("| spans per request | " + " | ".join(LABELS[p] for p in PATHS) + " |")
    out("|---|" + "---:|" * len(PATHS))
    for config in configs:
        counts = [statistics.median(r[config]["spans"][p] for r in rounds) for p in PATHS]
        if config == "baseline" or not any(counts):
            continue
        out(f"| {config} | " + " | ".join(f"{c:g}" for c in counts) + " |")
    out("")

    memory = [r["djtrace"]["memory"] for r in rounds if "memory" in r.get("djtrace", {})]
    if memory:
        cells = [f"{statistics.median(m[p] for m in memory) / 1024:.1f} KiB" for p in PATHS]
        out("| memory per finished trace | " + " | ".join(LABELS[p] for p in PATHS) + " |")
        out("|---|" + "---:|" * len(PATHS))
        out("| djtrace (tracemalloc, traces held) | " + " | ".join(cells) + " |")
        out("")
    reads = [r["djtrace"]["read_ns"] for r in rounds if "read_ns" in r.get("djtrace", {})]
    if reads:
        cells = [_us(statistics.median(m[p] for m in reads)) for p in PATHS]
        out(
            "| reading a finished trace (off the request path) | "
            + " | ".join(LABELS[p] for p in PATHS)
            + " |"
        )
        out("|---|" + "---:|" * len(PATHS))
        out("| djtrace: its Spans built from the request's records | " + " | ".join(cells) + " |")
        out("")
    store = next((r["djtrace+store"].get("store") for r in rounds if "djtrace+store" in r), None)
    if store:
        last = rounds[-1]["djtrace+store"]
        catch_up = statistics.median(
            r["djtrace+store"]["catch_up_ns"] / (args.requests * len(PATHS)) for r in rounds
        )
        out(
            f"djtrace+store writer: {store}. Traces dropped on a full queue: "
            f"{last.get('dropped')}. After each batch the writer needed another "
            f"{catch_up / 1000:.0f} µs per request to finish writing (not in the times above)."
        )
    if "control" in configs:
        out(
            "control is a second baseline measured like any configuration: its distance from "
            "1.00× is this run's own error, which every other ratio shares."
        )
    out(
        f"{len(rounds)} rounds; each configuration in a process of its own "
        f"({_generations(args)} in turn over the run), warmed up with {args.warmup} requests of "
        f"each kind; in every round each runs a batch of {args.requests} requests of each "
        "kind, in an order that rotates from round to round (the ratio's denominator is the "
        "baseline's batch of the same round)."
    )
    out("")
    for name, value in _versions().items():
        out(f"- {name} {value}")
    out(f"- machine: {_machine()}")
    return "\n".join(lines)


def _per_round(
    rounds: list[dict[str, dict[str, Any]]], config: str, path: str | None, key: str
) -> tuple[list[float], list[float]]:
    """(medians, ratios to the same round's baseline); path None is the whole mix."""
    medians, ratios = [], []
    for r in rounds:
        mine = r[config][key]
        base = r[config].get("base_" + key) or r["baseline"][key]
        m = sum(mine.values()) if path is None else mine[path]
        b = sum(base.values()) if path is None else base[path]
        medians.append(m)
        ratios.append(m / b)
    return medians, ratios


def _timing_table(
    rounds: list[dict[str, dict[str, Any]]], configs: list[str], key: str, out: Any
) -> None:
    columns = [*PATHS, None]
    header = ["config", *(LABELS[p] for p in PATHS), "whole mix"]
    out("| " + " | ".join(header) + " |")
    out("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for config in configs:
        cells = [config]
        for path in columns:
            medians, ratios = _per_round(rounds, config, path, key)
            cells.append(f"{_us(statistics.median(medians))} {statistics.median(ratios):.3f}×")
        out("| " + " | ".join(cells) + " |")
    spread = []
    for path in columns:
        medians, _ = _per_round(rounds, "baseline", path, key)
        if len(medians) >= 2:
            q1, mid, q3 = statistics.quantiles(medians, n=4)
            spread.append((q3 - q1) / 2 / mid)
    if spread:
        out("")
        out(
            f"Noise: the baseline's own round medians vary by ±{max(spread) * 100:.1f}% "
            "(half their interquartile range, worst request kind)."
        )


def _cost_per_span_table(
    rounds: list[dict[str, dict[str, Any]]], configs: list[str], key: str, out: Any
) -> None:
    out("| cost per span (overhead ÷ spans) | " + " | ".join(LABELS[p] for p in PATHS) + " |")
    out("|---|" + "---:|" * len(PATHS))
    for config in configs:
        if config == "baseline":
            continue
        cells = []
        for path in PATHS:
            per_span = []
            for r in rounds:
                base = r[config].get("base_" + key) or r["baseline"][key]
                extra = r[config][key][path] - base[path]
                n = r[config]["spans"][path]
                if n:
                    per_span.append(extra / n)
            cells.append(f"{statistics.median(per_span) / 1000:.2f} µs" if per_span else "–")
        if any(cell != "–" for cell in cells):
            out(f"| {config} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=30, help="rounds of batches (default 30)")
    parser.add_argument(
        "--requests", type=int, default=10, help="requests of each kind per batch (default 10)"
    )
    parser.add_argument(
        "--warmup", type=int, default=30, help="requests of each kind before measuring (default 30)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=10,
        help="processes per configuration over the run (default 10)",
    )
    parser.add_argument(
        "--configs",
        default=",".join(DEFAULT_CONFIGS),
        help=f"comma-separated, from {', '.join(CONFIGS)} (default {','.join(DEFAULT_CONFIGS)})",
    )
    parser.add_argument("--json", metavar="FILE", help="also write every round's raw figures")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        child(args.child, args.warmup)
        return 0
    for option in ("rounds", "requests", "processes"):
        if getattr(args, option) < 1:
            parser.error(f"--{option} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup cannot be negative")

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
        env = child_env(data)
        rounds: list[dict[str, dict[str, Any]]] = []
        generations = _generations(args)
        for generation in range(generations):
            # Fresh processes now and then: a process's luck (memory layout, hash seed) is
            # fixed for its life, and would otherwise be the whole run's.
            first = generation * args.rounds // generations
            last = (generation + 1) * args.rounds // generations
            finals = _generation(configs, range(first, last), args, env, rounds)
            for results in rounds[first:last]:
                for config, final in finals.items():
                    results[config].update(final)
    if args.json:
        Path(args.json).write_text(json.dumps(rounds, indent=1))
    print(report(rounds, args))
    for config in skipped:
        print(f"\n{config}: not measured (its packages are not installed).")
    return 0


def _generations(args: argparse.Namespace) -> int:
    """How many times each configuration gets a fresh process over the run."""
    return max(1, min(args.processes, args.rounds))


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


if __name__ == "__main__":
    sys.exit(main())
