"""Stops the server of a `djtrace capture` that died (kill -9). Started by capture, not by hand.

    python -I -S watchdog.py SERVER_PID [--term]

Its stdin is a pipe whose write end only capture holds. A byte on it means capture is
done and the watchdog leaves. End of file without one means capture is gone: the watchdog
sends the server SIGTERM (with --term; on Linux the kernel already did, through
PR_SET_PDEATHSIG), waits up to GRACE_S for the server's process group to stop (a graceful
shutdown that drains its traces), then SIGKILLs whatever is left of the group.

Standard library only, and run by path with -I -S: it imports nothing of djtrace's.
"""

from __future__ import annotations

import os
import signal
import sys
import time

# Over gunicorn's default graceful timeout (30 s): a server that stops gracefully does so.
GRACE_S = 45.0
POLL_S = 0.1


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def main(argv: list[str]) -> int:
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # outlive what took capture down
    server = int(argv[0])
    if not capture_gone():
        return 0
    if not group_alive(server):
        return 0
    say(f"capture has gone: stopping the server it ran (pid {server})")
    if "--term" in argv[1:]:
        try:
            os.kill(server, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + GRACE_S
    while group_alive(server) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    if group_alive(server):
        say(f"the server (pid {server}) did not stop in {GRACE_S:.0f} s: killing its processes")
        try:
            os.killpg(server, signal.SIGKILL)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
