"""Django's own warnings, named where Django names them.

Django warns with `stacklevel=2`: "StreamingHttpResponse must consume asynchronous
iterators…" names the code that iterates the response. A hook between that code and
Django's method would be named instead (Django's own suite checks the file), so where a
hook calls a method that will warn, the warnings are caught and issued again one frame
further up: from the hook's caller, as without djtrace. Only those calls pay for it.
"""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable, Generator
from typing import Any


def _reissue(caught: list[warnings.WarningMessage], stacklevel: int) -> None:
    for warning in caught:
        warnings.warn(warning.message, warning.category, stacklevel=stacklevel + 1)


def call_as_caller(function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` from a hook, its warnings named at the hook's caller."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            return function(*args)
    finally:
        # Frames: this function, the hook, the hook's caller.
        _reissue(caught, 3)


class _Resume:
    """Awaits the rest of an awaitable whose first step was taken by hand."""

    __slots__ = ("step", "pending")

    def __init__(self, step: Any, pending: Any) -> None:
        self.step = step
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        step, pending = self.step, self.pending
        while True:
            try:
                sent = yield pending
            except BaseException as exc:  # a cancellation: passed on as it came
                try:
                    pending = step.throw(exc)
                except StopIteration as stop:
                    return stop.value
                continue
            try:
                pending = step.send(sent)
            except StopIteration as stop:
                return stop.value


async def first_anext_as_caller(chunks: AsyncIterator[Any]) -> Any:
    """`await chunks.__anext__()` for the first chunk, its first step's warnings named at
    the caller of the async generator that awaits this (Django warns before it suspends)."""
    step = chunks.__anext__()
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                pending = step.send(None)
            except StopIteration as stop:
                return stop.value
    finally:
        # Frames: this coroutine, the hook's async generator, whoever iterates that.
        _reissue(caught, 3)
    return await _Resume(step, pending)
