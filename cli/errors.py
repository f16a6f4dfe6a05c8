"""One way for a command to fail: a one-line message on stderr and a non-zero exit."""

from __future__ import annotations

import os
import sys
from pathlib import Path


class CliError(Exception):
    """Bad input or an unusable project: shown as `error: <message>`, exit `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def describe(exc: BaseException) -> str:
    """`Type: first line of the message`, for an error from the user's project."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


def command_not_found(program: str) -> CliError:
    """`command not found`, saying where it is when djtrace's own virtualenv has it (a
    server command run from a virtualenv that is not activated)."""
    beside = Path(sys.executable).parent / program
    if os.sep not in program and os.access(beside, os.X_OK):
        return CliError(
            f"command not found: {program} (it is in {beside.parent}: activate that "
            f"virtualenv, or give the path {beside})",
            code=127,
        )
    return CliError(f"command not found: {program}", code=127)


def check_writable(target: Path, option: str) -> None:
    """Fail now, not after a long run, when `target` cannot be written later (its folder is
    made now if it is missing, as the trace store's is)."""
    parent = target.absolute().parent
    if target.is_dir():
        raise CliError(f"{option} {target}: is a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CliError(f"{option} {target}: cannot make {parent}: {exc.strerror or exc}") from None
    if not os.access(target if target.exists() else parent, os.W_OK):
        raise CliError(f"{option} {target}: permission denied")
