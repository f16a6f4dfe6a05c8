"""`djtrace load PATH… --compare 'CMD1' 'CMD2' …`: the same sweep against each server
configuration in turn (each started, warmed and stopped), then one table and one chart."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from djtrace.cli.errors import CliError
from djtrace.cli.render import ms
from djtrace.cli.timeline_cmd import knee_stage, show_run_timeline, stage_timeline
from djtrace.exporters.run_store import save_run
from djtrace.exporters.store import StoreError, TraceStore
from djtrace.lab import analysis
from djtrace.lab.compare_configs import Configuration, compare, levels, verdict
from djtrace.lab.document import stage_label
from djtrace.lab.report_compare import build_comparison_report
from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "red")
LABEL = 9  # "c 16  A " before a bar


def configurations(
    compare_opts: list[str], positional: list[str]
) -> tuple[list[str], list[list[str]]]:
    """(paths, server commands): --compare's values, plus the quoted commands the shell left
    among the paths (`--compare 'gunicorn …' 'uvicorn …'` puts the second one there)."""
    commands = list(compare_opts)
    paths = []
    for item in positional:
        if " " in item.strip():  # a path or URL has no space in it (it would be %20)
            commands.append(item)
        else:
            paths.append(item)
    parsed = []
    for command in commands:
        try:
            words = shlex.split(command)
        except ValueError as exc:
            raise CliError(f"--compare {command!r}: {exc}") from None
        if not words:
            raise CliError("--compare: an empty server command")
        parsed.append(words)
    if len(parsed) < 2:
        raise CliError(
            "--compare takes two server commands or more, each quoted: "
            "--compare 'gunicorn app.wsgi -w 4' 'gunicorn app.wsgi -w 2 --threads 2'"
        )
    return paths, parsed


def run_configurations(
    console: Console,
    commands: list[list[str]],
    sweep: Callable[[list[str]], dict[str, Any]],
    store_file: Path,
    slo: float,
    timeline: bool = False,
    report: Path | None = None,
) -> list[Configuration]:
    """Sweep each configuration in turn, keep each run, then draw the comparison (and with
    `timeline`, each one's knee stage; with `report`, the comparison as an HTML page)."""
    runs: list[tuple[str, dict[str, Any]]] = []
    failed = []
    stopped = False
    for i, command in enumerate(commands):
        label = shlex.join(command)
        console.print(
            Text.assemble((f"configuration {'ABCDEFGH'[i % 8]}: ", "bold"), label), soft_wrap=True
        )
        try:
            run = sweep(command)
        except CliError as exc:
            if exc.code == 130:  # Ctrl-C while this configuration's server started
                console.print(Text(f"  {exc}", "red"), soft_wrap=True)
                stopped = True
                break
            console.print(Text(f"  skipped: {exc}", "red"), soft_wrap=True)
            failed.append(label)
            continue
        run["summary"] = analysis.sweep_analysis(run["stages"], slo, run["interrupted"])
        run["settings"]["compare"] = [shlex.join(c) for c in commands]
        _keep(store_file, run, label)
        console.print(Text(f"  {run['summary']['answer']}", "dim"), soft_wrap=True)
        if timeline:
            show_run_timeline(console, store_file, run)
        runs.append((label, run))
        if run.get("interrupted"):
            break
    if stopped and not runs:
        raise typer.Exit(130)
    configs = compare(runs)
    console.print()
    print_comparison(console, configs)
    if report is not None:
        _write_report(console, store_file, configs, runs, report)
    if stopped or any(run.get("interrupted") for _, run in runs):
        raise typer.Exit(130)  # Ctrl-C, as for a single run
    if failed:
        raise typer.Exit(1)
    return configs


def _write_report(
    console: Console,
    store_file: Path,
    configs: list[Configuration],
    runs: list[tuple[str, dict[str, Any]]],
    target: Path,
) -> None:
    timelines = []
    for config, (_, run) in zip(configs, runs, strict=True):
        chosen = knee_stage(run)
        if chosen is not None:
            stage, why = chosen
            caption = f"{config.letter}: stage {stage['index']} ({stage_label(stage)}: {why})"
            timelines.append((caption, stage_timeline(store_file, run, stage)))
    try:
        target.write_text(build_comparison_report(configs, timelines), encoding="utf-8")
    except OSError as exc:
        raise CliError(f"cannot write {target}: {exc.strerror or exc}", code=1) from None
    console.print(Text(f"report: {target} (open it in a browser; it needs no network)", "dim"))


def _keep(store_file: Path, run: dict[str, Any], label: str) -> None:
    try:
        with TraceStore.open(store_file, create=True) as opened:
            save_run(opened, run, label)
    except StoreError:
        pass  # the comparison is still shown; `--show` will not find this run


def _cell(config: Configuration, level: int) -> str:
    figures = config.levels.get(level)
    if figures is None:
        return "–"
    cell = f"{figures.throughput:.0f} · {ms(figures.p95)} · {ms(figures.p99)}"
    return cell + (f" · {figures.errors} err" if figures.errors else "")


def comparison_table(configs: list[Configuration]) -> Table:
    table = Table(
        title="req/s · p95 · p99 at each concurrency",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("", no_wrap=True)
    for level in levels(configs):
        table.add_column(f"c {level}", justify="right", no_wrap=True)
    table.add_column("knee", justify="right", no_wrap=True)
    for k, config in enumerate(configs):
        table.add_row(
            Text(config.letter, f"bold {COLOURS[k % len(COLOURS)]}"),
            *[_cell(config, level) for level in levels(configs)],
            str(config.knee) if config.knee is not None else "rising",
        )
    return table


def _bars(
    configs: list[Configuration], width: int, value: Callable[[Any], float], unit: str
) -> list[Text]:
    top = max((value(f) for c in configs for f in c.levels.values()), default=0) or 1
    room = max(10, width - LABEL - 12)
    lines = []
    for level in levels(configs):
        for k, config in enumerate(configs):
            figures = config.levels.get(level)
            head = f"c {level:<4}" if k == 0 else " " * 6
            line = Text(f"{head} {config.letter} ", "dim" if k else "")
            if figures is not None:
                amount = value(figures)
                line.append("█" * max(1, round(room * amount / top)), COLOURS[k % len(COLOURS)])
                line.append(f" {amount:.0f}{unit}")
            lines.append(line)
    return lines


def print_comparison(console: Console, configs: list[Configuration]) -> None:
    console.print(Text(verdict(configs), "bold"))
    for k, config in enumerate(configs):
        # Whole lines, never wrapped: a configuration is a command to copy and run again.
        console.print(
            Text.assemble(
                (f"{config.letter} ", f"bold {COLOURS[k % len(COLOURS)]}"),
                config.command,
                (f"  (run {config.run_id})", "dim"),
            ),
            soft_wrap=True,
        )
    parts: list[RenderableType] = [comparison_table(configs)]
    parts.append(Text("throughput (req/s)", "bold"))
    parts.extend(_bars(configs, console.width, lambda f: f.throughput, ""))
    parts.append(Text("p99 (ms)", "bold"))
    parts.extend(_bars(configs, console.width, lambda f: f.p99 / 1e6, " ms"))
    for config in configs:
        if config.gave_first:
            parts.append(Text(f"{config.letter} gave first: {config.gave_first}", "dim"))
    console.print(Group(*parts))
