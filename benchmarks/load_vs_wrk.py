"""djtrace load's engine against wrk on the same server, at the same concurrency.

One gunicorn serving sample_site (untraced: this measures the load generators, not the
tracer) answers both. At each concurrency level, round after round, wrk (Debian's `wrk`,
one thread, N connections) and the engine (one closed stage, N users) each load the server
for the same duration, in an order that alternates from round to round; the figures are
the medians over the rounds. For each: throughput, p50/p99 latency, and the generator's
own CPU per request (wrk's from its rusage as a child process, the engine's from its own
process clock). Note wrk 4 corrects its percentiles for coordinated omission
(`stats_correct`): in a closed loop with no stall that changes little.

    python benchmarks/load_vs_wrk.py                       # Markdown table on stdout
    python benchmarks/load_vs_wrk.py --levels 1,4,16 --duration 5 --rounds 3 --json out.json
    python benchmarks/load_vs_wrk.py --path /lab/io/?ms=20 --workers 2 --threads 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _server(port: int, workers: int, threads: int, data: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "gunicorn", "djtrace.sample_site.wsgi", "-w", str(workers),
        "--threads", str(threads), "-b", f"127.0.0.1:{port}", "--chdir", str(ROOT),
        "--no-control-socket",
    ]  # fmt: skip
    env = {**os.environ, "DJTRACE_SAMPLE_DATA": data}
    env.pop("DJTRACE_CAPTURE", None)
    return subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip


def _wait(url: str, patience: float = 60) -> None:
    deadline = time.monotonic() + patience
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        try:
            with opener.open(url, timeout=2) as response:
                response.read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"the server never answered {url}")


_UNITS = {"us": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9}


def _duration_ns(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(text)
    return float(match[1]) * _UNITS[match[2]]


def run_wrk(url: str, connections: int, duration: float) -> dict[str, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    throughput = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    total = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    p50 = _duration_ns(re.search(r"\s50%\s+(\S+)", out)[1])  # type: ignore[index]
    p99 = _duration_ns(re.search(r"\s99%\s+(\S+)", out)[1])  # type: ignore[index]
    return {
        "throughput": throughput,
        "p50_ms": p50 / 1e6,
        "p99_ms": p99 / 1e6,
        "cpu_us_per_request": cpu * 1e6 / total if total else 0.0,
        "cpu_share": cpu / duration,
    }


def run_engine(
    base: str, path: str, users: int, duration: float, full_every: int = 0
) -> dict[str, float]:
    """One closed stage of the lab's engine (`full_every`: as `djtrace load --sample`)."""
    from djtrace.lab.engine import EnginePlan, StagePlan, Target

    plan = EnginePlan(
        base_url=base,
        run_id="bench",
        targets=[Target("GET", path)],
        stages=[StagePlan(1, "closed", concurrency=users, warmup_s=0, duration_s=duration)],
        full_every=full_every,
    )
    out = subprocess.run(
        [sys.executable, "-m", "djtrace.lab.engine"],
        input=plan.to_json(), capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    result = next(
        json.loads(line)["result"] for line in out.splitlines() if '"event":"stage"' in line
    )
    return {
        "throughput": result["throughput"],
        "p50_ms": result["latency"]["p50"] / 1e6,
        "p99_ms": result["latency"]["p99"] / 1e6,
        "cpu_us_per_request": result["generator_cpu_us_per_request"] or 0.0,
        "cpu_share": result["generator_cpu_share"],
    }


def _median(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in rows) for key in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="1,2,4,8,16", help="concurrency levels (1,2,4,8,16)")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per measurement (4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per level (3)")
    parser.add_argument("--path", default="/lab/io/?ms=5", help="the page loaded (/lab/io/?ms=5)")
    # One process by default: with several, gunicorn's threaded workers may keep all of one
    # client's keep-alive connections in one process, a coin toss that would swamp the
    # difference between the two generators.
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers (1)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (8)")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    levels = [int(v) for v in args.levels.split(",")]
    with tempfile.TemporaryDirectory(prefix="djtrace-bench-load-") as data:
        with __import__("socket").socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        server = _server(port, args.workers, args.threads, data)
        try:
            _wait(base + args.path)
            run_wrk(base + args.path, max(levels), 1.0)  # warm the workers up
            rows: list[dict[str, Any]] = []
            for level in levels:
                wrk_runs, engine_runs = [], []
                for i in range(args.rounds):
                    order = ("wrk", "engine") if i % 2 == 0 else ("engine", "wrk")
                    for tool in order:
                        if tool == "wrk":
                            wrk_runs.append(run_wrk(base + args.path, level, args.duration))
                        else:
                            engine_runs.append(run_engine(base, args.path, level, args.duration))
                rows.append(
                    {"level": level, "wrk": _median(wrk_runs), "engine": _median(engine_runs),
                     "wrk_runs": wrk_runs, "engine_runs": engine_runs}
                )  # fmt: skip
                print(f"  c {level}: done", file=sys.stderr)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    print(
        f"djtrace load's engine vs wrk, gunicorn -w {args.workers} --threads {args.threads} "
        f"on {args.path}, {args.duration:g} s × {args.rounds} rounds per level (medians); "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs\n"
    )
    print(
        "| users | wrk req/s | engine req/s | engine/wrk | wrk p50/p99 ms | engine p50/p99 ms "
        "| wrk CPU µs/req | engine CPU µs/req |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        w, e = row["wrk"], row["engine"]
        print(
            f"| {row['level']} | {w['throughput']:.0f} | {e['throughput']:.0f} "
            f"| {e['throughput'] / w['throughput']:.2f}× "
            f"| {w['p50_ms']:.1f} / {w['p99_ms']:.1f} | {e['p50_ms']:.1f} / {e['p99_ms']:.1f} "
            f"| {w['cpu_us_per_request']:.0f} | {e['cpu_us_per_request']:.0f} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
