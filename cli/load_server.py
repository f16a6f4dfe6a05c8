"""The server `djtrace load … -- COMMAND` starts: bound to a loopback port, traced, stopped.

The command runs under capture's own machinery (`capture_env`: djtrace's bootstrap on its
PYTHONPATH, traces into the store), in a session of its own so that a terminal's Ctrl-C
reaches djtrace, which stops it in order, rather than the server mid-run.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from djtrace.cli.autotrace import ENV_ACTIVE
from djtrace.cli.capture_cmd import capture_env
from djtrace.cli.errors import CliError, command_not_found

STOP_PATIENCE_S = 20.0
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_loopback_url(url: str) -> tuple[str, str]:
    """(base URL, path with query) of `url`; anything but http on loopback is refused."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CliError(f"{url!r} is not an http:// URL or a path starting with /")
    if not is_loopback(parts.hostname):
        raise CliError(
            f"djtrace load only loads servers on this machine (127.0.0.1, ::1, localhost), "
            f"not {parts.hostname}: a load test against another host is not for this tool"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    base = f"{parts.scheme}://{host}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return base, path


def check_listening(base: str) -> None:
    """A one-line error when nothing listens at `base` (every request would be refused)."""
    parts = urlsplit(base)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=5):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CliError(
            f"nothing answers at {base} ({reason}): start the server under `djtrace capture`, "
            "or give its command after -- and djtrace starts it"
        ) from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _split_bind(value: str) -> tuple[str, int | None]:
    host, sep, port = value.rpartition(":")
    if not sep:
        return (value, None) if not value.isdigit() else ("127.0.0.1", int(value))
    return host or "127.0.0.1", int(port) if port.isdigit() else None


def _is(command: list[str], program: str) -> bool:
    first = Path(command[0]).name
    return first == program or (
        first.startswith("python") and "-m" in command and program in command
    )


def bind_command(command: list[str], port: int) -> tuple[list[str], int]:
    """The command bound to a loopback port, and the port it will listen on.

    `{port}` anywhere in the command is replaced; otherwise gunicorn's -b/--bind, uvicorn's
    --host/--port and runserver's address are read (if given) or added.
    """
    if any("{port}" in arg for arg in command):
        return [arg.replace("{port}", str(port)) for arg in command], port
    out = list(command)
    if _is(command, "gunicorn"):
        for i, arg in enumerate(out):
            value = None
            if arg in ("-b", "--bind") and i + 1 < len(out):
                value = out[i + 1]
            elif arg.startswith("--bind="):
                value = arg.split("=", 1)[1]
            if value is not None:
                host, given = _split_bind(value)
                return out, _checked(host, given, "gunicorn's bind")
        return [*out, "-b", f"127.0.0.1:{port}"], port
    if _is(command, "uvicorn"):
        host, given = "127.0.0.1", None
        for i, arg in enumerate(out):
            if arg == "--port" and i + 1 < len(out):
                given = _port(out[i + 1], "uvicorn's --port")
            elif arg.startswith("--port="):
                given = _port(arg.split("=", 1)[1], "uvicorn's --port")
            elif arg == "--host" and i + 1 < len(out):
                host = out[i + 1]
            elif arg.startswith("--host="):
                host = arg.split("=", 1)[1]
        if given is not None:
            return out, _checked(host, given, "uvicorn's --host/--port")
        if "--host" not in out and not any(a.startswith("--host=") for a in out):
            out += ["--host", "127.0.0.1"]
        return [*out, "--port", str(port)], port
    if "runserver" in command:
        at = command.index("runserver")
        rest = [a for a in command[at + 1 :] if not a.startswith("-")]
        if rest and (rest[0].isdigit() or ":" in rest[0]):
            host, given = _split_bind(rest[0])
            return out, _checked(host, given, "runserver's address")
        return [*out[: at + 1], f"127.0.0.1:{port}", *out[at + 1 :]], port
    if shutil.which(command[0]) is None:  # a typo is the likelier story than a new server
        raise command_not_found(command[0])
    raise CliError(
        "cannot tell where this server listens: put {port} in the command where its port "
        "goes (djtrace picks a free one), e.g. -- ./serve --port {port}"
    )


def _port(value: str, what: str) -> int:
    if not value.isdigit():
        raise CliError(f"{what} is {value!r}: give a port number, or leave it out for djtrace")
    return int(value)


def _checked(host: str, port: int | None, what: str) -> int:
    if port is None:
        raise CliError(f"{what} has no port: give one, or leave it out for djtrace to choose")
    if host not in ("0.0.0.0", "::", "[::]") and not is_loopback(host):
        raise CliError(f"{what} is {host}: djtrace load serves on loopback only (127.0.0.1)")
    return port


class Server:
    """A server command started under capture (or, `traced=False`, without); `stop()` ends
    its whole process group."""

    def __init__(
        self,
        command: list[str],
        store: Path,
        scratch: Path,
        extra_env: dict[str, str],
        traced: bool = True,
    ) -> None:
        self.command = command
        self.log = scratch / ("server.log" if traced else "server-untraced.log")
        self.ready = scratch / "traced-pids"
        if traced:
            env = capture_env(store, 0, self.ready)
        else:  # the same server as users run it, for tracing's own cost
            env = {k: v for k, v in os.environ.items() if k != ENV_ACTIVE}
        env.update(extra_env)
        try:
            with open(self.log, "wb") as log:
                self.process: subprocess.Popen[Any] = subprocess.Popen(
                    command,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        except FileNotFoundError:
            raise command_not_found(command[0]) from None
        except PermissionError:
            raise CliError(f"cannot run {command[0]}: permission denied", code=126) from None

    def output_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            text = self.log.read_text(errors="replace").rstrip().splitlines()
            return "\n".join(text[-lines:])
        return ""

    def wait_until_serving(self, url: str, patience_s: float) -> None:
        """Until `url` answers (any status), the server exits, or `patience_s` passes."""
        deadline = time.monotonic() + patience_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise CliError(
                    f"the server exited with {self.process.returncode} before it answered:\n"
                    + self.output_tail()
                )
            try:
                # Once connected, a slow page is waited for: refused connections retry.
                left = max(deadline - time.monotonic(), 0.1)
                with _no_proxy.open(url, timeout=left) as response:
                    response.read()
                return
            except urllib.error.HTTPError:
                return  # it answered
            except (OSError, ValueError):
                time.sleep(0.1)
        self.stop()
        raise CliError(
            f"the server did not answer {url} within {patience_s:g} s (--start-timeout):\n"
            + self.output_tail()
        )

    def traced_pids(self) -> list[int]:
        with contextlib.suppress(OSError):
            return [int(w) for w in self.ready.read_text().split() if w.isdigit()]
        return []

    def stop(self) -> int | None:
        """SIGTERM to the server's process group, SIGKILL if it lingers; its exit code."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_PATIENCE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        # Workers that outlived their master (none should) go too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode
