"""One way for a command to fail: a one-line message on stderr and a non-zero exit."""

from __future__ import annotations


class CliError(Exception):
    """Bad input or an unusable project: shown as `error: <message>`, exit `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def describe(exc: BaseException) -> str:
    """`Type: first line of the message`, for an error from the user's project."""
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__
