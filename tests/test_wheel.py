"""The built wheel, installed in a clean virtualenv, works from a folder outside the repository.

The wheel is built from a copy of the package's folders (no stale build/ output, nothing
from the work tree that is not packaged). It must hold sample_site's templates and
capture's bootstrap, and add exactly one top-level name, `djtrace`, to site-packages.

By default the clean venv borrows its dependencies from the running environment through a
.pth file (fast, offline). With DJTRACE_WHEEL_INSTALL=index (CI), pip installs the wheel
with its dependencies resolved from the package index, as a user's `pip install` does.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGED = ("tracer", "cli", "exporters", "lab", "sample_site")
FROM_INDEX = os.environ.get("DJTRACE_WHEEL_INSTALL") == "index"


def _run(*args: str | Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=600, **kwargs
    )
    assert result.returncode == 0, f"{args}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "*.sqlite3")
    for folder in PACKAGED:
        shutil.copytree(ROOT / folder, source / folder, ignore=skip)
    dist = tmp_path_factory.mktemp("dist")
    # The running environment's setuptools when it has one (offline); else pip's isolated build.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, source, "-w", dist)
    (built,) = dist.glob("djtrace-*.whl")
    return built


def test_the_wheel_holds_one_package_with_its_templates_and_bootstrap(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))
        entry_points = archive.read(
            next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        ).decode()
    assert {n.split("/", 1)[0] for n in names} == {
        "djtrace",
        wheel.name.split("-py3")[0] + ".dist-info",
    }
    for expected in (
        "djtrace/__init__.py",
        "djtrace/cli/bootstrap/sitecustomize.py",
        "djtrace/management/commands/djtrace.py",
        "djtrace/sample_site/bookstore/templates/bookstore/book_list.html",
        "djtrace/sample_site/bookstore/templates/base.html",
        "djtrace/sample_site/bookstore/jinja2/bookstore/books.jinja",
        "djtrace/sample_site/bookstore/migrations/0001_initial.py",
        "djtrace/exporters/store.py",
        "djtrace/lab/__init__.py",
    ):
        assert expected in names, expected
    assert not [n for n in names if "__pycache__" in n or n.endswith(".sqlite3")]
    assert "djtrace = djtrace.cli.app:main" in entry_points
    text = metadata.decode()
    for classifier in (
        "Framework :: Django :: 4.2",
        "Framework :: Django :: 5.2",
        "Framework :: Django :: 6.0",
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.13",
    ):
        assert f"Classifier: {classifier}" in text


def _site_packages(python: Path) -> Path:
    out = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    return Path(out.stdout.strip())


def test_installed_in_a_clean_venv_it_traces_from_outside_the_repository(
    wheel: Path, tmp_path: Path
):
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    if FROM_INDEX:
        _run(sys.executable, "-m", "venv", venv)
        site = _site_packages(python)
        before = set(os.listdir(site))
        _run(python, "-m", "pip", "install", "-q", wheel)
    else:
        _run(sys.executable, "-m", "venv", "--without-pip", venv)
        site = _site_packages(python)
        # The dependencies come from this environment, after the venv's own site-packages;
        # a .pth line only adds a folder (its own .pth files, the editable djtrace's finder
        # among them, are not run), so `djtrace` can only come from the wheel.
        (site / "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        before = set(os.listdir(site))
        _run(sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel)
    added = set(os.listdir(site)) - before
    record = next(site.glob("djtrace-*.dist-info")) / "RECORD"
    ours = {line.split("/", 1)[0] for line in record.read_text().splitlines()}
    ours = {name for name in ours if not name.startswith("..") and "," not in name}
    assert ours == {"djtrace", record.parent.name}, "the wheel's files live under one name"
    if not FROM_INDEX:
        assert added == ours, added

    outside = tmp_path / "somewhere"
    outside.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", "COLUMNS", "DJTRACE_STORE")
    }
    env.update(NO_COLOR="1", DJTRACE_SAMPLE_DATA=str(tmp_path / "data"))
    djtrace = venv / "bin" / "djtrace"

    located = _run(python, "-c", "import djtrace; print(djtrace.__file__)", cwd=outside, env=env)
    assert Path(located.stdout.strip()).is_relative_to(site)
    version = _run(djtrace, "--version", cwd=outside, env=env)
    assert version.stdout.startswith("djtrace 0.1.0 (Python ")

    result = _run(djtrace, "request", "/books/", cwd=outside, env=env)
    assert result.stdout.startswith("GET /books/  →  200 OK")
    assert "template bookstore/book_list.html" in result.stdout  # the templates were packaged
    assert "project: the bundled sample_site" in result.stdout

    # Capture's bootstrap is in the wheel and arms djtrace in the command's Python.
    script = (
        "import os, django; os.environ['DJANGO_SETTINGS_MODULE'] = 'djtrace.sample_site.settings';"
        " django.setup(); from django.test import Client;"
        " print(Client().get('/books/2/').status_code)"
    )
    store = tmp_path / "captured.sqlite3"
    _run(djtrace, "capture", "--store", store, "--", python, "-c", script, cwd=outside, env=env)
    exported = _run(djtrace, "export", "--store", store, cwd=outside, env=env)
    (trace,) = [json.loads(line) for line in exported.stdout.splitlines()]
    assert trace["request"]["path"] == "/books/2/" and trace["request"]["status"] == 200
