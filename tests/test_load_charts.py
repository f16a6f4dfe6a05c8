"""The load report's charts without colour (a pipe, NO_COLOR): each part has its own letter."""

from __future__ import annotations

from pathlib import Path

from tests.load_support import gunicorn_command, load_run


def _legend(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "mean time per request, by part" in line)
    legend = next(line for line in lines[start + 1 :] if line.startswith(" " * 14))
    return [item.strip() for item in legend.strip().split("  ") if item.strip()]


def test_every_part_of_the_mean_request_has_a_letter_of_its_own(tmp_path: Path) -> None:
    _, out = load_run(
        tmp_path,
        ["/books/", "/no-such-page/"],  # SQL, templates, signals, a 404
        gunicorn_command("-w", "1"),
        "-c", "1", "-d", "0.5", "--warmup", "0", "--no-overhead-check",
    )  # fmt: skip
    items = _legend(out)
    names = [item[2:] for item in items]
    assert {"SQL", "templates", "signals", "error response"} <= set(names), items
    letters = [item[0] for item in items if not item[2:].startswith("middleware")]
    assert len(letters) == len(set(letters)), items
