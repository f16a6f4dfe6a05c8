"""Instructions executed per request, counted by valgrind: repeatable where wall time is not.

On a shared 2-core VM two wall-clock runs of the same code differ by a few percent, too much
to compare two versions of a hook. valgrind's cachegrind counts the instructions a process
executes, whatever else the machine is doing, and with address-space randomisation off (by
setarch, where the machine has it) it repeats to within a few hundredths of a M from run to
run (each run seeds a fresh database in a new temporary directory). Each request kind
is served N1 and then N2 times in two processes under valgrind; the difference divided by
N2 - N1 is one request's count, free of start-up and warm-up.

    python benchmarks/instructions.py                       # every request kind, 3 configs
    python benchmarks/instructions.py --paths /books/ --configs baseline,djtrace

Configurations: baseline (djtrace not installed), djtrace-idle (installed, recording
nothing), djtrace (every request recorded, each trace handed to a sink and let go after the
request, as overhead.py does). The garbage collector is off while counting. Needs valgrind
(Debian: apt-get install valgrind); a request under valgrind is about 50 times slower, so the
default run takes a few minutes.
"""

from __future__ import annotations

import argparse
import gc
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ("baseline", "djtrace-idle", "djtrace")
PATHS = ("/bench/trivial/", "/books/", "/cached/", "/api/books/")
WARMUP = 20


def child(config: str, path: str, count: int) -> None:
    """Warm up, then serve `path` `count` times (what valgrind counts, minus the other run)."""
    sys.path.insert(0, str(ROOT))
    from benchmarks.overhead import configure, serve, wsgi_handler

    configure(tracer=config != "baseline")
    handler = wsgi_handler()
    finished: list[object] = []  # emptied after each request, as overhead.py does
    if config == "djtrace":
        from djtrace.recorder import add_sink
        from djtrace.recorder import config as tracer_config

        tracer_config.record_all = True
        add_sink(finished.append)
    for _ in range(WARMUP):
        serve(handler, path)
        finished.clear()
    # A collection lands on whichever request crosses its threshold: off while counting, so
    # the per-request difference is exact (GC's share was measured apart: under 0.5%).
    gc.collect()
    gc.disable()
    for _ in range(count):
        serve(handler, path)
        finished.clear()


def _count(config: str, path: str, count: int, env: dict[str, str]) -> int:
    # Address-space randomisation off where setarch can do it: object addresses steer dict
    # and set layouts, and with them a request's count by up to ±0.1 M from run to run.
    steady = [] if shutil.which("setarch") is None else ["setarch", platform.machine(), "-R"]
    command = [
        *steady,
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        "--cachegrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--child",
        config,
        path,
        str(count),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    match = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
    if done.returncode != 0 or match is None:
        tail = done.stderr.strip().splitlines()[-5:]
        raise SystemExit(f"valgrind run failed ({config} {path}):\n" + "\n".join(tail))
    return int(match.group(1).replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated")
    parser.add_argument("--requests", default="10,40", help="N1,N2 requests per process")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        config, path, count = args.child
        child(config, path, int(count))
        return 0
    configs = [c for c in args.configs.split(",") if c]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown config {', '.join(unknown)} (known: {', '.join(CONFIGS)})")
    try:
        n1, n2 = (int(n) for n in args.requests.split(","))
    except ValueError:
        parser.error(f"--requests takes two counts, N1,N2 (got {args.requests!r})")
    if not 0 <= n1 < n2:
        parser.error(f"--requests N1,N2 needs 0 <= N1 < N2 (got {args.requests})")
    paths = [p for p in args.paths.split(",") if p]
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    sys.path.insert(0, str(ROOT))
    from benchmarks.overhead import child_env

    with tempfile.TemporaryDirectory(prefix="djtrace-instructions-") as data:
        env = {**child_env(data), "PYTHONHASHSEED": "0"}
        # Seed the database first, so that neither counted run includes creating it.
        seed = [sys.executable, __file__, "--child", "baseline", paths[0], "0"]
        if subprocess.run(seed, env=env, check=False).returncode != 0:
            return 1  # the child said why (a page that is not 200, say)
        counts: dict[str, dict[str, float]] = {}
        for config in configs:
            for path in paths:
                print(f"counting {config} {path} …", file=sys.stderr, flush=True)
                low, high = _count(config, path, n1, env), _count(config, path, n2, env)
                counts.setdefault(config, {})[path] = (high - low) / (n2 - n1)
    print("Instructions per request (valgrind cachegrind), and the ratio to the baseline:\n")
    print("| config | " + " | ".join(paths) + " |")
    print("|---|" + "---:|" * len(paths))
    base = counts.get("baseline")
    for config, row in counts.items():
        cells = []
        for path in paths:
            cell = f"{row[path] / 1e6:.3f} M"
            if base:
                cell += f" {row[path] / base[path]:.3f}×"
            cells.append(cell)
        print(f"| {config} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
