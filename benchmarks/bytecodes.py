"""Bytecodes executed per request, untraced and recorded, and which of djtrace's functions
run them: an exact, repeatable account of the Python work recording adds, function by
function.

Wall time on a shared VM moves by a few percent from run to run, so a change that saves a
few hundred bytecodes does not show in it, and valgrind's instruction count (instructions.py)
says how much changed but not where. This count does not move and is per function: the same
code, Python, Django and arguments execute the same bytecodes. It uses `sys.monitoring`
(Python 3.12+), in one process with djtrace installed: each path is served `--requests`
times untraced and as many times recorded, and every bytecode executed is counted against
its function (this script's own are left out).

    python benchmarks/bytecodes.py                       # every request kind
    python benchmarks/bytecodes.py --paths /books/ --top 20

A bytecode is not a unit of time: a call into C, a frame object built for the source walk
or a cold cache line costs what it costs whatever the count. Use it to see where recording's
Python work is and whether a change removed some; use paired.py and overhead.py for time.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from types import CodeType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PATHS = ("/bench/trivial/", "/books/", "/cached/", "/api/books/")
WARMUP = 20
TOOL = 4  # sys.monitoring's ids 0–2 are for debuggers, coverage and profilers


def _count(
    handler: Any, path: str, requests: int, record: bool
) -> tuple[Counter[CodeType], Counter[CodeType]]:
    """Bytecodes and calls per code object, over `requests` requests of one mode."""
    from djtrace.recorder import config

    from benchmarks.overhead import serve

    monitoring = sys.monitoring
    bytecodes: Counter[CodeType] = Counter()
    calls: Counter[CodeType] = Counter()

    def on_instruction(code: CodeType, offset: int) -> None:
        bytecodes[code] += 1

    def on_start(code: CodeType, offset: int) -> None:
        calls[code] += 1

    monitoring.register_callback(TOOL, monitoring.events.INSTRUCTION, on_instruction)
    monitoring.register_callback(TOOL, monitoring.events.PY_START, on_start)
    config.record_all = record
    monitoring.set_events(TOOL, monitoring.events.INSTRUCTION | monitoring.events.PY_START)
    try:
        for _ in range(requests):
            serve(handler, path)
    finally:
        monitoring.set_events(TOOL, 0)
        config.record_all = False
    for counter in (bytecodes, calls):  # this script's own loop is not the request's
        for code in [c for c in counter if c.co_filename == __file__]:
            del counter[code]
    return bytecodes, calls


def _ours(code: CodeType) -> bool:
    return code.co_filename.startswith(str(ROOT / "tracer") + os.sep)  # the djtrace package


def _name(code: CodeType) -> str:
    where = os.path.relpath(code.co_filename, ROOT)
    return f"{where}:{code.co_firstlineno} {code.co_qualname}"


def _report(
    path: str,
    requests: int,
    top: int,
    counts: dict[bool, tuple[Counter[CodeType], Counter[CodeType]]],
) -> None:
    (off, _), (on, calls) = counts[False], counts[True]
    total_off, total_on = sum(off.values()) / requests, sum(on.values()) / requests
    ours_on = sum(n for code, n in on.items() if _ours(code)) / requests
    ours_off = sum(n for code, n in off.items() if _ours(code)) / requests
    print(f"## {path}\n")
    print(
        f"{total_off:,.0f} → {total_on:,.0f} bytecodes per request untraced → recorded "
        f"({total_on / total_off:.4f}×, {total_on - total_off:+,.0f}); in djtrace's own code "
        f"{ours_off:,.0f} → {ours_on:,.0f}.\n"
    )
    print("| djtrace function | calls | bytecodes added | a call, recorded | share |")
    print("|---|---:|---:|---:|---:|")
    added = total_on - total_off
    ranked = sorted((c for c in on if _ours(c)), key=lambda c: on[c] - off[c], reverse=True)
    for code in ranked[:top]:
        extra = (on[code] - off[code]) / requests
        per_call = on[code] / max(calls[code], 1)
        share = extra / added if added > 0 else 0.0
        print(
            f"| {_name(code)} | {calls[code] / requests:.0f} | {extra:,.0f} | "
            f"{per_call:.0f} | {share:.1%} |"
        )
    elsewhere = added - (ours_on - ours_off)
    print(f"\nOutside djtrace's code, recording changed {elsewhere:+,.0f} bytecodes per request.\n")


def run(paths: list[str], requests: int, top: int) -> None:
    from djtrace.recorder import add_sink, config

    from benchmarks.overhead import configure, serve, wsgi_handler

    configure(tracer=True)
    handler = wsgi_handler()
    finished: list[object] = []
    # A sink, as overhead.py has; what it holds changes no count, so it is emptied per path.
    add_sink(finished.append)
    sys.monitoring.use_tool_id(TOOL, "djtrace-bytecodes")
    for path in paths:
        for record in (False, True):  # warm: URL patterns, templates, connection, caches
            config.record_all = record
            for _ in range(WARMUP):
                serve(handler, path)
        counts = {record: _count(handler, path, requests, record) for record in (False, True)}
        finished.clear()
        _report(path, requests, top, counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated")
    parser.add_argument(
        "--requests", type=int, default=10, help="requests counted per mode (default 10)"
    )
    parser.add_argument("--top", type=int, default=15, help="functions listed (default 15)")
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    if args.top < 1:
        parser.error("--top must be at least 1")
    paths = [p for p in args.paths.split(",") if p]
    if not paths:
        parser.error("--paths needs at least one path, such as /books/")
    if sys.version_info < (3, 12):
        parser.error(
            f"needs Python 3.12+ for sys.monitoring (this is {sys.version.split()[0]}); "
            "run it from a 3.12 virtualenv with djtrace installed"
        )
    sys.path.insert(0, str(ROOT))
    from benchmarks.overhead import child_env

    with tempfile.TemporaryDirectory(prefix="djtrace-bytecodes-") as data:
        # The benchmark's own data directory and sample_site's defaults (SQLite, locmem), as
        # overhead.py gives its children: set before Django reads its settings.
        env = child_env(data)
        for name in set(os.environ) - set(env):
            del os.environ[name]
        os.environ.update(env)
        run(paths, args.requests, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
