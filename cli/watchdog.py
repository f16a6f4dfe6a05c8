"""Stops the server of a `djtrace capture` that died (kill -9). Started by capture, not by hand.

    python -I -S watchdog.py SERVER_PID [--term] [--grace SECONDS] [--scratch DIR]

Its stdin is a pipe whose write end only capture holds. A byte on it means capture is
done and the watchdog leaves. End of file without one means capture is gone: the watchdog
sends the server SIGTERM (with --term; on Linux the kernel already did, through
PR_SET_PDEATHSIG), waits up to GRACE_S (--grace) for the server's process group to stop (a
graceful shutdown that drains its traces), then SIGKILLs whatever is left of the group,
and removes capture's scratch directory (--scratch), which capture can no longer do.

Standard library only, and run by path with -I -S: it imports nothing of djtrace's.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time

# Over gunicorn's default graceful timeout (30 s): a server that stops gracefully does so.
GRACE_S = 45.0
POLL_S = 0.1


def group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs (a zombie, not yet reaped, does not)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _runs_in_group(pgid) if os.path.isdir("/proc/self") else True


def _runs_in_group(pgid: int) -> bool:
    """From /proc: a member of the group that is not a zombie. An orphan's zombie waits
    for whatever reaps orphans here (a container's PID 1 may be slow to)."""
    try:
        names = os.listdir("/proc")
    except OSError:
        return True
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()  # state, ppid, pgrp, …
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def capture_gone() -> bool:
    """Block until capture says goodbye (False) or its end of the pipe closes (True)."""
    while True:
        try:
            return not os.read(0, 64)
        except InterruptedError:
            continue
        except OSError:
            return True


def say(message: str) -> None:
    try:
        print(f"djtrace: {message}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass  # capture's terminal has gone with it


def group_ends(pgid: int, within: float) -> bool:
    """Wait up to `within` seconds for the process group to be gone; True if it is."""
    deadline = time.monotonic() + within
    while group_alive(pgid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def stop_group(pgid: int, grace: float, term: bool) -> bool:
    """SIGTERM to the group's leader (`term`), then SIGKILL to the group after `grace` s.

    True if the group had to be killed.
    """
    if term:
        try:
            os.kill(pgid, signal.SIGTERM)
        except OSError:
            pass
    if group_ends(pgid, grace):
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
    except OSError:
        pass
    return True


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # outlive what took capture down
    server = int(argv[0])
    grace = float(argv[argv.index("--grace") + 1]) if "--grace" in argv else GRACE_S
    scratch = argv[argv.index("--scratch") + 1] if "--scratch" in argv else None
    if not capture_gone():
        return 0
    if group_alive(server):
        say(f"capture has gone: stopping the server it ran (pid {server})")
        if stop_group(server, grace, term="--term" in argv[1:]):
            say(f"the server (pid {server}) did not stop in {grace:g} s: its processes were killed")
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
