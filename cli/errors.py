"""One way for a command to fail: a one-line message on stderr and a non-zero exit."""

from __future__ import annotations


class CliError(Exception):
    """Bad input or an unusable project: shown as `error: <message>`, exit `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code
