"""`djtrace load`'s refusals and choices that need no server: loopback only, where to bind."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from djtrace.cli.errors import CliError
from djtrace.cli.load_server import bind_command
from djtrace.cli.load_targets import parse_weighted
from djtrace.lab import usl
from djtrace.lab.tag import format_tag, parse_tag, tag_of

from tests.conftest import run_djtrace


@pytest.mark.parametrize(
    "url", ["http://10.1.2.3:8000/books/", "http://example.com/", "http://192.168.0.1/"]
)
def test_load_refuses_a_server_that_is_not_on_this_machine(url: str, tmp_path: Path) -> None:
    result = run_djtrace("load", url, "--store", str(tmp_path / "t.sqlite3"))
    assert result.returncode == 2
    assert "only loads servers on this machine" in result.stderr
    assert "Traceback" not in result.stderr


def test_load_of_a_path_without_a_server_command_says_what_to_give(tmp_path: Path) -> None:
    result = run_djtrace("load", "/books/", "--store", str(tmp_path / "t.sqlite3"))
    assert result.returncode == 2
    assert "give the server command after --" in result.stderr


def test_load_with_bad_levels_is_a_one_line_error(tmp_path: Path) -> None:
    result = run_djtrace("load", "/books/", "-c", "1,two", "--", "gunicorn", "x.wsgi")
    assert result.returncode == 2
    assert "numbers separated by commas" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("option", "where", "says"),
    [
        ("--json", "a-file/run.json", "cannot make"),
        ("--report", ".", "is a directory"),
    ],
)
def test_an_output_that_cannot_be_written_is_refused_before_the_server_starts(
    tmp_path: Path, option: str, where: str, says: str
) -> None:
    started = tmp_path / "started"
    (tmp_path / "a-file").write_text("not a folder")
    result = run_djtrace(
        "load", "/", "-c", "1", option, str(tmp_path / where),
        "--store", str(tmp_path / "t.sqlite3"),
        "--", sys.executable, "-c", f"open({str(started)!r}, 'w')", "{port}",
    )  # fmt: skip
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: {option} ") and says in line
    assert not started.exists()  # refused before a minute of load, not after


def test_a_server_that_exits_at_once_is_reported_with_its_output(tmp_path: Path) -> None:
    result = run_djtrace(
        "load",
        "/",
        "-c",
        "1",
        "--store",
        str(tmp_path / "t.sqlite3"),
        "--",
        sys.executable,
        "-c",
        "import sys; print('no such app'); sys.exit(3)",
        "{port}",
    )
    assert result.returncode == 2
    assert "exited with 3 before it answered" in result.stderr
    assert "no such app" in result.stderr


def test_show_of_a_run_that_is_not_kept_is_a_one_line_error(tmp_path: Path) -> None:
    store = tmp_path / "t.sqlite3"
    result = run_djtrace("load", "--show", "nope", "--store", str(store))
    assert result.returncode == 2 and "no trace store" in result.stderr


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            ["gunicorn", "app.wsgi", "-w", "2"],
            ["gunicorn", "app.wsgi", "-w", "2", "-b", "127.0.0.1:5001"],
        ),
        (["python", "-m", "gunicorn", "app.wsgi", "-b", "127.0.0.1:7000"], 7000),
        (
            ["uvicorn", "app.asgi:application"],
            ["uvicorn", "app.asgi:application", "--host", "127.0.0.1", "--port", "5001"],
        ),
        (["uvicorn", "a:b", "--port", "7001"], 7001),
        (
            ["python", "manage.py", "runserver", "--noreload"],
            ["python", "manage.py", "runserver", "127.0.0.1:5001", "--noreload"],
        ),
        (["python", "manage.py", "runserver", "8009"], 8009),
        (["./serve", "--listen", "127.0.0.1:{port}"], ["./serve", "--listen", "127.0.0.1:5001"]),
    ],
)
def test_the_server_command_is_bound_to_a_loopback_port(
    command: list[str], expected: object
) -> None:
    bound, port = bind_command(command, 5001)
    if isinstance(expected, int):
        assert (bound, port) == (command, expected)
    else:
        assert (bound, port) == (expected, 5001)


def test_a_server_bound_elsewhere_or_unknown_is_refused() -> None:
    with pytest.raises(CliError, match="loopback only"):
        bind_command(["gunicorn", "app.wsgi", "-b", "10.0.0.5:8000"], 5001)
    with pytest.raises(CliError, match=r"put \{port\} in the command"):
        bind_command([sys.executable, "serve.py"], 5001)
    # A server command that is not there is named so (a typo, not a server to teach).
    with pytest.raises(CliError, match="command not found: gunicornx"):
        bind_command(["gunicornx", "app.wsgi"], 5001)


def test_the_load_tag_round_trips_and_a_malformed_one_is_ignored() -> None:
    value = format_tag("run-1", 3, 42, 1_700_000_000_000_000_000)
    assert parse_tag(value) == {
        "run": "run-1",
        "stage": 3,
        "seq": 42,
        "sent_ns": 1_700_000_000_000_000_000,
    }
    assert parse_tag("run=x;stage=a;seq=1;sent=2") is None
    assert parse_tag("run=" + "x" * 41 + ";stage=1;seq=1;sent=2") is None
    assert tag_of({"headers": {"x-djtrace-load": value}})["seq"] == 42  # a raw header
    assert tag_of({"headers": {}}) is None


def test_usl_fit_recovers_contention_and_coherency_and_the_peak() -> None:
    lam, sigma, kappa = 100.0, 0.05, 0.002
    points = [
        (n, lam * n / (1 + sigma * (n - 1) + kappa * n * (n - 1))) for n in (1, 2, 4, 8, 16, 32, 64)
    ]
    fitted = usl.fit(points)
    assert fitted is not None
    assert fitted.sigma == pytest.approx(sigma, rel=0.01)
    assert fitted.kappa == pytest.approx(kappa, rel=0.01)
    assert fitted.peak_concurrency == pytest.approx(((1 - sigma) / kappa) ** 0.5, rel=0.01)
    assert fitted.quality == "good"
    # A flat line past 4 users (pure contention, no retrograde): κ stays 0, no peak.
    flat = usl.fit([(1, 20.0), (2, 40.0), (4, 78.0), (8, 80.0), (16, 80.0)])
    assert flat is not None and flat.kappa >= 0
    assert usl.fit([(1, 10.0), (2, 20.0)]) is None  # too few stages to fit three terms


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ("/api/books/=3", ("/api/books/", 3.0)),
        ("/books/", ("/books/", 1.0)),
        ("/lab/io/?ms=50", ("/lab/io/?ms=50", 1.0)),
        ("/a/?x=1&ms=1500", ("/a/?x=1&ms=1500", 1.0)),
        ("/books/?page=2=3", ("/books/?page=2", 3.0)),
    ],
)
def test_a_weight_follows_the_path_and_a_query_value_is_not_one(
    item: str, expected: tuple[str, float]
) -> None:
    assert parse_weighted(item) == expected


@pytest.mark.parametrize("port", [["--port", "abc"], ["--port="]])
def test_a_uvicorn_port_that_is_not_a_number_is_a_one_line_error(
    port: list[str], tmp_path: Path
) -> None:
    result = run_djtrace(
        "load", "/books/", "-c", "1", "--store", str(tmp_path / "t.sqlite3"),
        "--", "uvicorn", "mysite.asgi:application", *port,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "uvicorn's --port is" in result.stderr and "Traceback" not in result.stderr
