"""Opening the trace store for the browsing commands, and the options they share.

Store problems become one-line errors (CliError). A damaged store is not a dead end:
its readable traces are salvaged into memory, with a warning saying how many were lost.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NamedTuple, TypeVar

import typer
from djtrace.cli.errors import CliError
from djtrace.cli.render import plural
from djtrace.exporters import jsonl
from djtrace.exporters.store import (
    Filters,
    StoreDamaged,
    StoreError,
    StoreMissing,
    Summary,
    TraceNotFound,
    TraceStore,
    TraceUnreadable,
    default_path,
    expanded,
)
from djtrace.model import Trace
from rich.console import Console

T = TypeVar("T")

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store",
        help="Trace store file (default: $DJTRACE_STORE, else .djtrace/traces.sqlite3).",
        show_default=False,
    ),
]
PathFilter = Annotated[
    str | None,
    typer.Option("--path", help="Glob on the path or the route, e.g. '/books/*'."),
]
StatusFilter = Annotated[
    str | None, typer.Option("--status", help="Status: 200, 5xx, or a range 400-499.")
]
MethodFilter = Annotated[str | None, typer.Option("--method", help="HTTP method, e.g. POST.")]
SlowerFilter = Annotated[
    float | None,
    typer.Option("--slower-than", metavar="MS", min=0, help="Only requests slower than MS."),
]
SinceFilter = Annotated[
    str | None,
    typer.Option("--since", help="Only requests since: 30s, 10m, 2h, 1d, or an ISO date/time."),
]
PidFilter = Annotated[int | None, typer.Option("--pid", help="Only requests served by this pid.")]

_stderr = Console(stderr=True, highlight=False, soft_wrap=True)


def warn(message: str) -> None:
    _stderr.print(f"[yellow]warning:[/] {message}")


def store_path(option: Path | None) -> Path:
    return expanded(option or default_path())


def open_store(path: Path) -> TraceStore:
    """The store for reading, checked first; a damaged one is salvaged (with a warning)."""
    try:
        return TraceStore.open(path, check=True)
    except StoreMissing:
        raise CliError(
            f"no trace store at {path}: record some traffic first "
            "(`djtrace capture -- python manage.py runserver`), or pass --store"
        ) from None
    except StoreDamaged as exc:
        return _salvage(path, exc)
    except StoreError as exc:
        raise CliError(str(exc)) from None


_warned: set[Path] = set()


def _salvage(path: Path, exc: StoreDamaged) -> TraceStore:
    try:
        store = TraceStore.salvage(path)
    except StoreDamaged:
        raise CliError(f"{exc}; no trace could be read from it", code=1) from None
    except (StoreError, OSError) as again:
        raise CliError(f"{exc}; nothing could be salvaged ({again})", code=1) from None
    kept = store.count()
    if not kept:
        store.close()
        raise CliError(
            f"{exc}; no trace could be read from it"
            + (f" ({plural(store.lost, 'trace')} lost)" if store.lost else ""),
            code=1,
        )
    if path in _warned:  # `diff A B` reads the store twice: one warning
        return store
    _warned.add(path)
    warn(
        f"{exc}; {plural(kept, 'trace')} could still be read"
        + (f" ({store.lost} could not)" if store.lost else "")
        + f", and `djtrace export --store {path} > saved.jsonl` saves them"
    )
    return store


def with_store(path: Path, action: Callable[[TraceStore], T]) -> tuple[T, TraceStore]:
    """Run `action` on the store; if the store turns out damaged midway, on its salvage.

    The caller checks `store.lost` afterwards: not None means the store was damaged, and
    the command exits 1 once it has shown what could be read (see `finish`).
    """
    store = open_store(path)
    try:
        return action(store), store
    except StoreDamaged as exc:
        if store.lost is not None:
            raise CliError(str(exc), code=1) from None
        store.close()
        store = _salvage(path, exc)
        try:
            return action(store), store
        except StoreError as again:
            raise CliError(str(again), code=1) from None
    except (TraceNotFound, TraceUnreadable) as exc:
        store.close()
        raise CliError(str(exc), code=1) from None
    except StoreError as exc:
        store.close()
        raise CliError(str(exc)) from None


def finish(damaged: bool) -> None:
    """The last step of a command that read a store: exit 1 if the store was damaged (what
    could be read was shown, and the warning said what was lost)."""
    if damaged:
        raise typer.Exit(1)


_SINCE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_NS_MAX = 2**63 - 1  # the store's integers: every bound past them means the same


def parse_since(value: str, now: dt.datetime | None = None) -> int:
    """'10m' (ago) or an ISO date/time (local time unless it says otherwise) → epoch ns,
    within 0 and 2**63-1: a start before the epoch is the epoch, none is later than that."""
    now = now or dt.datetime.now().astimezone()
    match = _SINCE.match(value.strip().lower())
    if match:
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
        return _clamp_ns((now.timestamp() - seconds) * 1e9)  # 1e400s is inf: the epoch
    try:
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise CliError(
            f"--since {_shown(value)}: use a duration like 30s, 10m, 2h, 1d, or an ISO date/time"
        ) from None
    if when.tzinfo is None:  # a naive time is the user's local time
        try:
            when = when.astimezone()
        except (OverflowError, OSError, ValueError):  # year 1 or 9999: today's offset will do
            when = when.replace(tzinfo=now.tzinfo)
    try:
        since = when - _EPOCH
    except OverflowError:
        return 0 if when.year < 1970 else _NS_MAX
    return _clamp_ns(since // dt.timedelta(microseconds=1) * 1000)


def _clamp_ns(ns: float) -> int:
    if ns != ns:  # nan
        return 0
    return int(min(max(ns, 0), _NS_MAX))


def _shown(value: str) -> str:
    """A user's value, quoted, cut short enough for a one-line error."""
    return repr(value if len(value) <= 60 else value[:57] + "…")


_STATUS = re.compile(r"^([1-5])xx$")


def parse_status(value: str) -> tuple[int, int]:
    text = value.strip().lower()
    match = _STATUS.match(text)
    if match:
        first = int(match.group(1)) * 100
        return first, first + 99
    low, sep, high = text.partition("-")
    try:
        first, last = (int(low), int(high)) if sep else (int(text), int(text))
    except ValueError:
        raise CliError(
            f"--status {_shown(value)}: use a code (404), a class (5xx) or a range (400-499)"
        ) from None
    if not (100 <= first <= 599 and 100 <= last <= 599):
        raise CliError(f"--status {_shown(value)}: HTTP status codes run from 100 to 599")
    if first > last:
        raise CliError(f"--status {_shown(value)}: a range goes from low to high, e.g. 400-499")
    return first, last


def parse_slower_than(ms: float) -> int:
    """--slower-than in ns; a bound past the store's integers matches nothing, as it says."""
    if ms != ms or ms < 0:
        raise CliError(f"--slower-than {ms}: give a duration in ms, 0 or more")
    return int(min(ms * 1e6, _NS_MAX))


def check_ms(ms: float, option: str = "--hide-under") -> float:
    """A duration option in ms, made finite: past any span's length it means "none"."""
    if ms != ms:
        raise CliError(f"{option} nan: give a duration in ms, 0 or more")
    return min(ms, 1e12)


def check_pid(pid: int) -> int:
    if not 1 <= pid <= _NS_MAX:
        raise CliError(f"--pid {_shown(str(pid))}: a process id is a whole number from 1")
    return pid


def make_filters(
    path: str | None = None,
    status: str | None = None,
    method: str | None = None,
    slower_than: float | None = None,
    since: str | None = None,
    pid: int | None = None,
) -> Filters:
    return Filters(
        path=path,
        status=parse_status(status) if status else None,
        method=method,
        slower_than=parse_slower_than(slower_than) if slower_than is not None else None,
        since=parse_since(since) if since else None,
        pid=check_pid(pid) if pid is not None else None,
    )


class Loaded(NamedTuple):
    trace: Trace
    summary: Summary | None  # its store row (where it ran: settings, cwd), None from a file
    damaged: bool  # it came from a damaged store (the command should exit 1 at the end)


def load_trace(ref: str, store: Path | None, filters: Filters | None = None) -> Loaded:
    """A trace from a JSON/JSONL file, or from the store: an id, a prefix, latest, slowest."""
    if not ref.strip():
        raise CliError("give a trace: an id (or a prefix), latest, slowest, or a file")
    file = expanded(ref)
    if ref not in ("latest", "slowest"):
        try:
            is_dir, is_file = file.is_dir(), file.is_file()
        except (OSError, ValueError):  # a name too long for a file (or with a NUL) is an id
            is_dir = is_file = False
        if is_dir:
            raise CliError(f"{ref} is a directory, not a trace file or a trace id")
        if is_file or ref.endswith((".json", ".jsonl")):
            return Loaded(trace_from_file(file), None, False)
        if not is_trace_ref(ref):
            raise CliError(
                f"{_shown(ref)} is neither a file nor a trace id "
                "(ids are hex, e.g. from `djtrace list`; or use latest, slowest)"
            )
        if len(ref.strip()) > MAX_ID_CHARS:
            raise CliError(f"{_shown(ref)} is not a trace id (ids have at most 32 hex digits)")
    path = store_path(store)

    def find(s: TraceStore) -> tuple[Trace, Summary | None]:
        if ref in ("latest", "slowest"):
            found = s.first(filters, "time" if ref == "latest" else "duration")
            if found is None:
                raise CliError(f"no traces in {path}" + (" match" if filters else ""), code=1)
        else:
            found = s.get(ref)
        return found, s.summary(found.id)

    (trace, summary), opened = with_store(path, find)
    damaged = opened.lost is not None
    opened.close()
    return Loaded(trace, summary, damaged)


MAX_ID_CHARS = 32  # a trace id is at most 128 bits of hex (what OTLP's trace id holds)


def is_trace_ref(ref: str) -> bool:
    text = ref.strip().lower()
    return bool(text) and all(c in "0123456789abcdef" for c in text)


def trace_from_file(file: Path) -> Trace:
    """One trace from a file: a trace document (`--format json`), or JSON Lines / a JSON
    array holding exactly one good trace."""
    try:
        raw = file.read_bytes()
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{file} is not a djtrace trace file (binary data, not JSON)") from None
    reader = jsonl.TraceReader(io.StringIO(text))
    items = list(reader)
    good = [item for _, item in items if isinstance(item, Trace)]
    if len(good) == 1:
        return good[0]
    if good:
        raise CliError(f"{file} holds {len(good)} traces; import it and pick one by id")
    if not items:
        raise CliError(f"{file} is empty")
    bad = [item for _, item in items if isinstance(item, jsonl.Bad)]
    if reader.unit == "line" and not any(b.json_object for b in bad) and len(bad) > 1:
        raise CliError(f"{file} is not a djtrace trace file (not JSON)")
    number, first = items[0]
    where = "" if reader.unit == "document" else f" ({reader.unit} {number})"
    raise CliError(f"{file}{where}: {first}")
