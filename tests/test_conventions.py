"""The conventions a Django and command-line user expects of djtrace, through the real CLI:
the project found where the user is, `manage.py djtrace`, --version, completion, flags,
whole lines in a pipe, JSON for scripts, prune, .djtrace/.gitignore, --fail-on-error."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from djtrace.cli.project import settings_in_manage_py

from tests.conftest import run_djtrace
from tests.user_project import djtrace_in, project_env, python_in, write_project

# --- found where the user is ---------------------------------------------------------------


def test_request_in_a_project_folder_runs_that_project_and_says_so(tmp_path: Path):
    root = write_project(tmp_path / "site")
    result = djtrace_in(root, "request", "/hello/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("GET /hello/  →  200 OK")
    assert "view shop.views.hello" in result.stdout
    assert "1 query (" in result.stdout
    assert f"project: shop.settings in {root.resolve()} (from manage.py)" in result.stdout
    # With JSON on stdout, the line goes to stderr; when the user named the settings, it is
    # not said at all.
    as_json = djtrace_in(root, "request", "/hello/", "--format", "json")
    assert json.loads(as_json.stdout)["request"]["status"] == 200
    assert as_json.stderr.strip() == f"project: shop.settings in {root.resolve()} (from manage.py)"
    named = djtrace_in(
        root, "request", "/hello/", "--format", "json", "--settings", "shop.settings"
    )
    assert named.returncode == 0 and named.stderr == ""


def test_request_in_a_subfolder_walks_up_to_the_manage_py(tmp_path: Path):
    root = write_project(tmp_path / "site")
    deep = root / "shop" / "templates" / "shop"
    deep.mkdir(parents=True)
    result = djtrace_in(deep, "request", "/hello/")
    assert result.returncode == 0, result.stderr
    assert "view shop.views.hello" in result.stdout
    assert f"in {root.resolve()} (from manage.py)" in result.stdout


def test_settings_named_in_a_subfolder_are_imported_beside_the_manage_py(tmp_path: Path):
    """DJANGO_SETTINGS_MODULE exported (or --settings) in a subfolder of the project: as
    `python ../manage.py` would, the manage.py's folder is where the settings are found."""
    root = write_project(tmp_path / "site")
    deep = root / "shop" / "templates"
    deep.mkdir(parents=True)
    by_env = djtrace_in(deep, "request", "/hello/", DJANGO_SETTINGS_MODULE="shop.settings")
    assert by_env.returncode == 0, by_env.stderr
    assert "view shop.views.hello" in by_env.stdout
    assert f"shop.settings in {root.resolve()} (from DJANGO_SETTINGS_MODULE)" in by_env.stdout
    by_option = djtrace_in(deep, "request", "/hello/", "--settings", "shop.settings")
    assert by_option.returncode == 0, by_option.stderr
    assert f"shop.settings in {root.resolve()} (from --settings)" in by_option.stdout
    missing = djtrace_in(deep, "request", "/hello/", "--settings", "nosuch.settings")
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: cannot import settings module 'nosuch.settings'")


def test_the_walk_stops_at_a_repository_root(tmp_path: Path):
    write_project(tmp_path)  # a manage.py above the repository: not this folder's project
    repo = tmp_path / "elsewhere"
    (repo / ".git").mkdir(parents=True)
    (repo / "src").mkdir()
    result = djtrace_in(repo / "src", "request", "/books/")
    assert result.returncode == 0, result.stderr
    assert "project: the bundled sample_site (no manage.py here or above" in result.stdout


def test_pythonpath_finds_that_projects_manage_py(tmp_path: Path):
    root = write_project(tmp_path / "site")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = djtrace_in(elsewhere, "request", "/hello/", "--pythonpath", str(root))
    assert result.returncode == 0, result.stderr
    assert "view shop.views.hello" in result.stdout


def test_without_a_project_the_sample_site_runs_and_a_dim_line_says_so(tmp_path: Path):
    result = djtrace_in(tmp_path, "request", "/books/")
    assert result.returncode == 0, result.stderr
    assert "view djtrace.sample_site.bookstore.views.book_list" in result.stdout
    assert "project: the bundled sample_site (no manage.py here or above" in result.stdout


def test_a_manage_py_without_a_readable_settings_module_is_named(tmp_path: Path):
    (tmp_path / "manage.py").write_text(
        "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', pick_settings())\n"
    )
    result = djtrace_in(tmp_path, "request", "/books/")
    assert result.returncode == 0, result.stderr
    assert f"{tmp_path.resolve() / 'manage.py'} does not set DJANGO_SETTINGS_MODULE" in (
        result.stdout
    )


def test_environment_and_settings_option_win_over_manage_py(tmp_path: Path):
    root = write_project(tmp_path / "site")
    by_env = djtrace_in(
        root, "request", "/books/", DJANGO_SETTINGS_MODULE="djtrace.sample_site.settings"
    )
    assert by_env.returncode == 0, by_env.stderr
    assert "(from DJANGO_SETTINGS_MODULE)" in by_env.stdout
    by_option = djtrace_in(root, "request", "/books/", "--settings", "djtrace.sample_site.settings")
    assert by_option.returncode == 0, by_option.stderr
    assert "(from --settings)" in by_option.stdout


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('os.environ.setdefault("DJANGO_SETTINGS_MODULE", "a.settings")', "a.settings"),
        ("os.environ['DJANGO_SETTINGS_MODULE'] = 'b.settings.local'", "b.settings.local"),
        ("environ.setdefault('OTHER', 'x')", None),
        ("os.environ.setdefault('DJANGO_SETTINGS_MODULE', name)", None),
        ("this is not python", None),
    ],
)
def test_manage_py_is_read_without_running_it(tmp_path: Path, source: str, expected: str | None):
    manage = tmp_path / "manage.py"
    manage.write_text(f"import os\nraise SystemExit('never run')\n{source}\n")
    assert settings_in_manage_py(manage) == expected


def test_a_query_run_by_manage_py_shell_c_points_at_the_command(tmp_path: Path):
    """`python manage.py shell -c "…"` runs the command as `<string>`: its queries are the
    user's, not manage.py's (they read `manage.py:10`, the line that started Django)."""
    root = write_project(tmp_path / "site")
    command = (
        "from django.db import connection\n"
        "from djtrace import trace\n"
        "with trace() as t:\n"
        "    connection.cursor().execute('SELECT 1')\n"
        "print('source', t.queries[0].attrs.get('source'))\n"
    )
    result = python_in(root, "manage.py", "shell", "-c", command)
    assert result.returncode == 0, result.stderr
    assert "source <string>:4" in result.stdout


def test_manage_py_djtrace_offers_the_same_commands(tmp_path: Path):
    root = write_project(tmp_path / "site", djtrace_app=True)
    manage = [sys.executable, "manage.py", "djtrace"]
    env = project_env(COLUMNS="160")
    result = subprocess.run(
        [*manage, "request", "/hello/"], capture_output=True, text=True, cwd=root, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "GET /hello/  →  200 OK" in result.stdout
    assert "view shop.views.hello" in result.stdout
    assert f"project: shop.settings in {root.resolve()} (from manage.py)" in result.stdout
    helped = subprocess.run([*manage, "--help"], capture_output=True, text=True, cwd=root, env=env)
    assert helped.returncode == 0, helped.stderr
    assert "Usage: manage.py djtrace [OPTIONS] COMMAND" in helped.stdout
    for command in ("request", "capture", "list", "show", "stats", "prune"):
        assert f"│ {command} " in helped.stdout
    failed = subprocess.run(
        [*manage, "request", "nope"], capture_output=True, text=True, cwd=root, env=env
    )
    assert failed.returncode == 2
    assert failed.stderr.strip() == "error: path 'nope' must start with '/', e.g. /books/"


def test_call_command_runs_a_djtrace_command(capsys: pytest.CaptureFixture[str]):
    from django.core.management import CommandError, call_command

    call_command("djtrace", "request", "/books/2/")
    assert "GET /books/2/  →  200 OK" in capsys.readouterr().out
    with pytest.raises(CommandError, match="exited 2"):
        call_command("djtrace", "request", "books")
    assert "error: path 'books' must start with '/'" in capsys.readouterr().err


# --- terminal conventions ------------------------------------------------------------------


def test_version_names_djtrace_python_and_django():
    import django

    result = run_djtrace("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("djtrace 0.")
    assert f"Python {sys.version.split()[0]}" in result.stdout
    assert f"Django {django.get_version()}" in result.stdout


def test_shell_completion_completes_commands_and_choices():
    import os

    env = {**os.environ, "_DJTRACE_COMPLETE": "complete_bash", "COMP_CWORD": "1"}
    command = [sys.executable, "-m", "djtrace.cli"]
    words = subprocess.run(
        command, capture_output=True, text=True, env={**env, "COMP_WORDS": "djtrace re"}
    )
    assert words.stdout.split() == ["request", "replay"]
    env.update(COMP_WORDS="djtrace request --format ", COMP_CWORD="3")
    choices = subprocess.run(command, capture_output=True, text=True, env=env)
    assert choices.stdout.split() == ["tree", "json", "jsonl"]
    # What `djtrace --show-completion` prints for bash is what bash needs to call it back.
    shown = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m djtrace.cli --show-completion bash"],
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert "_DJTRACE_COMPLETE=complete_bash" in shown.stdout
    assert "complete -o default -F _djtrace_completion djtrace" in shown.stdout
    helped = run_djtrace("--help")
    assert "--install-completion" in helped.stdout and "--show-completion" in helped.stdout


def _commands() -> list[str]:
    import typer.main
    from djtrace.cli.app import app

    return sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_every_commands_help_shows_flags_as_flags():
    # `load analyze` is a command of its own, made when `load` reads that word.
    for args in [(), *[(name,) for name in _commands()], ("load", "analyze")]:
        result = run_djtrace(*args, "--help")
        assert result.returncode == 0, (args, result.stderr)
        assert "--help" in result.stdout
        assert "<bool>" not in result.stdout, (args, result.stdout)
        assert "BOOLEAN" not in result.stdout, args


def test_help_prose_wraps_once_at_the_terminal_not_at_the_docstrings_line_breaks():
    top = run_djtrace("--help", env={"COLUMNS": "200"}).stdout
    assert "(its manage.py says which settings), or try djtrace request /books/ anywhere" in top
    load = run_djtrace("load", "--help", env={"COLUMNS": "200"}).stdout
    assert "up to how many concurrent requests p99 stays under --slo, where throughput" in load
    # Examples keep a line each.
    assert "\n   djtrace load /books/ -- python manage.py runserver --noreload" in load


def _long_lines_request(tmp_path: Path, *options: str) -> list[str]:
    result = djtrace_in(tmp_path, "request", "/books/", *options)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_a_piped_tree_keeps_whole_lines(tmp_path: Path):
    lines = _long_lines_request(tmp_path)  # stdout is a pipe, COLUMNS unset
    resolve = next(line for line in lines if "URL resolve" in line)
    assert resolve.endswith(
        "URL resolve 'books/' → djtrace.sample_site.bookstore.views.book_list [book-list]"
    )
    assert 120 < max(len(line) for line in lines) < 400, "whole, and not padded to a width"
    assert not any(line.endswith("…") for line in lines)


def test_width_cuts_the_tree_where_asked(tmp_path: Path):
    lines = _long_lines_request(tmp_path, "--width", "72")
    assert max(len(line) for line in lines) <= 72
    assert any(line.endswith("…") for line in lines)
    assert djtrace_in(tmp_path, "request", "/books/", "--width", "5").returncode == 2


# --- the store: JSON for scripts, prune, .gitignore -----------------------------------------


def _traces(count: int) -> list[dict]:
    result = run_djtrace("request", "/books/2/", "--repeat", str(count), "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _import(store: Path, traces: list[dict], tmp_path: Path) -> None:
    file = tmp_path / f"import-{time.monotonic_ns()}.jsonl"
    file.write_text("".join(json.dumps(t) + "\n" for t in traces))
    result = run_djtrace("import", str(file), "--store", str(store))
    assert result.returncode == 0, result.stderr


def test_list_and_stats_as_json_for_scripts(tmp_path: Path):
    store = tmp_path / "traces.sqlite3"
    traces = _traces(3)
    _import(store, traces, tmp_path)
    listed = run_djtrace("list", "--store", str(store), "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = json.loads(listed.stdout)
    assert sorted(r["id"] for r in rows) == sorted(t["id"] for t in traces)
    first = rows[0]
    assert first["path"] == "/books/2/" and first["route"] == "books/<int:pk>/"
    assert first["status"] == 200 and first["method"] == "GET"
    assert first["duration_ns"] in [t["duration"] for t in traces]
    assert first["duration_ms"] == pytest.approx(first["duration_ns"] / 1e6, abs=0.001)
    assert first["started_at"].endswith("+00:00")
    stats = run_djtrace("stats", "--store", str(store), "--format", "json")
    assert stats.returncode == 0, stats.stderr
    (route,) = json.loads(stats.stdout)
    assert (route["method"], route["route"], route["count"]) == ("GET", "books/<int:pk>/", 3)
    assert route["p50_ms"] <= route["p95_ms"] <= route["p99_ms"]
    assert route["phases_p95_ms"]["view"] > 0
    nothing = run_djtrace("list", "--store", str(store), "--format", "json", "--status", "5xx")
    assert nothing.returncode == 0 and json.loads(nothing.stdout) == []
    none = run_djtrace("stats", "--store", str(store), "--format", "json", "--path", "/x/*")
    assert none.returncode == 0 and json.loads(none.stdout) == []


def test_prune_by_age_and_by_count(tmp_path: Path):
    store = tmp_path / "traces.sqlite3"
    recent = _traces(3)
    old = []
    for n, trace in enumerate(recent):
        aged = dict(trace, id=f"{n:x}" * 16, started_at=trace["started_at"] - 10 * 86400 * 10**9)
        old.append(aged)
    _import(store, recent + old, tmp_path)
    by_age = run_djtrace("prune", "--older-than", "7d", "--store", str(store))
    assert by_age.returncode == 0, by_age.stderr
    assert by_age.stdout.strip() == f"pruned 3 traces from {store}; 3 traces left"
    left = json.loads(run_djtrace("list", "--store", str(store), "--format", "json").stdout)
    assert sorted(r["id"] for r in left) == sorted(t["id"] for t in recent)
    by_count = run_djtrace("prune", "--keep", "1", "--store", str(store))
    assert by_count.stdout.strip() == f"pruned 2 traces from {store}; 1 trace left"
    newest = max(recent, key=lambda t: t["started_at"])
    (kept,) = json.loads(run_djtrace("list", "--store", str(store), "--format", "json").stdout)
    assert kept["id"] == newest["id"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "say what to delete"),
        (("--older-than", "soon"), "--older-than 'soon': use an age"),
        (("--keep", "-1"), "'--keep'"),
    ],
)
def test_prune_bad_input_is_one_line(tmp_path: Path, args: tuple[str, ...], message: str):
    result = run_djtrace("prune", *args, "--store", str(tmp_path / "t.sqlite3"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert message in result.stderr


def test_the_store_folder_djtrace_creates_ignores_itself_in_git(tmp_path: Path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    traces = tmp_path / "books.jsonl"
    traces.write_text("".join(json.dumps(t) + "\n" for t in _traces(1)))
    result = djtrace_in(tmp_path, "import", "books.jsonl", DJTRACE_STORE="")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / ".djtrace" / "traces.sqlite3").exists()
    assert (tmp_path / ".djtrace" / ".gitignore").read_text().splitlines()[-1] == "*"
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert status.stdout.splitlines() == ["?? books.jsonl"]


def test_a_folder_the_user_made_gets_no_gitignore(tmp_path: Path):
    (tmp_path / ".djtrace").mkdir()
    traces = tmp_path / "books.jsonl"
    traces.write_text("".join(json.dumps(t) + "\n" for t in _traces(1)))
    assert djtrace_in(tmp_path, "import", "books.jsonl", DJTRACE_STORE="").returncode == 0
    assert not (tmp_path / ".djtrace" / ".gitignore").exists()


# --- a CI gate -----------------------------------------------------------------------------


def test_fail_on_error_exits_1_on_a_5xx_after_showing_it():
    failed = run_djtrace("request", "/boom/", "--fail-on-error")
    assert failed.returncode == 1
    assert "→  500 Internal Server Error" in failed.stdout
    assert failed.stderr.strip().splitlines()[-1] == (
        "error: the request answered 500 (--fail-on-error)"
    )
    repeated = run_djtrace("request", "/boom/", "--fail-on-error", "--repeat", "2")
    assert repeated.returncode == 1
    assert "error: 2 of 2 runs answered 500" in repeated.stderr
    fine = run_djtrace("request", "/books/", "--fail-on-error")
    assert fine.returncode == 0, fine.stderr
    not_found = run_djtrace("request", "/no/such/page/", "--fail-on-error")
    assert not_found.returncode == 0, "a 4xx is the app's answer, not a server error"
    unchecked = run_djtrace("request", "/boom/")
    assert unchecked.returncode == 0


def test_replay_of_a_trace_without_settings_runs_the_project_found_here(tmp_path: Path):
    root = write_project(tmp_path / "site")
    recorded = djtrace_in(root, "request", "/hello/", "--format", "json")
    assert recorded.returncode == 0, recorded.stderr
    document = json.loads(recorded.stdout)
    document["where"].pop("settings", None)  # as from an older capture
    (tmp_path / "hello.json").write_text(json.dumps(document))
    result = djtrace_in(root, "replay", str(tmp_path / "hello.json"))
    assert result.returncode == 0, result.stderr
    assert (
        f"with settings shop.settings (from {root.resolve()}/manage.py: the trace does not say"
        in result.stdout
    )
    assert "view shop.views.hello" in result.stdout
