"""What a light trace costs (`djtrace capture --sample RATE`), beside a full one.

Each request is served three times in a row in one process: untraced, as a light trace
(sampled out: the root span only) and as a full trace, in an order that alternates, so the
three see the same machine; the medians of each mode's ratio to the untraced one are the
figures. As in paired.py, the garbage collector is off while timing and runs every 20 rounds.

    python benchmarks/sampling.py                        # the trivial view and /books/
    python benchmarks/sampling.py --paths /api/books/ --rounds 2000
"""

from __future__ import annotations

import argparse
import gc
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATHS = ("/bench/trivial/", "/books/")
MODES = ("untraced", "light", "full")


def child(paths: list[str], rounds: int, warmup: int) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.overhead import configure, serve, wsgi_handler

    configure(tracer=True)
    handler = wsgi_handler()
    from djtrace.recorder import add_sink, config

    finished: list[object] = []
    add_sink(finished.append)
    clock = time.perf_counter_ns
    print("| path | untraced | light trace | full trace |")
    print("|---|---:|---:|---:|")
    for path in paths:
        base: list[int] = []
        ratios: dict[str, list[float]] = {"light": [], "full": []}
        gc.disable()
        try:
            for i in range(warmup + rounds):
                if i % 20 == 0:
                    gc.collect()
                times = {}
                for mode in MODES if i % 2 else reversed(MODES):
                    config.record_all = mode != "untraced"
                    config.sample_rate = 0.0 if mode == "light" else 1.0
                    t0 = clock()
                    serve(handler, path)
                    times[mode] = clock() - t0
                    finished.clear()
                if i >= warmup:
                    base.append(times["untraced"])
                    for mode in ratios:
                        ratios[mode].append(times[mode] / times["untraced"])
        finally:
            gc.enable()
            config.record_all, config.sample_rate = False, 1.0
        light, full = (statistics.median(ratios[m]) for m in ("light", "full"))
        print(f"| {path} | {statistics.median(base) / 1000:,.0f} µs | {light:.3f}× | {full:.3f}× |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated")
    parser.add_argument("--rounds", type=int, default=800, help="rounds per path (default 800)")
    parser.add_argument("--warmup", type=int, default=100, help="rounds first (default 100)")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        paths, rounds, warmup = args.child
        child(paths.split(","), int(rounds), int(warmup))
        return 0
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be at least 1 and --warmup not negative")
    paths = [p for p in args.paths.split(",") if p]
    if not paths:
        parser.error("--paths needs at least one path, such as /books/")
    sys.path.insert(0, str(ROOT))
    from benchmarks.overhead import child_env

    with tempfile.TemporaryDirectory(prefix="djtrace-sampling-") as data:
        command = [sys.executable, __file__, "--child", ",".join(paths)]
        command += [str(args.rounds), str(args.warmup)]
        return subprocess.run(command, env=child_env(data), cwd=ROOT).returncode


if __name__ == "__main__":
    raise SystemExit(main())
