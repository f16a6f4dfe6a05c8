"""Finding the user's Django project (or the bundled sample_site) and getting it ready to trace.

The project is found the way a Django developer would run it: `--settings`, else
DJANGO_SETTINGS_MODULE, else the `manage.py` in this folder or the nearest one above it
(read, never run), else the bundled sample_site.
"""

from __future__ import annotations

import ast
import os
import sys
from dataclasses import dataclass, replace
from importlib import import_module
from pathlib import Path
from typing import NamedTuple

from djtrace.cli.errors import CliError, describe

SAMPLE_SETTINGS = "djtrace.sample_site.settings"
SETTINGS_VARIABLE = "DJANGO_SETTINGS_MODULE"
#: How far up from the current folder a manage.py is looked for (git stops at the file
#: system's root; djtrace also stops at a repository's root and at the home folder).
MAX_LEVELS = 12
#: Set by `python manage.py djtrace …`: that manage.py, which has set the project up.
launched_by: Path | None = None


@dataclass(frozen=True)
class Project:
    """Which settings run, where they came from, and the folder put first on sys.path."""

    settings: str
    source: str  # "--settings", "DJANGO_SETTINGS_MODULE", "manage.py" or "sample_site"
    root: Path | None = None  # manage.py's folder, or --pythonpath
    note: str = ""  # why no project was found, when it is worth saying

    @property
    def found(self) -> bool:
        """djtrace chose it (a manage.py, or the sample_site), rather than the user saying so."""
        return self.source in ("manage.py", "sample_site")

    def describe(self) -> str:
        """The dim line saying which project ran."""
        if self.source == "sample_site":
            return (
                "project: the bundled sample_site ("
                + (self.note or "no manage.py here or above; --settings or cd to your project")
                + ")"
            )
        where = f" in {self.root}" if self.root else ""
        return f"project: {self.settings}{where} (from {self.source})"


def settings_in_manage_py(path: Path) -> str | None:
    """The settings module a manage.py sets, read without running it: the string literal in
    `os.environ.setdefault("DJANGO_SETTINGS_MODULE", "…")` or `os.environ[…] = "…"`."""
    try:
        tree = ast.parse(path.read_bytes(), str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and len(node.args) == 2:
            func = node.func
            key, value = node.args
            if isinstance(func, ast.Attribute) and func.attr == "setdefault":
                found = _literal_pair(key, value)
                if found:
                    return found
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Subscript):
                found = _literal_pair(target.slice, node.value)
                if found:
                    return found
    return None


def _literal_pair(key: ast.AST, value: ast.AST) -> str | None:
    if (
        isinstance(key, ast.Constant)
        and key.value == SETTINGS_VARIABLE
        and isinstance(value, ast.Constant)
        and isinstance(value.value, str)
        and value.value
    ):
        return value.value
    return None


class Search(NamedTuple):
    manage_py: Path | None  # the nearest manage.py that names its settings
    settings: str | None  # the settings module it names
    skipped: Path | None  # the first manage.py passed over because it does not (to say so)


def find_manage_py(start: Path) -> Search:
    """Look for a project's manage.py in `start` and the folders above it."""
    home = Path.home().resolve()
    skipped: Path | None = None
    folder = start.resolve()
    for _ in range(MAX_LEVELS):
        candidate = folder / "manage.py"
        if candidate.is_file():
            settings = settings_in_manage_py(candidate)
            if settings:
                return Search(candidate, settings, skipped)
            skipped = skipped or candidate
        if folder == home or folder.parent == folder or (folder / ".git").exists():
            break
        folder = folder.parent
    return Search(None, None, skipped)


def find_project(
    settings: str | None = None, pythonpath: str | None = None, cwd: Path | None = None
) -> Project:
    """Which project to run, without importing it."""
    root: Path | None = None
    if pythonpath:
        root = Path(pythonpath).expanduser().resolve()
        if not root.is_dir():
            raise CliError(f"--pythonpath {pythonpath!r} is not a directory")
    if settings:
        return Project(settings, "--settings", root)
    if os.environ.get(SETTINGS_VARIABLE):
        if launched_by is not None:
            return Project(os.environ[SETTINGS_VARIABLE], "manage.py", launched_by.parent)
        return Project(os.environ[SETTINGS_VARIABLE], SETTINGS_VARIABLE, root)
    search = find_manage_py(root or cwd or Path.cwd())
    if search.manage_py is not None and search.settings is not None:
        return Project(search.settings, "manage.py", root or search.manage_py.parent)
    note = ""
    if search.skipped is not None:
        note = (
            f"{search.skipped} does not set {SETTINGS_VARIABLE} to a plain string; "
            "pass --settings for your project"
        )
    return Project(SAMPLE_SETTINGS, "sample_site", root, note)


def setup_project(settings: str | None = None, pythonpath: str | None = None) -> Project:
    """Configure Django like manage.py would and install djtrace's hooks.

    The bundled sample_site's database is created and seeded on first use in the user's
    data directory.
    """
    project = find_project(settings, pythonpath)
    # As `python manage.py` sees the project: its folder first on the path.
    first = str(project.root) if project.root else os.getcwd()
    if first not in sys.path:
        sys.path.insert(0, first)
    module = project.settings
    try:
        try:
            import_module(module)
        except ModuleNotFoundError as exc:
            project = _beside_manage_py(project, exc)
    except ModuleNotFoundError as exc:
        hint = "" if pythonpath else " (is the project on the path? try --pythonpath)"
        raise CliError(f"cannot import settings module {module!r}: {exc}{hint}") from None
    except Exception as exc:
        raise CliError(
            f"settings module {module!r} failed to load: {type(exc).__name__}: {exc}"
        ) from None
    os.environ[SETTINGS_VARIABLE] = module

    import django
    from django.apps import apps
    from django.core.exceptions import ImproperlyConfigured

    if not apps.ready:  # under `python manage.py djtrace …` Django is set up already
        try:
            django.setup()
        except (ImproperlyConfigured, ImportError, LookupError, RuntimeError) as exc:
            raise CliError(
                f"Django setup failed for {module!r}: {type(exc).__name__}: {exc}"
            ) from None

    from djtrace import install

    install()
    if module == SAMPLE_SETTINGS:
        from djtrace.sample_site.seed import ensure_database

        try:
            ensure_database()
        except Exception as exc:  # e.g. DJTRACE_SAMPLE_DB=postgres with no server running
            raise CliError(f"sample_site's database is not usable: {describe(exc)}") from None
    return project


def _beside_manage_py(project: Project, exc: ModuleNotFoundError) -> Project:
    """--settings or DJANGO_SETTINGS_MODULE named in a subfolder of the project: the
    settings are imported from the nearest manage.py's folder, as `python ../manage.py`
    would; `exc` again when they are not there either."""
    top = project.settings.split(".")[0]
    if project.root is not None or (exc.name or "").split(".")[0] != top:
        raise exc
    search = find_manage_py(Path.cwd())
    manage_py = search.manage_py or search.skipped
    if manage_py is None:
        raise exc
    folder = str(manage_py.parent)
    sys.path.insert(0, folder)
    try:
        import_module(project.settings)
    except ModuleNotFoundError:
        sys.path.remove(folder)
        raise exc from None
    return replace(project, root=manage_py.parent)


def setup_django(settings: str | None = None, pythonpath: str | None = None) -> str:
    """`setup_project`, for callers that only need the settings module's name."""
    return setup_project(settings, pythonpath).settings
