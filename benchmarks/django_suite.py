"""Django's own test suite for the areas djtrace hooks, run without djtrace and then with it
installed and recording every request; the two runs must agree test by test.

    python benchmarks/django_suite.py                       # the default modules (below)
    python benchmarks/django_suite.py --modules handlers asgi
    python benchmarks/django_suite.py --source ~/src/django  # a checkout instead of a download

Django's tests are the installed Django's own: its source release is fetched once with
`pip download --no-binary :all: --no-deps django==<installed version>` into --workdir and
its tests/runtests.py run with this interpreter. "With djtrace" is a sitecustomize put on
PYTHONPATH that, right after `django.setup()`, calls `djtrace.install()` and turns on
`record_all`, as `djtrace capture` does: every request any test makes is traced, its
response's trace finished on close. Too slow for the suite (minutes): run it by hand.
Exit status 1 when any test's outcome differs; each run's output is kept in --workdir.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import django

MODULES = (
    "handlers",
    "middleware",
    "middleware_exceptions",
    "urlpatterns",
    "urlpatterns_reverse",
    "template_tests",
    "template_backends",
    "cache",
    "sessions_tests",
    "transactions",
    "transaction_hooks",
    "signals",
    "dispatch",
    "asgi",
    "test_client",
    "test_client_regress",
)

SITECUSTOMIZE = '''\
"""Installs djtrace right after django.setup() and records every request (DJTRACE_SUITE=1)."""
import os

if os.environ.get("DJTRACE_SUITE") == "1":
    import atexit
    import sys

    import django

    _setup = django.setup
    _finished = []

    def setup(*args, **kwargs):
        _setup(*args, **kwargs)
        from djtrace import install
        from djtrace.recorder import add_sink, config

        install()
        config.record_all = True
        add_sink(lambda trace: _finished.append(1))

    django.setup = setup
    atexit.register(
        lambda: sys.stderr.write(f"djtrace: installed; {len(_finished)} request traces finished\\n")
    )
'''

# "test_name (module.Class.test_name) ... ok", possibly with the docstring's first line.
_RESULT = re.compile(
    r"^(\w+) \(([\w.]+)\)(?:\n.*?)?\s\.\.\.\s(ok|FAIL|ERROR|skipped.*|expected failure|"
    r"unexpected success)\s*$",
    re.MULTILINE,
)
_RAN = re.compile(r"^Ran (\d+) tests? in ([\d.]+)s", re.MULTILINE)


def django_source(workdir: Path) -> Path:
    """The tests/ folder of the installed Django's source release, fetched once."""
    version = django.__version__
    tests = workdir / f"django-{version}" / "tests"
    if (tests / "runtests.py").exists():
        return tests
    workdir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-binary", ":all:", "--no-deps"]
        + [f"django=={version}", "-d", str(workdir)],
        check=True,
    )
    (archive,) = workdir.glob(f"[dD]jango-{version}.tar.gz")
    with tarfile.open(archive) as tar:
        tar.extractall(workdir, filter="data")
    return tests


def run(tests: Path, modules: list[str], site: Path, traced: bool) -> tuple[dict[str, str], str]:
    env = {"PYTHONPATH": str(site), "DJTRACE_SUITE": "1" if traced else "0"}
    done = subprocess.run(
        [sys.executable, "runtests.py", "--parallel=1", "-v", "2", *modules],
        cwd=tests,
        capture_output=True,
        text=True,
        env={**_base_env(), **env},
    )
    output = done.stdout + done.stderr
    outcomes = {
        f"{where}.{name}" if not where.endswith(name) else where: result
        for name, where, result in _RESULT.findall(output)
    }
    return outcomes, output


def _base_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJTRACE_SUITE")}


def _kind(result: str) -> str:
    return "skipped" if result.startswith("skipped") else result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", nargs="+", default=list(MODULES))
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/djtrace-django-suite"))
    parser.add_argument("--source", type=Path, help="a Django checkout's tests/ folder")
    args = parser.parse_args(argv)
    tests = args.source or django_source(args.workdir)
    site = args.workdir / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    results = {}
    for traced in (False, True):
        start = time.perf_counter()
        outcomes, output = run(tests, args.modules, site, traced)
        (args.workdir / f"output-{'with' if traced else 'without'}-djtrace.txt").write_text(output)
        ran = _RAN.search(output)
        label = "with djtrace recording" if traced else "without djtrace"
        counts: dict[str, int] = {}
        for result in outcomes.values():
            counts[_kind(result)] = counts.get(_kind(result), 0) + 1
        summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        print(
            f"{label}: ran {ran.group(1) if ran else '?'} tests ({summary}) "
            f"in {time.perf_counter() - start:.0f} s"
        )
        for line in output.splitlines():
            if line.startswith("djtrace: "):
                print(f"  {line}")
        results[traced] = outcomes
    off, on = results[False], results[True]
    differ = sorted(n for n in off.keys() | on.keys() if off.get(n) != on.get(n))
    print(
        f"Django {django.__version__}, Python {sys.version.split()[0]}; modules: "
        f"{' '.join(args.modules)}"
    )
    failing = sorted(n for n, r in off.items() if r in ("FAIL", "ERROR"))
    if failing:
        print(f"failing without djtrace too (this machine's setup): {', '.join(failing)}")
    if not differ:
        print(f"identical: all {len(off)} test results are the same with and without djtrace")
        return 0
    print(f"{len(differ)} tests differ:")
    for name in differ:
        print(f"  {name}: without {off.get(name, 'not run')}, with {on.get(name, 'not run')}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
