"""The load generator: closed sweeps and open arrival rates against one loopback server.

Runs in a process of its own (`python -m djtrace.lab.engine`, started by `djtrace load`):
it reads its plan as JSON on stdin and writes events as JSON lines on stdout —
`stage-start`, `progress` (a few times a second), `stage` (the stage's result) and `end`.
SIGINT or SIGTERM ends the current stage early; what it measured is still reported.

Correctness choices (docs/load-format.md says what each field means):
- closed stages: N users, each sends, waits for the whole body, sends again; a warm-up is
  run first and its requests are discarded; latency is from the send.
- open stages: arrivals on a schedule (constant or Poisson); latency is from each request's
  *intended* send time, so a stalled server shows in the percentiles instead of silently
  slowing the client (coordinated omission). Arrivals sent late are counted, and arrivals
  skipped because `max_inflight` requests were already waiting are counted too.
- latencies go into an HDR histogram (microseconds, 3 significant digits).
- every loop is bounded by its stage's duration and request count, and each request by
  `timeout_s`: a watchdog cancels what has run longer (within PROGRESS_EVERY_S), which
  costs a request far less CPU than a timer of its own (aiohttp's ClientTimeout: ~13%).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import itertools
import json
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, TextIO

import aiohttp
from djtrace.lab.tag import HEADER, format_tag
from hdrh.histogram import HdrHistogram
from yarl import URL

HIST_MAX_US = 3_600_000_000  # an hour, in microseconds: nothing real is slower
HIST_DIGITS = 3
LATE_NS = 10_000_000  # an arrival sent more than 10 ms after its intended time is late
PROGRESS_EVERY_S = 0.25
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


@dataclass
class Target:
    """One kind of request in the mix, drawn with probability weight / total weight."""

    method: str
    path: str  # with its query string
    weight: float = 1.0
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None


@dataclass
class StagePlan:
    index: int
    kind: str  # "closed" or "open"
    concurrency: int = 0  # closed: users
    rate: float = 0.0  # open: arrivals per second
    poisson: bool = False
    warmup_s: float = 1.0
    duration_s: float = 5.0
    requests: int | None = None  # measured requests, at most (stops before duration_s)


@dataclass
class EnginePlan:
    base_url: str  # http://127.0.0.1:PORT
    run_id: str
    targets: list[Target]
    stages: list[StagePlan]
    timeout_s: float = 10.0
    max_inflight: int = 1000  # open stages: arrivals beyond this many waiting are skipped
    # Every Nth request asks for a full trace (";full=1") when capture samples: evenly spread.
    full_every: int = 0
    cookies: dict[str, str] = field(default_factory=dict)
    seed: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> EnginePlan:
        data = json.loads(text)
        data["targets"] = [Target(**t) for t in data["targets"]]
        data["stages"] = [StagePlan(**s) for s in data["stages"]]
        return cls(**data)


#: The columns of each measured request in a stage's "requests" list.
REQUEST_FIELDS = ("seq", "target", "intended_ns", "sent_ns", "latency_ns", "status", "error")


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, HIST_MAX_US, HIST_DIGITS)


def encode_histogram(hist: HdrHistogram) -> str:
    """The histogram in HdrHistogram's compressed, base64 form (any HDR library reads it)."""
    return hist.encode().decode("ascii")


def decode_histogram(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text.encode())


def histogram_of(latencies_ns: list[int]) -> HdrHistogram:
    hist = new_histogram()
    for ns in latencies_ns:
        hist.record_value(max(1, ns // 1000))
    return hist


def histogram_summary(hist: HdrHistogram, latencies_ns: list[int]) -> dict[str, Any]:
    """Percentiles and max of a latency histogram, in nanoseconds (recorded in µs); the
    mean from the exact values (the library's own walks every bucket)."""
    count = hist.get_total_count()
    out: dict[str, Any] = {"count": count}
    for p in PERCENTILES:
        out[f"p{p:g}"] = hist.get_value_at_percentile(p) * 1000 if count else None
    out["max"] = hist.get_max_value() * 1000 if count else None
    out["mean"] = sum(latencies_ns) // len(latencies_ns) if latencies_ns else None
    return out


def error_kind(exc: BaseException) -> str:
    """A short, stable name for why a request failed without a response."""
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = getattr(exc, "os_error", None)
        if getattr(os_error, "errno", None) == errno.ECONNREFUSED:
            return "refused"
        return "connect"
    if isinstance(exc, aiohttp.ClientOSError):
        if exc.errno in (errno.ECONNRESET, errno.EPIPE):
            return "reset"
        return "os error"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "truncated body"
    return type(exc).__name__


class _Picker:
    """Targets drawn by weight from a seeded generator (a run is repeatable)."""

    def __init__(self, targets: list[Target], rng: random.Random) -> None:
        self.rng = rng
        self.cumulative = list(itertools.accumulate(max(t.weight, 0.0) for t in targets))
        self.single = len(targets) == 1

    def pick(self) -> int:
        if self.single:
            return 0
        x = self.rng.random() * self.cumulative[-1]
        return bisect.bisect_right(self.cumulative, x)


class StageRun:
    """One stage's measurements while it runs."""

    def __init__(self, plan: StagePlan, started: int) -> None:
        self.plan = plan
        self.started = started  # monotonic ns
        self.measure_from = started + int(plan.warmup_s * 1e9)
        self.measure_until = self.measure_from + int(plan.duration_s * 1e9)
        self.requests: list[list[Any]] = []
        self.errors: dict[str, int] = {}
        self.issued = 0  # measured requests sent
        self.warmup_sent = 0
        self.late = 0
        self.skipped = 0
        self.max_lag_ns = 0
        self.first_measured: int | None = None
        self.last_end: int | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.cpu_start = time.process_time_ns()
        self.cpu_measure_start: int | None = None

    def measuring(self, now: int) -> bool:
        return now >= self.measure_from

    def can_issue(self, now: int) -> bool:
        plan = self.plan
        if now >= self.measure_until:
            return False
        return plan.requests is None or self.issued < plan.requests

    def record(
        self,
        seq: int,
        target: int,
        intended: int,
        sent: int,
        end: int,
        status: int | None,
        error: str | None,
        epoch: int,
    ) -> None:
        # Histograms are made when the stage ends, out of the measured window's way.
        latency = end - intended
        if error is not None:
            self.errors[error] = self.errors.get(error, 0) + 1
        elif status is not None and status >= 400:
            key = f"status {status}"
            self.errors[key] = self.errors.get(key, 0) + 1
        self.requests.append([seq, target, intended + epoch, sent + epoch, latency, status, error])
        if self.last_end is None or end > self.last_end:
            self.last_end = end

    def result(self, epoch: int, interrupted: bool) -> dict[str, Any]:
        plan = self.plan
        end = self.last_end or time.monotonic_ns()
        start = self.first_measured if self.first_measured is not None else end
        if plan.kind == "open":
            start = self.measure_from  # the schedule's own window
        window = max(end - start, 1)
        count = len(self.requests)
        cpu = time.process_time_ns() - (self.cpu_measure_start or self.cpu_start)
        errors = sum(self.errors.values())
        latencies = [r[4] for r in self.requests]
        hist = histogram_of(latencies)
        out: dict[str, Any] = {
            "index": plan.index,
            "kind": plan.kind,
            "concurrency": plan.concurrency,
            "rate": plan.rate,
            "poisson": plan.poisson,
            "warmup_s": plan.warmup_s,
            "warmup_requests": self.warmup_sent,
            "planned_duration_s": plan.duration_s,
            "planned_requests": plan.requests,
            "window_start_ns": start + epoch,
            "window_end_ns": end + epoch,
            "duration_s": window / 1e9,
            "count": count,
            "ok": count - errors,
            "errors": dict(sorted(self.errors.items())),
            "throughput": count / (window / 1e9) if count else 0.0,
            "latency": histogram_summary(hist, latencies),
            "histogram": encode_histogram(hist),
            "generator_cpu_s": cpu / 1e9,
            "generator_cpu_share": cpu / window,
            "generator_cpu_us_per_request": cpu / 1000 / count if count else None,
            "max_in_flight": self.max_in_flight,
            "interrupted": interrupted,
            "requests": self.requests,
        }
        if plan.kind == "open":
            arrivals = self.issued + self.skipped
            # From the actual send: what a client that waited for its schedule would report.
            service = [r[4] - (r[3] - r[2]) for r in self.requests]
            out["service_latency"] = histogram_summary(histogram_of(service), service)
            out["arrivals"] = arrivals
            out["late"] = self.late
            out["skipped"] = self.skipped
            out["max_lag_ns"] = self.max_lag_ns
            out["schedule_kept"] = (
                self.skipped == 0 and self.late <= max(1, arrivals // 20)  # ≤ 5% late
            )
        return out


class Engine:
    def __init__(self, plan: EnginePlan, out: TextIO) -> None:
        self.plan = plan
        self.out = out
        self.stop = False
        self.seq = itertools.count(1)
        self.rng = random.Random(plan.seed)
        self.picker = _Picker(plan.targets, self.rng)
        # Wall clock of a monotonic reading: one offset for the whole run.
        self.epoch = time.time_ns() - time.monotonic_ns()
        # Parsed once: joining a base URL and a path per request costs the client CPU.
        self.urls = [URL(plan.base_url + t.path, encoded=True) for t in plan.targets]
        # The task sending each request in flight, and when it sent (for the watchdog).
        self.in_flight: dict[asyncio.Task[Any], int] = {}
        self.timed_out: set[asyncio.Task[Any]] = set()

    def emit(self, event: str, **data: Any) -> None:
        self.out.write(json.dumps({"event": event, **data}, separators=(",", ":")) + "\n")
        self.out.flush()

    async def run(self) -> None:
        for stage in self.plan.stages:
            if self.stop:
                break
            limit = stage.concurrency if stage.kind == "closed" else self.plan.max_inflight
            connector = aiohttp.TCPConnector(limit=max(limit, 1), ttl_dns_cache=None)
            # Only connecting has a timer of its own; the watchdog bounds the rest.
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.plan.timeout_s)
            async with aiohttp.ClientSession(
                connector=connector,
                timeout=timeout,
                cookies=self.plan.cookies,
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
                headers={"User-Agent": "djtrace-load"},
            ) as session:
                self.emit(
                    "stage-start",
                    index=stage.index,
                    kind=stage.kind,
                    concurrency=stage.concurrency,
                    rate=stage.rate,
                    warmup_s=stage.warmup_s,
                    duration_s=stage.duration_s,
                    requests=stage.requests,
                )
                run = StageRun(stage, time.monotonic_ns())
                reporter = asyncio.create_task(self._progress(run))
                try:
                    if stage.kind == "closed":
                        await self._closed(session, run)
                    else:
                        await self._open(session, run)
                finally:
                    reporter.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reporter
                self.emit("stage", result=run.result(self.epoch, self.stop))
        self.emit("end", interrupted=self.stop)

    async def _progress(self, run: StageRun) -> None:
        limit = int(self.plan.timeout_s * 1e9)
        while True:
            now = time.monotonic_ns()
            for task, sent in list(self.in_flight.items()):
                if now - sent > limit and task not in self.timed_out:
                    self.timed_out.add(task)
                    task.cancel()
            self.emit(
                "progress",
                index=run.plan.index,
                warming=not run.measuring(now),
                elapsed_s=(now - run.started) / 1e9,
                done=len(run.requests),
                errors=sum(run.errors.values()),
            )
            await asyncio.sleep(PROGRESS_EVERY_S)

    async def _send(
        self, session: aiohttp.ClientSession, run: StageRun, intended: int, measured: bool
    ) -> None:
        index = self.picker.pick()
        target = self.plan.targets[index]
        seq = next(self.seq)
        sent = time.monotonic_ns()
        headers = dict(target.headers)
        tag = format_tag(self.plan.run_id, run.plan.index, seq, sent + self.epoch)
        full_every = self.plan.full_every
        headers[HEADER] = tag + ";full=1" if full_every and seq % full_every == 0 else tag
        status: int | None = None
        error: str | None = None
        run.in_flight += 1
        run.max_in_flight = max(run.max_in_flight, run.in_flight)
        task = asyncio.current_task()
        assert task is not None
        self.in_flight[task] = sent
        try:
            async with session.request(
                target.method,
                self.urls[index],
                headers=headers,
                data=target.body,
                allow_redirects=False,
            ) as response:
                await response.read()
                status = response.status
        except asyncio.CancelledError:
            if task not in self.timed_out:
                raise
            self.timed_out.discard(task)
            if hasattr(task, "uncancel"):  # Python 3.11+: this cancel is handled
                task.uncancel()
            error = "timeout"
        except Exception as exc:
            error = error_kind(exc)
        finally:
            run.in_flight -= 1
            del self.in_flight[task]
        if measured:
            run.record(seq, index, intended, sent, time.monotonic_ns(), status, error, self.epoch)
        else:
            run.warmup_sent += 1

    async def _closed(self, session: aiohttp.ClientSession, run: StageRun) -> None:
        async def user() -> None:
            while not self.stop:
                now = time.monotonic_ns()
                measured = run.measuring(now)
                if measured:
                    if run.cpu_measure_start is None:
                        run.cpu_measure_start = time.process_time_ns()
                    if not run.can_issue(now):
                        return
                    run.issued += 1
                    if run.first_measured is None:
                        run.first_measured = now
                await self._send(session, run, now, measured)

        users = [asyncio.create_task(user()) for _ in range(run.plan.concurrency)]
        try:
            await asyncio.gather(*users)
        finally:
            for task in users:
                task.cancel()
            await asyncio.gather(*users, return_exceptions=True)

    async def _open(self, session: aiohttp.ClientSession, run: StageRun) -> None:
        plan = run.plan
        interval = 1e9 / plan.rate
        due = run.started
        pending: set[asyncio.Task[None]] = set()
        try:
            while not self.stop:
                if plan.poisson:
                    due += int(self.rng.expovariate(1.0) * interval)
                else:
                    due += int(interval)
                measured = run.measuring(due)
                if measured and not run.can_issue(due):
                    break
                wait = due - time.monotonic_ns()
                # Behind schedule, still yield: the requests in flight must make progress.
                await asyncio.sleep(max(wait, 0) / 1e9)
                lag = time.monotonic_ns() - due
                if measured:
                    if run.cpu_measure_start is None:
                        run.cpu_measure_start = time.process_time_ns()
                    if lag > LATE_NS:
                        run.late += 1
                    run.max_lag_ns = max(run.max_lag_ns, lag)
                if len(pending) >= self.plan.max_inflight:
                    if measured:
                        run.skipped += 1
                    continue
                if measured:
                    run.issued += 1
                    if run.first_measured is None:
                        run.first_measured = due
                task = asyncio.create_task(self._send(session, run, due, measured))
                pending.add(task)
                task.add_done_callback(pending.discard)
            if pending:
                # The stragglers finish (each bounded by the request timeout) or are stopped.
                await asyncio.wait(pending, timeout=self.plan.timeout_s + 1)
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)


def _install_stop(engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
    def stop() -> None:
        engine.stop = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)


async def _main(plan: EnginePlan) -> None:
    engine = Engine(plan, sys.stdout)
    _install_stop(engine, asyncio.get_running_loop())
    await engine.run()


def run_plan(plan: EnginePlan) -> None:
    """Run a plan in this process, writing events to stdout."""
    try:
        import uvloop  # type: ignore[import-not-found]

        uvloop.run(_main(plan))
    except ImportError:
        asyncio.run(_main(plan))


def main() -> None:
    plan = EnginePlan.from_json(sys.stdin.read())
    run_plan(plan)


if __name__ == "__main__":
    main()
