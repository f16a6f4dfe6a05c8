"""Tracing's effect on what `djtrace load` measures: throughput at one concurrency, with the
server untraced, captured with the lab's `--sample`, and captured in full.

`djtrace load` reruns its knee stage once, untraced, and reports the difference; one rerun
on a shared machine carries that moment's noise. This benchmark asks the same question with
rounds: three gunicorn servers (one command, three ports) run side by side, idle but for the
one being loaded; each round loads each server for the same duration with the lab's own
engine, in an order that rotates, and each traced server's throughput is divided by the
untraced one's of the same round. The figures are the medians of those ratios.

    python benchmarks/load_tracing_effect.py                       # 8 users, --sample 0.1
    python benchmarks/load_tracing_effect.py --users 4 --sample 0.05 --rounds 9
    python benchmarks/load_tracing_effect.py --path '/lab/io/?ms=20' --threads 4
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from djtrace.cli.load_server import Server, bind_command, free_port  # noqa: E402

from benchmarks.load_vs_wrk import run_engine  # noqa: E402

MODES = ("untraced", "sampled", "full")


@contextlib.contextmanager
def servers(command: list[str], path: str, scratch: Path) -> Iterator[dict[str, str]]:
    """The three servers, each answering; their base URLs by mode."""
    started: list[Server] = []
    bases: dict[str, str] = {}
    try:
        for mode in MODES:
            bound, port = bind_command(command, free_port())
            folder = scratch / mode
            folder.mkdir()
            # As `djtrace load --sample`: the server traces none in full by itself; every
            # Nth load request asks for a full trace.
            extra = {"DJTRACE_SAMPLE": "0"} if mode == "sampled" else {}
            server = Server(bound, folder / "traces.sqlite3", folder, extra, mode != "untraced")
            started.append(server)
            bases[mode] = f"http://127.0.0.1:{port}"
            server.wait_until_serving(bases[mode] + path, 60)
        yield bases
    finally:
        for server in started:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=8, help="concurrency (8: the knee here)")
    parser.add_argument("--sample", type=float, default=0.1, help="the sampled server's rate")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per load (3)")
    parser.add_argument("--rounds", type=int, default=7, help="rounds (7)")
    parser.add_argument("--path", default="/lab/io/?ms=5", help="the page loaded (/lab/io/?ms=5)")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers (1)")
    parser.add_argument("--threads", type=int, default=8, help="threads per worker (8)")
    args = parser.parse_args()
    command = [
        sys.executable, "-m", "gunicorn", "djtrace.sample_site.wsgi", "-w", str(args.workers),
        "--threads", str(args.threads), "--chdir", str(ROOT), "--no-control-socket",
    ]  # fmt: skip
    full_every = round(1 / args.sample)
    ratios: dict[str, list[float]] = {"sampled": [], "full": []}
    rates: dict[str, list[float]] = {mode: [] for mode in MODES}
    with (
        tempfile.TemporaryDirectory(prefix="djtrace-bench-") as scratch,
        servers(command, args.path, Path(scratch)) as bases,
    ):
        for base in bases.values():  # warm each server once, unmeasured
            run_engine(base, args.path, args.users, 1.0)
        for i in range(args.rounds):
            order = MODES[i % 3 :] + MODES[: i % 3]
            got = {
                mode: run_engine(
                    bases[mode], args.path, args.users, args.duration,
                    full_every if mode == "sampled" else 0,
                )["throughput"]
                for mode in order
            }  # fmt: skip
            for mode in MODES:
                rates[mode].append(got[mode])
            for mode in ratios:
                ratios[mode].append(got[mode] / got["untraced"])
            print(
                f"round {i + 1}: "
                + ", ".join(f"{mode} {got[mode]:.0f} req/s" for mode in MODES)
                + f"  (sampled {ratios['sampled'][-1]:.3f}×, full {ratios['full'][-1]:.3f}×)",
                file=sys.stderr,
            )
    print(
        f"Tracing's effect on throughput: gunicorn -w {args.workers} --threads {args.threads}, "
        f"{args.path}, {args.users} users, {args.rounds} rounds of {args.duration:g} s\n"
    )
    print("| server | req/s (median) | throughput ÷ untraced (median) | range |")
    print("|---|---:|---:|---:|")
    print(f"| untraced | {statistics.median(rates['untraced']):.0f} | 1 | |")
    labels = {"sampled": f"captured, `--sample {args.sample:g}`", "full": "captured, every trace"}
    for mode, label in labels.items():
        r = ratios[mode]
        print(
            f"| {label} | {statistics.median(rates[mode]):.0f} | {statistics.median(r):.3f}× "
            f"| {min(r):.3f}–{max(r):.3f}× |"
        )


if __name__ == "__main__":
    main()
