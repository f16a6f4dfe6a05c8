"""The load report in the terminal: the answer, the stages, where the time grew, the lanes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from djtrace.cli.render import ms, plural
from djtrace.lab.analysis import AFTER, BEFORE, INSIDE
from djtrace.lab.document import stage_label
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

_HIDE_PHASE_NS = 50_000  # phases under 0.05 ms at p95 in every stage are left out


def _num(ns: float | None) -> str:
    """Milliseconds without a unit, for dense tables."""
    if ns is None:
        return "–"
    value = ns / 1e6
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def _errors(stage: dict[str, Any]) -> Text:
    errors = stage["errors"]
    if not errors:
        return Text("0", "dim")
    total = sum(errors.values())
    return Text(f"{total}", "bold red")


def _short_label(stage: dict[str, Any]) -> str:
    if stage["kind"] == "closed":
        return f"c {stage['concurrency']}"
    return f"{stage['rate']:g}/s" + (" P" if stage.get("poisson") else "")


def stage_table(run: dict[str, Any]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    table.add_column("load", no_wrap=True)
    for header in ("req/s", "p50", "p95", "p99", "max", "err"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("before", justify="right", no_wrap=True)
    table.add_column("inside", justify="right", no_wrap=True)
    table.add_column("after", justify="right", no_wrap=True)
    table.add_column("busy", justify="right", no_wrap=True)
    table.add_column("X·W", justify="right", no_wrap=True)
    table.add_column("gen", justify="right", no_wrap=True)
    knee = (run.get("summary") or {}).get("knee_stage")
    for stage in run["stages"]:
        lat = stage["latency"]
        info = stage.get("analysis") or {}
        split = info.get("split") or {}
        little = info.get("littles_law") or {}
        label = Text(_short_label(stage))
        if stage["index"] == knee:
            label.append(" ◀", "bold yellow")
        if stage.get("interrupted"):
            label.append(" ✗", "yellow")
        table.add_row(
            label,
            f"{stage['throughput']:.1f}",
            _num(lat["p50"]),
            _num(lat["p95"]),
            _num(lat["p99"]),
            _num(lat["max"]),
            _errors(stage),
            _num(split.get(BEFORE, {}).get("mean")),
            _num(split.get(INSIDE, {}).get("mean")),
            _num(split.get(AFTER, {}).get("mean")),
            # An event loop's requests overlap: a busy share means nothing there.
            "async"
            if info.get("async_share", 0) > 0.5
            else f"{info['busy_mean']:.0%}"
            if "busy_mean" in info
            else "–",
            f"{little['in_flight']:.1f}" if little else "–",
            "–" if stage.get("observed") else f"{stage['generator_cpu_share']:.0%}",
        )
    return table


def phase_table(run: dict[str, Any]) -> Table | None:
    """Per-phase p50/p95 (ms) per stage: where the time went, and what grew."""
    stages = [s for s in run["stages"] if (s.get("analysis") or {}).get("split")]
    if not stages:
        return None
    names: list[str] = [BEFORE]
    for stage in stages:
        for name in stage["analysis"].get("phases") or {}:
            if name not in names and name != "unaccounted":
                names.append(name)
    names.append(AFTER)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1), collapse_padding=True)
    table.add_column("p50/p95 ms", no_wrap=True)
    for stage in stages:
        table.add_column(_short_label(stage), justify="right", no_wrap=True)
    grew = ((run.get("summary") or {}).get("grew_most") or {}).get("component")
    for name in names:
        cells = []
        biggest = 0
        for stage in stages:
            info = stage["analysis"]
            values = (info["split"] if name in (BEFORE, AFTER) else info.get("phases") or {}).get(
                name
            )
            if values is None:
                cells.append("–")
                continue
            biggest = max(biggest, values["p95"])
            cells.append(f"{_num(values['p50'])}/{_num(values['p95'])}")
        if biggest < _HIDE_PHASE_NS and name not in (BEFORE, AFTER):
            continue
        table.add_row(Text(name, "bold yellow" if name == grew else ""), *cells)
    return table


def _details(run: dict[str, Any]) -> list[Text]:
    lines = []
    for stage in run["stages"]:
        info = stage.get("analysis") or {}
        bits: list[str] = []
        if stage["kind"] == "open":
            bits.append(
                f"{stage['late']} late, {stage['skipped']} skipped of {stage['arrivals']} arrivals"
                f" (max lag {ms(stage['max_lag_ns'])})"
            )
            if not stage.get("schedule_kept", True):
                bits.append("the generator could NOT keep its schedule")
        if stage["errors"]:
            bits.append(", ".join(f"{k}: {v}" for k, v in stage["errors"].items()))
        if info.get("joined") is not None and info.get("joined") < stage["count"]:
            bits.append(f"{info['joined']} of {stage['count']} requests joined to traces")
        cpu = info.get("cpu")
        if cpu:
            bits.append(
                f"CPU {ms(cpu['mean_cpu_ns'])} of {ms(cpu['mean_cpu_ns'] + cpu['mean_off_cpu_ns'])}"
                f" inside Django ({cpu['cpu_share']:.0%})"
            )
        db = info.get("db")
        if db and (db["queries_per_request"] or db["connects_per_request"]):
            text = (
                f"DB: {db['queries_per_request']:.1f} queries, {db['connects_per_request']:.2f} "
                f"connections opened a request, {db['most_at_once']} at once at most"
            )
            if db["pool_wait"]["max"]:
                text += f", pool wait p95 {ms(db['pool_wait']['p95'])}"
            if db["pool_timeouts"]:
                text += f", {db['pool_timeouts']} pool timeouts"
            bits.append(text)
        hops = info.get("hops")
        if hops:
            bits.append(
                f"{hops['per_request']:.1f} thread hops a request, "
                f"{ms(hops['time']['mean'])} in them, waiting {ms(hops['wait']['mean'])}"
            )
        lanes = info.get("lanes")
        if lanes:
            bits.append(
                f"{plural(info['processes'], 'process', 'processes')}, "
                f"{plural(len(lanes), 'thread')} served"
            )
        if bits:
            lines.append(Text(f"  {stage['index']}. {stage_label(stage)}: " + "; ".join(bits)))
    return lines


def render_run(console: Console, run: dict[str, Any]) -> None:
    summary = run.get("summary") or {}
    console.print()
    console.print(Text(summary.get("answer", ""), "bold"), soft_wrap=False)
    console.print()
    command = run["server"].get("command")
    started = dt.datetime.fromtimestamp(run["started_at"] / 1e9).strftime("%Y-%m-%d %H:%M:%S")
    head = Text.assemble(
        ("run ", "dim"),
        (run["run_id"], "bold"),
        (f" · {started} · ", "dim"),
        " ".join(command) if command else run["server"]["base_url"],
    )
    console.print(head)
    console.print(stage_table(run))
    console.print(
        Text(
            "  c N: N concurrent users (closed); N/s: arrivals a second (open; P: Poisson); "
            "◀ the knee. Times in ms. before/inside/after: the mean request split (sent → "
            "Django → body back); busy: the worker threads' busy share; X·W: in flight by "
            "Little's law; gen: the load generator's share of a core",
            "dim",
        )
    )
    phases = phase_table(run)
    if phases is not None:
        console.print(phases)
    for line in _details(run):
        console.print(line)
    fit = summary.get("usl")
    if fit:
        peak = fit.get("peak_concurrency")
        console.print(
            Text(
                f"  USL fit: λ {fit['lambda']:.1f} req/s, σ {fit['sigma']:.3f}, "
                f"κ {fit['kappa']:.5f}, R² {fit['r2']:.3f} ({fit['quality']})"
                + (f"; peak at N* ≈ {peak:.1f}" if peak else "; no peak within reach (κ = 0)"),
                "dim",
            )
        )
    overhead = summary.get("overhead")
    if overhead and overhead.get("difference") is not None:
        sampled = overhead.get("sample")
        how = f"traced (--sample {sampled:g})" if sampled is not None else "traced"
        console.print(
            Text(
                f"  Tracing's own effect at the knee ({overhead['concurrency']} concurrent): "
                f"{overhead['traced']:.1f} req/s {how}, {overhead['untraced']:.1f} untraced "
                f"({_effect(overhead['difference'], sampled)})",
                "dim",
            )
        )
    if run.get("interrupted"):
        console.print(Text("  stopped early (Ctrl-C): these are the stages measured", "yellow"))
    console.print(
        Text(
            f"  kept in {run['store']} as run {run['run_id']}: djtrace load --show {run['run_id']}",
            "dim",
        ),
        soft_wrap=True,
    )


def _effect(difference: float, sampled: float | None) -> str:
    """How far to trust one traced and one untraced run of the knee stage."""
    if abs(difference) < 0.05:
        return (
            f"{abs(difference):.1%} {'less' if difference >= 0 else 'more'} traced: one run "
            "each, within a shared machine's noise"
        )
    if difference < 0:
        return f"{-difference:.1%} more traced: one run each, so the machine's noise"
    tip = "" if sampled is not None else "; --sample 0.1 keeps most of it off"
    return (
        f"{difference:.1%} less traced: one run each, so run again to confirm; tracing costs "
        f"most where a request does little work{tip}"
    )


def render_runs(console: Console, runs: list[tuple[str, int, str]]) -> None:
    if not runs:
        console.print("no load runs kept yet: run `djtrace load`")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("run", no_wrap=True)
    table.add_column("started", no_wrap=True)
    table.add_column("paths")
    for run_id, started, label in runs:
        when = dt.datetime.fromtimestamp(started / 1e9).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(run_id, when, label)
    console.print(table)


def render_compare(
    console: Console, a: dict[str, Any], b: dict[str, Any], rows: list[dict[str, Any]]
) -> None:
    console.print()
    console.print(Text.assemble(("A ", "bold"), a["run_id"], ("  →  B ", "bold"), b["run_id"]))
    if not rows:
        console.print("  the two runs have no stage at the same load to compare")
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("stage", no_wrap=True)
    for header in ("req/s A→B", "B/A", "p95 A→B", "p99 A→B", "before A→B", "inside A→B"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in rows:
        ra, rb = row["a"], row["b"]
        ratio = row["throughput_ratio"]
        style = "green" if ratio and ratio > 1.05 else "red" if ratio and ratio < 0.95 else ""
        table.add_row(
            row["stage"],
            f"{ra['throughput']:.1f}→{rb['throughput']:.1f}",
            Text(f"{ratio:.2f}×" if ratio else "–", style),
            f"{_num(ra['p95'])}→{_num(rb['p95'])}",
            f"{_num(ra['p99'])}→{_num(rb['p99'])}",
            f"{_num(ra[BEFORE])}→{_num(rb[BEFORE])}",
            f"{_num(ra[INSIDE])}→{_num(rb[INSIDE])}",
        )
    console.print(table)
