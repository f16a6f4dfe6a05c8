"""What `djtrace capture` does inside every Python process of the command it runs.

`cli/bootstrap/sitecustomize.py` (put first on PYTHONPATH by capture, so every Python the
command starts runs it: gunicorn's master, uvicorn's spawned workers, runserver's
reloaded child) calls `arm()`. Once Django is set up — `django.setup()`, which
runserver, get_wsgi_application() and get_asgi_application() all call — djtrace's hooks
are installed, every request is recorded, and finished traces go to the trace store
named by DJTRACE_STORE. Until then only the standard library is imported.

Nothing finished is lost when the server stops. The writer drains at exit (atexit), but a
process killed by a signal's default action runs no atexit: uvicorn, after its graceful
shutdown, puts back the handler it found and raises SIGTERM again. So where SIGTERM or
SIGHUP would kill the process outright, `arm()` puts a handler that writes what is
queued first, then dies by the same signal as before. runserver's autoreloader SIGKILLs
its serving child when it is stopped; under capture it passes the child SIGTERM and
waits for it instead.
"""

from __future__ import annotations

import atexit
import functools
import importlib.abc
import importlib.util
import os
import signal
import sys
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import subprocess

ENV_ACTIVE = "DJTRACE_CAPTURE"  # "1" in the captured command's environment
ENV_STORE = "DJTRACE_STORE"
ENV_BODY = "DJTRACE_CAPTURE_BODY"  # record request bodies up to this many bytes
ENV_QUEUE = "DJTRACE_QUEUE_SIZE"
ENV_READY = "DJTRACE_CAPTURE_READY"  # a file: each traced process appends its pid
ENV_SAMPLE = "DJTRACE_SAMPLE"  # capture --sample: the fraction of requests traced in full

_lock = threading.Lock()
_active = False

# Stop signals whose default action kills without atexit (SIGINT raises KeyboardInterrupt).
_DRAIN_ON = ("SIGTERM", "SIGHUP")


def arm() -> None:
    """Arrange for `activate()` to run right after `django.setup()`, whenever that happens."""
    if os.environ.get(ENV_ACTIVE) != "1":
        return
    _drain_before_default_death()
    django = sys.modules.get("django")
    if django is not None:  # another sitecustomize imported it already
        _wrap_setup(django)
    else:
        sys.meta_path.insert(0, _DjangoFinder())


class _DjangoFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself; wraps the loader of the real `django` to patch it once loaded.

    It stays on sys.meta_path until `django` is actually loaded: `python -m django` looks
    the package up (runpy's find_spec, which loads nothing) before it imports it.
    """

    def __init__(self) -> None:
        self._looking = threading.local()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "django" or getattr(self._looking, "on", False):
            return None
        self._looking.on = True  # the lookup below asks this finder again
        try:
            spec = importlib.util.find_spec("django")
        finally:
            self._looking.on = False
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _PatchingLoader(spec.loader, self)
        return spec


class _PatchingLoader(importlib.abc.Loader):
    def __init__(self, loader: Any, finder: _DjangoFinder) -> None:
        self._loader = loader
        self._finder = finder

    def create_module(self, spec: Any) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        if self._finder in sys.meta_path:
            sys.meta_path.remove(self._finder)  # django is being loaded: one use only
        # Give the module its real loader back before anything can look at it.
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        _wrap_setup(module)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)


def _wrap_setup(django: Any) -> None:
    original = getattr(django, "setup", None)
    if original is None or getattr(original, "__djtrace__", False):
        return

    @functools.wraps(original)
    def setup(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        activate()
        return result

    setup.__djtrace__ = True  # type: ignore[attr-defined]
    django.setup = setup


def activate() -> None:
    """Install the hooks, record every request, send traces to the store. Once per process.

    A failure here is reported on stderr and leaves the app exactly as it was.
    """
    global _active
    with _lock:
        if _active:
            return
        _active = True
    store = os.environ.get(ENV_STORE)
    if not store:
        return
    try:
        from django.conf import settings
        from djtrace import install
        from djtrace.exporters.writer import DEFAULT_QUEUE_SIZE, StoreWriter
        from djtrace.hooks.handler import finish_unclosed
        from djtrace.recorder import add_sink, config

        writer = StoreWriter(
            store,
            queue_size=_int_env(ENV_QUEUE, DEFAULT_QUEUE_SIZE),
            settings=getattr(settings, "SETTINGS_MODULE", None),
            cwd=os.getcwd(),
        )
        install()
        config.capture_body = _int_env(ENV_BODY, 0)
        config.sample_rate = _rate_env(ENV_SAMPLE)
        add_sink(writer)
        if os.environ.get("DJTRACE_OTLP") == "1":  # capture --otlp; never raises
            from djtrace.exporters.otlp import attach_from_env

            attach_from_env(add_sink)
        config.record_all = True
        _let_reloaded_child_drain()
        # Registered after every sink, so it runs before they drain (atexit is LIFO).
        atexit.register(finish_unclosed)
    except Exception as exc:
        print(
            f"djtrace: not tracing process {os.getpid()}: {type(exc).__name__}: {exc}",
            file=sys.stderr,
            flush=True,
        )
        return
    _report_ready()
    _arm_breakpoints()


def _arm_breakpoints() -> None:
    """`capture --break-on`: this process stops in the debugger on those events."""
    if not os.environ.get("DJTRACE_BREAK_ON"):
        return
    try:
        from djtrace.breakpoints import arm_from_env

        arm_from_env()
    except Exception as exc:  # tracing goes on without them
        print(f"djtrace: no breakpoints in process {os.getpid()}: {exc}", file=sys.stderr)


def _drain_before_default_death() -> None:
    """Where SIGTERM/SIGHUP still have their default action, drain the writers first.

    Installed before the server starts, so a server that saves and later restores the
    handler it found (uvicorn) restores this one.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for name in _DRAIN_ON:
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        try:
            if signal.getsignal(signum) is signal.SIG_DFL:
                signal.signal(signum, _drain_then_die)
        except (OSError, ValueError):
            pass


def _drain_then_die(signum: int, frame: Any) -> None:
    writer = sys.modules.get("djtrace.exporters.writer")  # None: nothing was traced here
    if writer is not None and _inside(frame, writer, sys.modules.get("queue")):
        # The main thread was stopped inside the writer's queue or locks, which draining
        # needs: deliver the signal again in a moment, once it is out of them.
        threading.Timer(0.01, os.kill, (os.getpid(), signum)).start()
        return
    signal.signal(signum, signal.SIG_DFL)  # the same signal again kills at once
    if writer is not None:
        try:
            writer.close_all()
        except Exception:
            pass
    signal.raise_signal(signum)  # the default action, as without djtrace


def _inside(frame: Any, *modules: Any) -> bool:
    files = {getattr(module, "__file__", None) for module in modules} - {None}
    while frame is not None:
        if frame.f_code.co_filename in files:
            return True
        frame = frame.f_back
    return False


def _let_reloaded_child_drain() -> None:
    """runserver's autoreloader: stop its serving child with SIGTERM, not SIGKILL.

    On Ctrl-C or SIGTERM Django's reloading parent kills the child that serves requests
    (subprocess.run kills it on the way out), whose last traces may still be queued. Under
    capture Django's own restart_with_reloader runs as ever, but the `subprocess` it sees
    has a run() that passes the child SIGTERM (it exits through sys.exit, so its writer
    drains) and waits for it.
    """
    autoreload = sys.modules.get("django.utils.autoreload")
    if autoreload is None or os.environ.get(getattr(autoreload, "DJANGO_AUTORELOAD_ENV", "")):
        return  # not runserver, or this is the serving child
    if isinstance(getattr(autoreload, "subprocess", None), _ReloaderSubprocess):
        return
    autoreload.subprocess = _ReloaderSubprocess(autoreload.subprocess)


class _ReloaderSubprocess:
    """The subprocess module as django.utils.autoreload sees it under capture."""

    def __init__(self, module: Any) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)

    def run(self, args: Any, **kwargs: Any) -> Any:
        with self._module.Popen(args, **kwargs) as child:
            try:
                code = child.wait()
            except BaseException:  # Ctrl-C, or SIGTERM (Django's handler: sys.exit)
                _stop_child(child)
                raise
        return self._module.CompletedProcess(child.args, code)


def _stop_child(child: subprocess.Popen[Any]) -> None:
    from djtrace.exporters.writer import CLOSE_TIMEOUT_S

    try:
        child.terminate()
        child.wait(CLOSE_TIMEOUT_S + 5)
    except BaseException:  # a second Ctrl-C, or it would not stop: as Django does
        child.kill()
        child.wait()


def _report_ready() -> None:
    """Tell capture this process is traced (so "no requests" is not mistaken for "djtrace
    never loaded"). One short O_APPEND write: atomic among the server's processes."""
    ready = os.environ.get(ENV_READY)
    if not ready:
        return
    try:
        fd = os.open(ready, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)
    except OSError:
        pass  # capture has gone; nothing to tell


def _rate_env(name: str) -> float:
    """A fraction from 0 to 1; 1 (every request traced in full) when unset or not a number."""
    try:
        rate = float(os.environ.get(name) or 1.0)
    except ValueError:
        return 1.0
    return min(max(rate, 0.0), 1.0) if rate == rate else 1.0  # NaN: unset


def _int_env(name: str, default: int) -> int:
    try:
        return max(0, int(os.environ.get(name) or default))
    except ValueError:
        return default
