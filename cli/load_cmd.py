"""`djtrace load`: the concurrency lab. How many requests at once can this site take, and
what gives first?

It starts the server under capture on a free loopback port (or loads one already running
under `djtrace capture`), drives it from a load generator in its own process (lab/engine.py),
joins every request the client measured to the trace the server recorded, and reports per
stage and for the whole sweep. The run is kept in the store (and with --json, in a file).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from djtrace.cli.errors import CliError, check_writable
from djtrace.cli.load_charts import render_charts
from djtrace.cli.load_compare import configurations, run_configurations
from djtrace.cli.load_overhead import measure_overhead
from djtrace.cli.load_render import render_compare, render_run, render_runs
from djtrace.cli.load_server import (
    Server,
    bind_command,
    check_listening,
    check_loopback_url,
    free_port,
)
from djtrace.cli.load_targets import from_store, log_in, parse_weighted
from djtrace.cli.render import report_console
from djtrace.cli.report_cmd import write_report
from djtrace.cli.store_access import StoreOption, store_path
from djtrace.cli.timeline_cmd import show_run_timeline
from djtrace.exporters.run_store import (
    RunNotFound,
    count_run_traces,
    get_run,
    list_runs,
    save_run,
    traces_of_run,
)
from djtrace.exporters.store import StoreError, TraceStore
from djtrace.lab import analysis, document
from djtrace.lab.compare import compare_runs
from djtrace.lab.engine import EnginePlan, StagePlan, Target
from djtrace.lab.join import index_traces, join_stage
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

EXAMPLES = """
[bold]Examples[/]

  djtrace load /lab/io/ -c 1,2,4,8,16 -- gunicorn mysite.wsgi -w 2 --threads 2
  djtrace load /books/ /api/books/=3 --rate 20,50,100 -- uvicorn mysite.asgi:application
  djtrace load /books/ -- python manage.py runserver --noreload
  djtrace load /books/ -- ./serve.sh --port {port}   [dim]# djtrace picks the port[/]
  djtrace load http://127.0.0.1:8000/books/ -c 1,4,16   [dim]# a server under capture[/]
  djtrace load --from-store -c 4,16 -- gunicorn mysite.wsgi   [dim]# the captured mix[/]
  DJTRACE_LOAD_PASSWORD=… djtrace load /account/ --user alice -- gunicorn mysite.wsgi
  djtrace load /books/ --json run.json -- gunicorn mysite.wsgi
  djtrace load --runs · djtrace load --show last · djtrace load --show RUN --against RUN2
  djtrace load /lab/io/ --timeline --report run.html -- gunicorn mysite.wsgi
  djtrace load /lab/cpu/ -c 1,2,4 --compare 'gunicorn mysite.wsgi -w 2' \\
      'gunicorn mysite.wsgi -w 1 --threads 2'   [dim]# processes or threads?[/]

The first line of the report is the answer: up to how many concurrent requests p99 stays
under --slo, where throughput levels off, and what grew (waiting for a worker, for the
GIL, for a pooled connection, on I/O).
"""

ENGINE_PATIENCE_S = 30.0  # beyond its planned time, before the generator is stopped
TRACE_SETTLE_S = 10.0  # how long to wait for the server's writers to flush the last traces


def _levels(value: str | None, what: str, cast: type) -> list[Any]:
    if not value:
        return []
    try:
        levels = [cast(v) for v in value.replace(" ", "").split(",") if v]
    except ValueError:
        raise CliError(f"{what} takes numbers separated by commas, e.g. 1,2,4,8") from None
    if any(v <= 0 for v in levels):
        raise CliError(f"{what}: every level must be above 0")
    return levels


def _split_command(args: list[str]) -> tuple[list[str], list[str]]:
    """(targets, server command): what came after `--` on the command line is the server's.

    click drops the `--` itself, so the split is read from the process's own arguments.
    """
    argv = sys.argv[1:]
    if "--" in argv:
        after = len(argv) - argv.index("--") - 1
        if 0 < after <= len(args):
            return args[: len(args) - after], args[len(args) - after :]
    return args, []


# Options `djtrace load` and `djtrace load analyze` share (the same report from either).
SloOption = Annotated[
    float, typer.Option("--slo", metavar="MS", min=0.1, help="The p99 the answer is about.")
]
JsonOption = Annotated[
    Path | None, typer.Option("--json", metavar="FILE", help="Also write the run here.")
]
TimelineOption = Annotated[
    bool, typer.Option("--timeline", help="Also draw the knee stage's lanes, per thread.")
]
ReportOption = Annotated[
    Path | None,
    typer.Option("--report", metavar="FILE", help="Also write a self-contained HTML report."),
]


def load(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="PATH[=WEIGHT]… | URL… [-- SERVER COMMAND…]",
            help="Paths to load (with weights), and after -- the server command to start; "
            "or http://127.0.0.1:PORT/… URLs of a server already under `djtrace capture`.",
            show_default=False,
        ),
    ] = None,
    concurrency: Annotated[
        str | None,
        typer.Option("--concurrency", "-c", help="Closed sweep: users per stage, e.g. 1,2,4,8."),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option("--rate", "-r", help="Open model: arrivals per second per stage, e.g. 20,50."),
    ] = None,
    poisson: Annotated[
        bool, typer.Option("--poisson", help="Open model: Poisson arrivals, not evenly spaced.")
    ] = False,
    duration: Annotated[
        float,
        typer.Option("--duration", "-d", metavar="S", min=0.1, help="Seconds measured per stage."),
    ] = 5.0,
    requests: Annotated[
        int | None,
        typer.Option(
            "--requests", "-n", min=1, help="At most this many measured requests a stage."
        ),
    ] = None,
    warmup: Annotated[
        float,
        typer.Option(
            "--warmup", metavar="S", min=0, help="Seconds of each stage run and discarded."
        ),
    ] = 1.0,
    timeout: Annotated[
        float, typer.Option("--timeout", metavar="S", min=0.1, help="A request's time limit.")
    ] = 10.0,
    slo: SloOption = 200.0,
    sample: Annotated[
        float | None,
        typer.Option(
            "--sample",
            metavar="RATE",
            min=0.0,
            max=1.0,
            help="Full traces for this share of requests (the rest: root timing only).",
        ),
    ] = None,
    use_store: Annotated[
        bool, typer.Option("--from-store", help="Load with the recent mix of captured requests.")
    ] = False,
    user: Annotated[
        str | None,
        typer.Option("--user", help="Log in once as this user (password: $DJTRACE_LOAD_PASSWORD)."),
    ] = None,
    login_url: Annotated[
        str, typer.Option("--login-url", help="The login form --user posts to.")
    ] = "/accounts/login/",
    json_file: JsonOption = None,
    store: StoreOption = None,
    start_timeout: Annotated[
        float, typer.Option("--start-timeout", metavar="S", min=1, help="Wait for the server.")
    ] = 60.0,
    max_inflight: Annotated[
        int, typer.Option("--max-inflight", min=1, help="Open model: arrivals waiting at most.")
    ] = 1000,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of the weighted path mix.")
    ] = None,
    overhead_check: Annotated[
        bool,
        typer.Option(
            "--overhead-check/--no-overhead-check",
            help="Rerun the knee stage with the server untraced: tracing's own effect.",
        ),
    ] = True,
    runs: Annotated[bool, typer.Option("--runs", help="List the runs kept in the store.")] = False,
    show: Annotated[
        str | None, typer.Option("--show", metavar="RUN", help="Show a kept run (or `last`).")
    ] = None,
    against: Annotated[
        str | None,
        typer.Option("--against", metavar="RUN", help="Compare with a kept run, stage by stage."),
    ] = None,
    timeline: TimelineOption = False,
    report: ReportOption = None,
    compare: Annotated[
        list[str] | None,
        typer.Option(
            "--compare",
            metavar="'SERVER CMD'…",
            help="Sweep each quoted server command in turn; one table and chart of them all.",
        ),
    ] = None,
) -> None:
    """The concurrency lab: load a server on loopback; how many requests at once, what gives?"""
    console = report_console()
    path = store_path(store).absolute()
    for target, option in ((json_file, "--json"), (report, "--report")):
        if target is not None:
            check_writable(target, option)
    targets_args, command = _split_command(list(args or []))
    if runs or show:
        if targets_args or command:
            raise CliError("--runs and --show read kept runs; give no paths or command with them")
        _stored(console, path, runs, show, against)
        if show and (timeline or report is not None or json_file is not None):
            kept = _read_run(path, show)  # a kept run's document, lanes and report
            if json_file is not None:
                _write_json(kept, json_file)
            if timeline:
                show_run_timeline(console, path, kept)
            if report is not None:
                write_report(console, path, kept, report)
        return
    closed = _levels(concurrency, "--concurrency", int)
    opened = _levels(rate, "--rate", float)
    if not closed and not opened:
        closed = [1, 2, 4, 8, 16]
    if not targets_args and not use_store:
        raise CliError("give the paths to load (e.g. /books/), or --from-store")
    configs: list[list[str]] = []
    if compare:  # configurations side by side (cli/load_compare.py)
        if command:
            raise CliError("--compare takes the server commands, quoted; give no -- COMMAND")
        if json_file is not None:
            raise CliError(
                "--json writes one run; with --compare each configuration's run is kept in "
                "the store (djtrace load --show RUN --json FILE)"
            )
        targets_args, configs = configurations(compare, targets_args)
        command = configs[0]
    base, targets = _targets(targets_args, command)

    def plan_for(base_url: str, cookies: dict[str, str], paths: list[Target]) -> EnginePlan:
        return _plan(
            base_url, paths, closed, opened, poisson, duration, requests, warmup, timeout,
            max_inflight, seed, cookies,
        )  # fmt: skip

    def sweep(server: list[str]) -> dict[str, Any]:
        return _with_server(
            console,
            path,
            server,
            targets,
            use_store,
            user,
            login_url,
            sample,
            start_timeout,
            plan_for,
        )

    if configs:
        run_configurations(console, configs, sweep, path, slo, timeline, report)
        return
    if command:
        run = sweep(command)
    else:
        assert base is not None
        check_listening(base)
        opened_store = _open_existing(path)
        try:
            if use_store:
                if opened_store is None:
                    raise CliError(f"--from-store: no trace store at {path}")
                targets = from_store(opened_store)
        finally:
            if opened_store is not None:
                opened_store.close()
        cookies = log_in(base, login_url, user) if user else {}
        plan = plan_for(base, cookies, targets)
        run = _run_and_join(console, plan, path, None, sample)
    run["summary"] = analysis.sweep_analysis(run["stages"], slo, run["interrupted"])
    if command and overhead_check and not run["interrupted"]:
        run["summary"]["overhead"] = measure_overhead(
            console, run, command, user, login_url, start_timeout, _drive
        )
    _keep(console, run, path)
    render_run(console, run)
    console.print(render_charts(run, console.width, console.color_system is None))
    if against:
        other = _read_run(path, against)
        render_compare(console, other, run, compare_runs(other, run))
    if timeline:
        show_run_timeline(console, path, run)
    if report is not None:
        write_report(console, path, run, report)
    if json_file is not None:  # last: a failure here must not cost the report above
        _write_json(run, json_file)
    if run["interrupted"]:
        raise typer.Exit(130)


def _targets(items: list[str], command: list[str]) -> tuple[str | None, list[Target]]:
    base: str | None = None
    targets = []
    for item in items:
        spec, weight = parse_weighted(item)
        if spec.startswith("/"):
            if not command:
                raise CliError(
                    f"{spec!r} is a path: give the server command after -- (djtrace starts it), "
                    f"or a full URL like http://127.0.0.1:8000{spec}"
                )
            targets.append(Target("GET", spec, weight))
            continue
        if command:
            raise CliError(f"{spec!r}: with a server command, give paths (/books/), not URLs")
        url_base, url_path = check_loopback_url(spec)
        if base is not None and url_base != base:
            raise CliError(f"all URLs must be on one server ({base}, not {url_base})")
        base = url_base
        targets.append(Target("GET", url_path, weight))
    return base, targets


def _plan(
    base: str,
    targets: list[Target],
    closed: list[int],
    opened: list[float],
    poisson: bool,
    duration: float,
    requests: int | None,
    warmup: float,
    timeout: float,
    max_inflight: int,
    seed: int | None,
    cookies: dict[str, str],
) -> EnginePlan:
    stages = [
        StagePlan(
            i, "closed", concurrency=n, warmup_s=warmup, duration_s=duration, requests=requests
        )
        for i, n in enumerate(closed, 1)
    ]
    stages += [
        StagePlan(
            len(stages) + i,
            "open",
            rate=r,
            poisson=poisson,
            warmup_s=warmup,
            duration_s=duration,
            requests=requests,
        )
        for i, r in enumerate(opened, 1)
    ]
    run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
    return EnginePlan(
        base_url=base,
        run_id=run_id,
        targets=targets,
        stages=stages,
        timeout_s=timeout,
        max_inflight=max_inflight,
        cookies=cookies,
        seed=seed,
    )


def _open_existing(path: Path) -> TraceStore | None:
    if not path.exists():
        return None
    try:
        return TraceStore.open(path)
    except StoreError as exc:
        raise CliError(str(exc)) from None


def _with_server(
    console: Console,
    path: Path,
    command: list[str],
    targets: list[Target],
    use_store: bool,
    user: str | None,
    login_url: str,
    sample: float | None,
    start_timeout: float,
    make_plan: Any,
) -> dict[str, Any]:
    try:
        opened = TraceStore.open(path, create=True)
    except StoreError as exc:
        raise CliError(str(exc)) from None
    try:
        if use_store:
            targets = from_store(opened)
    finally:
        opened.close()
    bound, port = bind_command(command, free_port())
    base = f"http://127.0.0.1:{port}"
    # Sampling is the lab's: the server traces none in full by itself, and every Nth load
    # request asks for a full trace (evenly spread, the same share in every stage).
    extra_env = {"DJTRACE_SAMPLE": "0"} if sample is not None else {}
    with tempfile.TemporaryDirectory(prefix="djtrace-load-") as scratch:
        console.print(
            Text.assemble(
                ("djtrace load: ", "bold"), f"starting `{shlex.join(bound)}` under capture"
            ),
            soft_wrap=True,
        )
        server = Server(bound, path, Path(scratch), extra_env)
        try:
            try:
                server.wait_until_serving(base + targets[0].path, start_timeout)
            except KeyboardInterrupt:  # the server is stopped below, whatever it was doing
                raise CliError("stopped before the load began", code=130) from None
            if not server.traced_pids():
                console.print(
                    Text(
                        "djtrace load: the server answers but djtrace is not active in it (not "
                        "a Python server that sets up Django?): client figures only",
                        "yellow",
                    ),
                    soft_wrap=True,
                )
            cookies = log_in(base, login_url, user) if user else {}
            plan = make_plan(base, cookies, targets)
            run = _run_and_join(console, plan, path, bound, sample)
        finally:
            code = server.stop()
        run["server"]["exit_code"] = code
    return run


def _run_and_join(
    console: Console,
    plan: EnginePlan,
    path: Path,
    command: list[str] | None,
    sample: float | None,
) -> dict[str, Any]:
    started = time.time_ns()
    if sample is not None:
        plan.full_every = round(1 / sample) if sample > 0 else 0
    stages, interrupted, engine_error = _drive(console, plan)
    if engine_error:
        raise CliError(f"the load generator failed: {engine_error}")
    run: dict[str, Any] = {
        "format": document.FORMAT,
        "version": document.VERSION,
        "run_id": plan.run_id,
        "started_at": started,
        "finished_at": time.time_ns(),
        "interrupted": interrupted,
        "server": {"base_url": plan.base_url, "command": command, "exit_code": None},
        "settings": {
            "targets": [t.__dict__ for t in plan.targets],
            "stages": [s.__dict__ for s in plan.stages],
            "timeout_s": plan.timeout_s,
            "max_inflight": plan.max_inflight,
            "sample": sample,
            "logged_in": bool(plan.cookies),
        },
        "versions": document.versions(),
        "store": str(path),
        "stages": stages,
    }
    traces = _joined_traces(path, plan, started, stages)
    for stage in stages:
        joined = join_stage(stage, traces)
        stage["analysis"] = analysis.stage_analysis(stage, joined)
        stage["joined"] = joined
    servers = {r.get("server") for r in traces.values() if r.get("server")}
    run["server"]["software"] = sorted(servers)
    return run


def _joined_traces(
    path: Path, plan: EnginePlan, started: int, stages: list[dict[str, Any]]
) -> dict[tuple[int, int], dict[str, Any]]:
    """The run's traces once the server's writers have flushed them (bounded wait)."""
    if not path.exists():
        return {}
    try:
        opened = TraceStore.open(path)
    except StoreError:
        return {}
    try:
        expected = sum(len(s["requests"]) + s.get("warmup_requests", 0) for s in stages)
        since = started - 5 * 10**9
        deadline = time.monotonic() + TRACE_SETTLE_S
        last, still = -1, 0
        while time.monotonic() < deadline:
            have = count_run_traces(opened, plan.run_id, since)
            if have >= expected:
                break
            still = still + 1 if have == last else 0
            if still >= 5:  # nothing new for a second: the rest are not coming
                break
            last = have
            time.sleep(0.2)
        return index_traces(traces_of_run(opened, plan.run_id, since), plan.run_id)
    except StoreError:
        return {}
    finally:
        opened.close()


def _drive(console: Console, plan: EnginePlan) -> tuple[list[dict[str, Any]], bool, str | None]:
    """Run the engine process, showing a progress bar per stage; Ctrl-C stops it in order."""
    process = subprocess.Popen(
        [sys.executable, "-m", "djtrace.lab.engine"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(plan.to_json())
    process.stdin.close()
    stages: list[dict[str, Any]] = []
    interrupted = False
    planned = {s.index: s for s in plan.stages}
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=30),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[int, Any] = {}
    # Each stage's time, and its stragglers' (each bounded by the request timeout).
    budget = sum(s.warmup_s + s.duration_s + plan.timeout_s + 1 for s in plan.stages)
    budget += ENGINE_PATIENCE_S
    deadline = time.monotonic() + budget
    with progress:
        while True:
            try:
                line = process.stdout.readline()
            except KeyboardInterrupt:
                interrupted = True
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGINT)
                progress.console.print(
                    Text("djtrace load: stopping; reporting what was measured", "yellow")
                )
                continue
            if not line:
                break
            if time.monotonic() > deadline and process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not one of the engine's events (a library printing): not ours
            kind = event["event"]
            if kind == "stage-start":
                stage = planned[event["index"]]
                label = document.stage_label(
                    {
                        "kind": stage.kind,
                        "concurrency": stage.concurrency,
                        "rate": stage.rate,
                        "poisson": stage.poisson,
                    }
                )
                tasks[stage.index] = progress.add_task(
                    f"stage {stage.index}: {label:<16}",
                    total=stage.warmup_s + stage.duration_s,
                    status="warming up",
                )
            elif kind == "progress":
                task = tasks.get(event["index"])
                if task is not None:
                    status = (
                        "warming up"
                        if event["warming"]
                        else f"{event['done']} requests, {event['errors']} errors"
                    )
                    progress.update(task, completed=event["elapsed_s"], status=status)
            elif kind == "stage":
                result = event["result"]
                stages.append(result)
                task = tasks.get(result["index"])
                if task is not None:
                    progress.update(
                        task,
                        completed=progress.tasks[task].total,
                        status=f"{result['count']} requests, {result['throughput']:.0f}/s",
                    )
            elif kind == "end":
                interrupted = interrupted or event["interrupted"]
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    assert process.stderr is not None
    error = process.stderr.read().strip()
    if process.returncode not in (0, -signal.SIGINT) and not stages and error:
        return stages, interrupted, error.splitlines()[-1]
    return stages, interrupted, None


def _keep(console: Console, run: dict[str, Any], path: Path) -> None:
    label = ", ".join(t["path"] for t in run["settings"]["targets"][:3])
    try:
        opened = TraceStore.open(path, create=True)
        try:
            save_run(opened, run, label)
        finally:
            opened.close()
    except StoreError as exc:
        console.print(Text(f"djtrace load: the run was not kept: {exc}", "yellow"))


def _write_json(run: dict[str, Any], json_file: Path) -> None:
    try:
        json_file.write_text(json.dumps(run, separators=(",", ":")))
    except OSError as exc:
        raise CliError(
            f"cannot write {json_file}: {exc.strerror or exc} (the run is kept: djtrace load "
            f"--show {run['run_id']} --json FILE writes it again)",
            code=1,
        ) from None


def _read_run(path: Path, ref: str) -> dict[str, Any]:
    """A run by id from the store, or from a --json file."""
    candidate = Path(ref)
    if candidate.suffix == ".json" or candidate.is_file():
        try:
            return document.check(json.loads(candidate.read_text()))
        except OSError as exc:
            raise CliError(f"cannot read {ref}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise CliError(f"{ref}: {exc}") from None
    opened = _open_existing(path)
    if opened is None:
        raise CliError(f"no trace store at {path}: no runs kept there yet")
    try:
        return document.check(get_run(opened, ref))
    except RunNotFound as exc:
        raise CliError(str(exc)) from None
    except StoreError as exc:
        raise CliError(str(exc)) from None
    except document.RunFormatError as exc:
        raise CliError(f"run {ref}: {exc}") from None
    finally:
        opened.close()


def _stored(
    console: Console, path: Path, runs: bool, show: str | None, against: str | None
) -> None:
    if runs:
        opened = _open_existing(path)
        if opened is None:
            raise CliError(f"no trace store at {path}: no runs kept there yet")
        try:
            render_runs(console, list_runs(opened))
        except StoreError as exc:
            raise CliError(str(exc)) from None
        finally:
            opened.close()
    if show:
        run = _read_run(path, show)
        other = _read_run(path, against) if against else None  # a bad id fails before output
        render_run(console, run)
        if other is not None:
            render_compare(console, other, run, compare_runs(other, run))


load.__doc__ = (load.__doc__ or "") + "\n\n" + EXAMPLES
