"""Running a real server under `djtrace capture` on 127.0.0.1, for the capture/replay tests."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import ROOT, run_djtrace

#: A hang guard for server start and stop, not a performance limit.
PATIENCE_S = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gunicorn_args(port: int, workers: int, threads: int) -> list[str]:
    import gunicorn.config

    args = [
        sys.executable,
        "-m",
        "gunicorn",
        "djtrace.sample_site.wsgi",
        "-w",
        str(workers),
        "--threads",
        str(threads),
        "-b",
        f"127.0.0.1:{port}",
        "--chdir",
        str(ROOT),
    ]
    if any(s.name == "control_socket_disable" for s in gunicorn.config.KNOWN_SETTINGS):
        args.append("--no-control-socket")  # gunicorn 24+: one shared socket path per user
    return args


def uvicorn_args(port: int, workers: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "djtrace.sample_site.asgi:application",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
    ]


@dataclass
class Captured:
    process: subprocess.Popen[bytes]
    store: Path
    port: int
    out: Path
    err: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(PATIENCE_S)
        except subprocess.TimeoutExpired:
            server = re.search(r"\(pid (\d+)\)", self.stdout())  # from capture's first line
            for group in (self.process.pid, int(server.group(1)) if server else None):
                if group is not None:
                    with contextlib.suppress(OSError):
                        os.killpg(group, signal.SIGKILL)
            raise AssertionError(
                f"capture did not stop on {sig}\n{self.stdout()[-3000:]}\n{self.stderr()[-3000:]}"
            ) from None


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a script's `cmd &` starts it


@contextmanager
def capture(
    tmp: Path, server: list[str], port: int, *options: str, sigint_ignored: bool = False
) -> Iterator[Captured]:
    """`djtrace capture [options] -- server…` running until the block ends (then SIGTERM).

    `sigint_ignored`: capture starts with SIGINT ignored, like a background job of a script.
    """
    store = tmp / "traces.sqlite3"
    out, err = tmp / "capture.out", tmp / "capture.err"
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "djtrace.cli",
                "capture",
                "--store",
                str(store),
                *options,
                "--",
                *server,
            ],
            cwd=ROOT,
            env=env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # so a failed test can clean up the whole tree
            preexec_fn=_ignore_sigint if sigint_ignored else None,
        )
    captured = Captured(process, store, port, out, err)
    try:
        wait_until_serving(captured)
        yield captured
    finally:
        if process.poll() is None:
            captured.stop()


def wait_until_serving(captured: Captured) -> None:
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        if captured.process.poll() is not None:
            raise AssertionError(f"capture exited early:\n{captured.stderr()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", captured.port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"server never listened:\n{captured.stderr()[-3000:]}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_no_redirect = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def fetch(
    url: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with _no_redirect.open(request, timeout=PATIENCE_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def exported(store: Path) -> list[dict[str, Any]]:
    """Every trace in the store, through the real `djtrace export`."""
    result = run_djtrace("export", "--store", str(store))
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def wait_for_traces(store: Path, count: int) -> None:
    """Until the store holds `count` traces (the writers flush within moments)."""
    from djtrace.exporters.store import StoreError, TraceStore

    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        try:
            with TraceStore.open(store) as opened:
                if opened.count() >= count:
                    return
        except StoreError:
            pass
        time.sleep(0.05)
    raise AssertionError(f"the store never held {count} traces")
