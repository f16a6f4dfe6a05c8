"""Put first on PYTHONPATH by `djtrace capture`: traces this Python process's Django requests.

Python imports one `sitecustomize` at startup; this one first runs the one it hides (a
virtualenv's or the distribution's), as if djtrace were not there, then arms djtrace.
"""

import os
import sys


def _run_hidden_sitecustomize() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    ours = sys.modules.pop("sitecustomize", None)
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    try:
        import sitecustomize  # noqa: F401  (the next one on the path, if any)
    except Exception as exc:  # reported the way site.py reports it, and startup goes on
        if not (isinstance(exc, ImportError) and exc.name == "sitecustomize"):
            print(f"Error in sitecustomize: {type(exc).__name__}: {exc}", file=sys.stderr)
    finally:
        sys.path[:] = saved
        if ours is not None:
            sys.modules["sitecustomize"] = ours


def _arm() -> None:
    try:
        from djtrace.cli import autotrace
    except Exception as exc:
        print(
            f"djtrace: cannot trace {sys.executable} (pid {os.getpid()}): djtrace is not "
            f"importable there ({exc})",
            file=sys.stderr,
        )
        return
    autotrace.arm()


_run_hidden_sitecustomize()
_arm()
