"""Every module djtrace imports is one of its declared dependencies.

typer 0.29+ carries its own copy of click and no longer installs `click`: a `djtrace` whose
code imports `click` itself dies on its first line in a fresh virtualenv (found by a new
user: `pip install -e . && djtrace request /books/` → ModuleNotFoundError: click).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

# A Python in which `import click` fails, as in a venv where nothing installed click.
_NO_CLICK = "import sys; sys.modules['click'] = None\n"


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _NO_CLICK + code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_the_command_runs_where_click_is_not_installed():
    typer_alone = _python("import typer.main")
    if typer_alone.returncode != 0:
        pytest.skip("this typer needs click itself (before 0.29), so click is always there")
    result = _python(
        "import sys\n"
        "from djtrace.cli.app import main\n"
        "sys.argv = ['djtrace', 'load', '--help']\n"
        "main()\n"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "djtrace load analyze" in result.stdout
