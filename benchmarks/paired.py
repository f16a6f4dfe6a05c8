"""What recording costs, measured in one process: each request is served twice in a row,
once untraced and once recorded, so both halves of every pair see the same machine.

djtrace stays installed throughout (its hooks then cost one context variable lookup each,
which overhead.py's djtrace-idle measures); only `config.record_all` changes between the two
halves. The garbage collector is off while pairs are timed and runs every 20 pairs (a
collection would nearly always fall in the recorded half, which allocates more, and bill it
for the untraced half's garbage too); a second table gives each mode's young-generation
collection time per request, measured apart, and the ratio with it added; full collections
are counted, not averaged in. The median of the pairs' ratios is the cost of recording. On a shared
2-core VM it repeats to within about ±1% (each row is one process, and processes differ by
their luck), where whole runs of overhead.py differ by a few points: close enough to see
what a hook costs, by leaving it out, once the difference is well above 1%.

    python benchmarks/paired.py                                  # every request kind
    python benchmarks/paired.py --paths /books/ --leave-out db --leave-out source

`--leave-out` (repeatable) adds a row recorded without that hook: a module of tracer/hooks/
(db, templates, middleware, signals, connections, …), or `source` for queries recorded
without their source line. Each row runs in a process of its own.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PATHS = ("/bench/trivial/", "/books/", "/cached/", "/api/books/")
HOOKS = sorted(p.stem for p in (ROOT / "tracer" / "hooks").glob("*.py") if p.stem != "__init__")
LEAVE_OUT = (*HOOKS, "source")
GC_REQUESTS = 500  # requests of one mode in a row, for its collections


def _leave_out(name: str) -> None:
    """Record without one hook (or without source lines); before django.setup()."""
    if name == "source":
        from djtrace.hooks import db

        db.user_source = lambda depth=2: None  # type: ignore[assignment]
    else:
        importlib.import_module(f"djtrace.hooks.{name}").install = lambda: None  # type: ignore[attr-defined]
    if name == "connections":  # the SQL hook notices reused connections on its behalf
        from djtrace.hooks import db

        db.note_reused = lambda state, connection: None  # type: ignore[assignment]


def child(leave_out: str, paths: list[str], pairs: int, warmup: int) -> None:
    """Serve each path `pairs` times untraced and recorded, in turn; print the figures."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.overhead import configure, serve, wsgi_handler

    configure(tracer=True)
    if leave_out:
        _leave_out(leave_out)
    handler = wsgi_handler()
    from djtrace.recorder import add_sink, config

    finished: list[object] = []  # each trace let go after its request, as overhead.py does
    add_sink(finished.append)
    clock = time.perf_counter_ns
    results = {}
    for path in paths:
        off, on, ratios = [], [], []
        # The collector is off while pairs are timed: a collection falls in whichever request
        # crosses its threshold, which is nearly always the recorded one (it allocates more),
        # so it would bill recording for the untraced half's garbage too. It runs every 20
        # pairs instead, and what each mode costs in collections is measured apart, below.
        gc.disable()
        try:
            for i in range(warmup + pairs):
                if i % 20 == 0:
                    gc.collect()
                times = {}
                for record in (False, True) if i % 2 else (True, False):  # neither always first
                    config.record_all = record
                    t0 = clock()
                    serve(handler, path)
                    times[record] = clock() - t0
                    finished.clear()
                config.record_all = False
                if i >= warmup:
                    off.append(times[False])
                    on.append(times[True])
                    ratios.append(times[True] / times[False])
        finally:
            gc.enable()
        modes = (False, True) if len(results) % 2 else (True, False)
        collections = {record: _collections(handler, path, record, finished) for record in modes}
        results[path] = {
            "off": statistics.median(off),
            "on": statistics.median(on),
            "ratio": statistics.median(ratios),
            "gc_off": collections[False][0],
            "gc_on": collections[True][0],
            "full_off": collections[False][1],
            "full_on": collections[True][1],
        }
    print(json.dumps(results))


def _collections(
    handler: Any, path: str, record: bool, finished: list[object]
) -> tuple[float, int]:
    """In GC_REQUESTS requests of one mode in a row: young-generation collection time per
    request (ns), and how many full collections ran. A full one is a pause of tens of ms
    every few hundred requests: averaged in, one more or less would swamp the rest."""
    from djtrace.recorder import config

    from benchmarks.overhead import serve

    young = full = started = 0

    def timed(phase: str, info: dict[str, Any]) -> None:
        nonlocal young, full, started
        if phase == "start":
            started = time.perf_counter_ns()
        elif info["generation"] == 2:
            full += 1
        else:
            young += time.perf_counter_ns() - started

    config.record_all = record
    gc.collect()
    gc.callbacks.append(timed)
    try:
        for _ in range(GC_REQUESTS):
            serve(handler, path)
            finished.clear()
    finally:
        gc.callbacks.remove(timed)
        config.record_all = False
    return young / GC_REQUESTS, full


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated")
    parser.add_argument("--pairs", type=int, default=300, help="pairs per path (default 300)")
    parser.add_argument(
        "--warmup", type=int, default=30, help="pairs before measuring (default 30)"
    )
    parser.add_argument(
        "--leave-out",
        action="append",
        default=[],
        metavar="HOOK",
        help=f"add a row without this hook: {', '.join(LEAVE_OUT)}",
    )
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        leave_out, paths, pairs, warmup = args.child
        child(leave_out, paths.split(","), int(pairs), int(warmup))
        return 0
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup cannot be negative")
    unknown = sorted(set(args.leave_out) - set(LEAVE_OUT))
    if unknown:
        parser.error(f"unknown hook {', '.join(unknown)} (known: {', '.join(LEAVE_OUT)})")
    paths = [p for p in args.paths.split(",") if p]
    if not paths:
        parser.error("--paths needs at least one path, such as /books/")
    sys.path.insert(0, str(ROOT))
    from benchmarks.overhead import child_env

    rows: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="djtrace-paired-") as data:
        env = child_env(data)
        for leave_out in ["", *args.leave_out]:
            label = f"without {leave_out}" if leave_out else "every hook"
            print(f"measuring {label} …", file=sys.stderr, flush=True)
            command = [sys.executable, __file__, "--child", leave_out, ",".join(paths)]
            command += [str(args.pairs), str(args.warmup)]
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
                print(f"error: {label}: {tail}", file=sys.stderr)
                return 1
            rows[label] = json.loads(done.stdout)
    print(
        f"Recorded ÷ untraced, median of {args.pairs} pairs in one process, the garbage "
        "collector off while timing (median µs untraced → recorded, then the ratio):\n"
    )
    _table(rows, paths, lambda r: (r["off"], r["on"], r["ratio"]))
    print(
        f"\nGarbage collection, measured apart ({GC_REQUESTS} requests of one mode in a row): "
        "µs per request in young-generation collections, untraced → recorded, then the ratio "
        "above with them added:\n"
    )
    _table(rows, paths, lambda r: (r["gc_off"], r["gc_on"], r["ratio"] * _with_gc(r)), ".1f")
    fulls = [
        f"{label} {path} {result[path]['full_off']} → {result[path]['full_on']}"
        for label, result in rows.items()
        for path in paths
    ]
    print(
        f"\nFull collections in those {GC_REQUESTS} requests, untraced → recorded (each a "
        "pause of tens of ms, left out of the figures above): " + "; ".join(fulls)
    )
    return 0


def _with_gc(result: dict[str, float]) -> float:
    """How much the collections change the ratio."""
    return (1 + result["gc_on"] / result["on"]) / (1 + result["gc_off"] / result["off"])


def _table(
    rows: dict[str, dict[str, dict[str, float]]],
    paths: list[str],
    cell: Callable[[dict[str, float]], tuple[float, float, float]],
    digits: str = ",.0f",
) -> None:
    print("| recorded with | " + " | ".join(paths) + " |")
    print("|---|" + "---:|" * len(paths))
    for label, result in rows.items():
        cells = []
        for path in paths:
            before, after, ratio = cell(result[path])
            cells.append(f"{before / 1000:{digits}} → {after / 1000:{digits}} µs {ratio:.3f}×")
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
