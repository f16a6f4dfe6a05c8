"""Stopping `djtrace capture`: nothing finished is lost, no server is left behind, Ctrl-C is quick.

Real servers (gunicorn gthread workers, uvicorn's spawned workers, runserver) serve
sample_site on 127.0.0.1 under capture while client threads keep sending uniquely tagged
requests. A stop signal lands in the middle of that load (sometimes while another
connection holds the store locked): every request whose response a client received must
be in the store. `kill -9` of capture must take the server down with it. Ctrl-C in a real
pseudo-terminal must stop a captured server about as fast as the same server alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import itertools
import os
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from djtrace.cli.capture_cmd import WATCHDOG

from tests.capture_support import (
    PATIENCE_S,
    Captured,
    capture,
    exported,
    free_port,
    gunicorn_args,
    uvicorn_args,
    wait_for_traces,
)
from tests.conftest import ROOT, run_djtrace

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

CLIENTS = 8
PAGES = ["/books/fast/", "/api/books/", "/books/", "/stream/"]


def runserver_args(port: int, reload: bool) -> list[str]:
    args = [sys.executable, "sample_site/manage.py", "runserver", f"127.0.0.1:{port}"]
    return args if reload else [*args, "--noreload"]


class Load:
    """Client threads sending tagged GETs over keep-alive connections until stopped or refused.

    `answered` holds the tag of every request whose full response a client read from the
    app: a worker stopped while it reads a request (or inside request_started) answers with
    the server's own 500, for a request Django did not see (or did not get to handle).
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.answered: set[str] = set()
        self._tags = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(PATIENCE_S)

    def wait_for(self, answered: int) -> None:
        deadline = time.monotonic() + PATIENCE_S
        while len(self.answered) < answered:
            assert time.monotonic() < deadline, f"only {len(self.answered)} requests answered"
            time.sleep(0.02)

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=PATIENCE_S)
        while not self._stop.is_set():
            with self._lock:
                n = next(self._tags)
            tag = f"tag={n}"
            try:
                conn.request("GET", f"{PAGES[n % len(PAGES)]}?{tag}")
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()  # the server is going away: a new connection, or refused
                if self._stop.wait(0.02):
                    return
                continue
            if response.status == 200:  # not the server's own 500 for a worker stopped mid-request
                with self._lock:
                    self.answered.add(tag)
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
        conn.close()


@contextmanager
def store_locked(store: Path, hold_s: float = 1.0) -> Iterator[None]:
    """Another connection holds the store's write lock for `hold_s` (from entering the block)."""
    wait_for_traces(store, 1)  # the store's tables exist
    conn = sqlite3.connect(store, timeout=PATIENCE_S, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(hold_s, lambda: conn.execute("COMMIT"))
    release.start()
    try:
        yield
    finally:
        release.join()
        conn.close()


def stored_tags(store: Path) -> set[str]:
    return {trace["request"]["query"] for trace in exported(store)}


def stop_mid_load(
    tmp: Path, server: list[str], port: int, sig: int, locked: bool, graceful: bool = True
) -> None:
    """Signal capture in the middle of a load; every answered request must be stored.

    `graceful`: the server finishes what it has in hand and stops answering before it
    exits, so the clients keep sending through the stop. runserver is not: it answers
    keep-alive connections until the process ends, so its clients stop before the signal.
    """
    with capture(tmp, server, port, "--quiet") as captured, Load(port) as load:
        load.wait_for(40)
        with store_locked(captured.store) if locked else contextlib.nullcontext():
            load.wait_for(len(load.answered) + 10)  # finished while the store is locked
            if not graceful:
                load.stop()
            code = captured.stop(sig)
    out = captured.stdout()
    assert code in (0, 128 + sig), out[-3000:] + captured.stderr()[-3000:]
    assert f"passing {signal.Signals(sig).name} to the server" in out
    missing = load.answered - stored_tags(captured.store)
    assert not missing, (
        f"{len(missing)} of {len(load.answered)} answered requests not stored: "
        f"{sorted(missing)[:10]}\n{captured.stderr()[-3000:]}"
    )
    assert "0 dropped" in out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("locked", [False, True], ids=["", "store-locked"])
def test_gunicorn_gthread_stopped_mid_load_stores_every_answered_request(tmp_path, sig, locked):
    port = free_port()
    stop_mid_load(tmp_path, gunicorn_args(port, workers=2, threads=4), port, sig, locked)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_gunicorn_sync_stopped_while_the_store_is_locked_stores_every_answered_request(
    tmp_path, sig
):
    port = free_port()
    stop_mid_load(tmp_path, gunicorn_args(port, workers=2, threads=1), port, sig, locked=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("locked", [False, True], ids=["", "store-locked"])
def test_uvicorn_workers_stopped_mid_load_store_every_answered_request(tmp_path, sig, locked):
    port = free_port()
    stop_mid_load(tmp_path, uvicorn_args(port, workers=2), port, sig, locked)


def test_single_uvicorn_stopped_by_sigterm_while_the_store_is_locked_loses_nothing(tmp_path):
    """uvicorn re-raises SIGTERM with the default action after its graceful shutdown."""
    port = free_port()
    stop_mid_load(tmp_path, uvicorn_args(port, workers=1), port, signal.SIGTERM, locked=True)


@pytest.mark.parametrize("reload", [False, True], ids=["noreload", "autoreload"])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_runserver_stopped_while_the_store_is_locked_stores_every_answered_request(
    tmp_path, sig, reload
):
    port = free_port()
    stop_mid_load(tmp_path, runserver_args(port, reload), port, sig, locked=True, graceful=False)


# --- kill -9 of capture ------------------------------------------------------------------------


def _server_pids(captured: Captured) -> list[int]:
    """The server's process group: its leader (capture's child) and the workers."""
    leader = int(captured.stdout().split("(pid ", 1)[1].split(")", 1)[0])
    out = subprocess.run(
        ["ps", "-o", "pid=", "-g", str(leader)], capture_output=True, text=True, check=False
    ).stdout
    return sorted({leader, *(int(word) for word in out.split())})


def _running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True  # no /proc: alive as far as kill can tell
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


@pytest.mark.parametrize("server", ["gunicorn", "uvicorn", "runserver"])
def test_kill_9_of_capture_leaves_no_server_behind(tmp_path, server):
    port = free_port()
    args = {
        "gunicorn": gunicorn_args(port, 2, 4),
        "uvicorn": uvicorn_args(port, 2),
        "runserver": runserver_args(port, reload=True),
    }[server]
    with capture(tmp_path, args, port, "--quiet") as captured, Load(port) as load:
        load.wait_for(20)
        pids = _server_pids(captured)
        assert len(pids) >= 2, pids  # the leader and its workers (runserver: its child)
        captured.process.kill()
        captured.process.wait(PATIENCE_S)
        deadline = time.monotonic() + PATIENCE_S
        while any(map(_running, pids)) or not _port_free(port):
            assert time.monotonic() < deadline, (
                f"still running after capture died: {[p for p in pids if _running(p)]}"
            )
            time.sleep(0.1)
    if server == "runserver":
        return  # it answered until it ended (see the runserver test above)
    # Stopped gracefully (SIGTERM), not killed: the answered requests were written.
    missing = load.answered - stored_tags(captured.store)
    assert not missing, f"{len(missing)} of {len(load.answered)} answered requests not stored"


# --- Ctrl-C in a terminal ----------------------------------------------------------------------


def _in_terminal(command: list[str]) -> tuple[subprocess.Popen[bytes], int, bytearray]:
    """`command` as the foreground job of a new pseudo-terminal; returns its master side."""
    master, slave = os.openpty()

    def take_terminal() -> None:  # runs in the child: its own session, the pty its terminal
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    process = subprocess.Popen(
        command, stdin=slave, stdout=slave, stderr=slave, preexec_fn=take_terminal, cwd=ROOT,
        env=env,
    )  # fmt: skip
    os.close(slave)
    output = bytearray()

    def read() -> None:  # keep the terminal drained so the server never blocks on output
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            output.extend(chunk)

    threading.Thread(target=read, daemon=True).start()
    return process, master, output


def _ctrl_c_seconds(command: list[str], port: int) -> tuple[float, str]:
    """Serve a short load, press Ctrl-C in the terminal; how long until the job ended."""
    process, master, output = _in_terminal(command)
    try:
        deadline = time.monotonic() + PATIENCE_S
        while _port_free(port):
            assert process.poll() is None, output.decode(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the server never listened"
            time.sleep(0.1)
        with Load(port) as load:
            load.wait_for(30)
            started = time.monotonic()
            os.write(master, b"\x03")  # the terminal sends SIGINT to its foreground group
            process.wait(PATIENCE_S)
            took = time.monotonic() - started
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        os.close(master)
    return took, output.decode(errors="replace")


@pytest.mark.parametrize("name", ["gunicorn-gthread", "uvicorn-workers"])
def test_ctrl_c_stops_a_captured_server_as_fast_as_the_server_alone(tmp_path, name):
    port = free_port()
    server = gunicorn_args(port, 2, 4) if name == "gunicorn-gthread" else uvicorn_args(port, 2)
    alone, alone_out = _ctrl_c_seconds(server, port)
    captured_cmd = [sys.executable, "-m", "djtrace.cli", "capture", "--quiet", "--store"]
    store = str(tmp_path / "s.sqlite3")
    traced, traced_out = _ctrl_c_seconds([*captured_cmd, store, "--", *server], port)
    # Only capture's run is held to a clean stop: gunicorn's gthread workers alone, told to
    # quit twice (by the terminal and by the master), now and then hang until the master
    # SIGKILLs them after its 30 s graceful timeout; under capture they are told once.
    assert "SIGKILL" not in traced_out, traced_out[-3000:]
    assert "passing SIGINT to the server" in traced_out
    assert "the server exited with 0." in traced_out
    assert traced <= 2 * alone + 2, f"capture {traced:.1f} s vs the server alone {alone:.1f} s"


# --- the watchdog (the non-Linux way; exercised here directly) ---------------------------------


def _watchdog(server: int, *options: str) -> tuple[subprocess.Popen[str], int]:
    """The watchdog capture starts, on a pipe this test holds the write end of."""
    read_end, write_end = os.pipe()
    dog = subprocess.Popen(
        [sys.executable, "-I", "-S", str(WATCHDOG), str(server), *options],
        stdin=read_end, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    os.close(read_end)
    return dog, write_end


def _sleeper(ignore_sigterm: bool = False) -> subprocess.Popen[str]:
    """A stand-in server in a session of its own; says "ready" once its handlers are set."""
    code = "import signal, time\n"
    if ignore_sigterm:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "print('ready', flush=True)\ntime.sleep(600)\n"
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert process.stdout is not None and process.stdout.readline() == "ready\n"
    return process


def test_watchdog_stops_the_server_when_capture_dies_and_removes_its_scratch(tmp_path):
    scratch = tmp_path / "djtrace-capture-x"
    scratch.mkdir()
    (scratch / "traced-pids").write_text("1\n")
    server = _sleeper()
    dog, pipe = _watchdog(server.pid, "--term", "--scratch", str(scratch))
    os.close(pipe)  # capture died: its end of the pipe closed, no goodbye
    assert server.wait(PATIENCE_S) == -signal.SIGTERM
    assert dog.wait(PATIENCE_S) == 0
    assert f"capture has gone: stopping the server it ran (pid {server.pid})" in dog.stderr.read()
    assert not scratch.exists()


def test_watchdog_kills_a_server_that_ignores_sigterm_after_the_grace_period():
    server = _sleeper(ignore_sigterm=True)
    dog, pipe = _watchdog(server.pid, "--term", "--grace", "1")
    os.close(pipe)
    assert server.wait(PATIENCE_S) == -signal.SIGKILL
    assert dog.wait(PATIENCE_S) == 0
    assert "did not stop in 1 s: its processes were killed" in dog.stderr.read()


def test_watchdog_leaves_the_server_alone_when_capture_says_goodbye():
    server = _sleeper()
    try:
        dog, pipe = _watchdog(server.pid, "--term", "--grace", "1")
        os.write(pipe, b"done")
        os.close(pipe)
        assert dog.wait(PATIENCE_S) == 0
        assert server.poll() is None
    finally:
        server.kill()
        server.wait()


def test_processes_left_running_by_the_command_are_stopped_when_it_exits(tmp_path):
    """A shell that does not pass SIGTERM on dies; the server it started must stop too."""
    pid_file = tmp_path / "server.pid"
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    server = shlex.join([sys.executable, "-c", code])
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "djtrace.cli", "capture", "--store", str(tmp_path / "s.sqlite3"),
         "--", "sh", "-c", f"{server} & wait"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + PATIENCE_S
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    server_pid = int(pid_file.read_text())
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=PATIENCE_S)
    assert "has exited but processes it started are still running: passing them SIGTERM" in out
    assert not _running(server_pid)


# --- the summary's memory ----------------------------------------------------------------------


def test_capture_summary_keeps_percentiles_in_bounded_memory(tmp_path):
    """A long capture must not keep every request's duration for its p50/p95."""
    import tracemalloc

    from djtrace.aggregate import percentile
    from djtrace.cli.capture_cmd import LiveView
    from djtrace.exporters.store import Summary, TraceStore
    from rich.console import Console

    def row(n: int) -> Summary:
        duration = 1_000_000 + (n * 7919) % 400_000_000  # 1 ms to 401 ms, scattered
        return Summary(
            n, f"id{n}", 0, duration, "GET", "/", None, None, 200, 1, 1, "t", None, None, None,
            None,
        )  # fmt: skip

    with TraceStore.open(tmp_path / "s.sqlite3", create=True) as store:
        view = LiveView(Console(file=open(os.devnull, "w")), store, None, True, 0.0)  # noqa: SIM115
        rows = [row(n) for n in range(50_000)]
        tracemalloc.start()
        for item in rows[:10_000]:
            view._request(item)
        after_ten_thousand = tracemalloc.get_traced_memory()[0]
        for item in rows[10_000:]:
            view._request(item)
        after_fifty_thousand = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        view.console.file.close()
    # 40,000 more requests: nothing like 40,000 kept ints (over a megabyte as a list).
    assert after_fifty_thousand - after_ten_thousand < 64 * 1024
    exact = sorted(r.duration for r in rows)
    for q in (50, 95):
        assert abs(view.percentile(q) - percentile(exact, q)) <= percentile(exact, q) / 1000
    counts = view.counts().plain
    assert counts.startswith("── 50000 requests · 2xx 50000 · p50 ")


def test_a_stop_signal_landing_inside_the_writers_queue_drains_once_out_of_it(tmp_path):
    """Draining takes the writer queue's lock: a SIGTERM handled while the main thread holds
    it (a server finishing requests on its main thread) must not deadlock, but drain and
    die once the main thread is out of it."""
    code = f"""
import os, queue, signal, sys, time
os.environ["DJTRACE_CAPTURE"] = "1"
from djtrace.cli import autotrace
autotrace.arm()
from djtrace.exporters.writer import StoreWriter
class Interrupted(queue.Queue):
    def _put(self, item):  # called by Queue.put with the queue's lock held
        if item == "now":
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, sys._getframe())
        super()._put(item)
writer = StoreWriter({str(tmp_path / "s.sqlite3")!r})
writer._queue = Interrupted(10)
writer._start()
writer._queue.put_nowait("now")
print("came back", flush=True)
time.sleep({PATIENCE_S})
print("never killed", flush=True)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=PATIENCE_S, cwd=ROOT
    )
    assert result.stdout == "came back\n", result.stderr[-3000:]
    assert result.returncode == -signal.SIGTERM  # then died by it, as without djtrace


# --- a response sent but never closed ----------------------------------------------------------

SEND_THEN_STOP = """
import os, sys
from wsgiref.util import setup_testing_defaults
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "djtrace.sample_site.settings")
from django.core.wsgi import get_wsgi_application

app = get_wsgi_application()
environ = {{"PATH_INFO": "/books/fast/", "QUERY_STRING": "tag=sent"}}
setup_testing_defaults(environ)
response = app(environ, lambda status, headers, exc_info=None: None)
sys.stdout.buffer.write(b"".join(response))  # the whole body, sent
{stop}
sys.exit(0)  # stopped before close(), as gunicorn's sync worker is by SIGINT
"""


@pytest.mark.parametrize(
    "stop",
    ["del response  # the server dropped it", "pass  # still held at exit"],
    ids=["dropped", "held-at-exit"],
)
def test_a_response_sent_but_never_closed_is_stored_and_says_so(tmp_path, stop):
    """A server stopped between sending a response and closing it: its client has the
    answer, so the trace is kept, ended where its body ended, with a finding that the close
    never ran."""
    store = tmp_path / "traces.sqlite3"
    script = tmp_path / "send_then_stop.py"
    script.write_text(SEND_THEN_STOP.format(stop=stop))
    result = run_djtrace(
        "capture", "--store", str(store), "--quiet", "--", sys.executable, str(script)
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "</html>" in result.stdout  # the whole page, sent
    (stored,) = exported(store)
    assert stored["request"]["query"] == "tag=sent" and stored["request"]["status"] == 200
    phases = [span["phase"] for span in stored["spans"]]
    assert "view" in phases and "response.stream" in phases and "response.close" not in phases
    body = next(span for span in stored["spans"] if span["phase"] == "response.stream")
    assert stored["duration"] == body["start"] + body["duration"] - stored["spans"][0]["start"]
    shown = run_djtrace("show", "latest", "--store", str(store))
    assert "the response was never closed (its server stopped)" in shown.stdout, shown.stdout
