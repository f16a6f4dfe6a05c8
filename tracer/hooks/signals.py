"""Signals: a `signal` span per send, a `signal.receiver` span per receiver inside it.

`Signal.send`/`send_robust` (and `asend`/`asend_robust` on Django 5+) open the send span;
while it is the current span, `Signal._live_receivers` hands Django thin wrappers that time
each receiver (sync ones and, on Django 5+, async ones), and the send's return value is
given back with the user's own receivers in it. Cheap on purpose: a signal is named from
a table (built once by scanning loaded modules for Signal objects, again only when new
modules appear), a receiver by its `__module__`/`__qualname__`; nothing is repr'd. A send
with no receivers for its sender (the usual post_init) records nothing.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from django.core.signals import request_started
from django.dispatch import Signal
from django.dispatch.dispatcher import NO_RECEIVERS
from djtrace.model import ATTRS, PHASE
from djtrace.patching import patch
from djtrace.recorder import State, async_span_scope, current, enter, leave, tracer_failed

UNNAMED = "signal"

# id(signal) → (variable name, "module.variable"). Module-level signals live as long as
# their module, so their ids stay theirs.
_names: dict[int, tuple[str, str]] = {}
_scanned_modules: set[str] = set()  # each module's namespace is read once
_modules_seen = 0  # len(sys.modules) at the last full scan
_lock = threading.Lock()
_STDLIB = frozenset(getattr(sys, "stdlib_module_names", ()))  # Python 3.10+


def _scan(signal_modules_only: bool) -> None:
    """Read the namespaces of modules not read yet (`*signal*` modules first: cheap)."""
    for module_name, module in list(sys.modules.items()):
        if module_name in _scanned_modules:
            continue
        if signal_modules_only and "signal" not in module_name:
            continue
        if module_name.partition(".")[0] in _STDLIB:
            _scanned_modules.add(module_name)  # the standard library has no Django signals
            continue
        if getattr(getattr(module, "__spec__", None), "_initializing", False):
            continue  # still importing: read it once it is complete
        _scanned_modules.add(module_name)
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        for var, value in list(namespace.items()):
            # type(), not isinstance(): isinstance asks a LazyObject its __class__, which sets
            # it up (django.contrib.admin's `site`, imported with admin not installed, raises).
            if issubclass(type(value), Signal) and not var.startswith("_"):
                known = _names.get(id(value))
                # Prefer where it is defined: a `signals` module over one that imports it.
                if known is None or (
                    module_name.endswith("signals")
                    and not known[1].rpartition(".")[0].endswith("signals")
                ):
                    _names[id(value)] = (var, f"{module_name}.{var}")


def signal_name(signal: Signal) -> tuple[str, str]:
    """(short name, dotted name) of a module-level signal; ("signal", "") if it has none."""
    global _modules_seen
    name = _names.get(id(signal))
    if name is not None:
        return name
    if len(sys.modules) != _modules_seen:  # new modules since the last miss: read them
        with _lock:
            _scan(signal_modules_only=True)
            if id(signal) not in _names:
                _modules_seen = len(sys.modules)
                _scan(signal_modules_only=False)
        name = _names.get(id(signal))
        if name is not None:
            return name
    return UNNAMED, ""


def receiver_name(receiver: Any) -> str:
    # Not cached: a cache keyed by the receiver would keep a weakly connected one alive, and
    # receivers made by one decorator share their code object but not their names.
    func = getattr(receiver, "__func__", receiver)  # a bound method: its function
    qualname = getattr(func, "__qualname__", None) or type(func).__qualname__
    module = getattr(func, "__module__", None)
    return f"{module}.{qualname}" if module else qualname


class _Receiver:
    """Times one receiver call; anything else is the receiver's own attribute."""

    __slots__ = ("receiver", "state", "name")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        state = self.state
        span = enter(state, "signal.receiver", self.name)
        try:
            response = self.receiver(*args, **kwargs)
        except BaseException as exc:
            leave(state, span, exc)
            raise
        leave(state, span)
        return response

    def __getattr__(self, name: str) -> Any:
        if name == "receiver":  # an unset slot: never recurse
            raise AttributeError(name)
        return getattr(self.receiver, name)


class _AsyncReceiver(_Receiver):
    __slots__ = ()

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        attrs = {"async": True}
        with async_span_scope(self.state, "signal.receiver", self.name, attrs):
            return await self.receiver(*args, **kwargs)


_new = object.__new__


def _wrapped(cls: type[_Receiver], receivers: Any, state: State) -> list[_Receiver]:
    wrapped = []
    for receiver in receivers:
        wrapper = _new(cls)  # filled in here: no __init__ call per receiver
        wrapper.receiver = receiver
        wrapper.state = state
        wrapper.name = receiver_name(receiver)
        wrapped.append(wrapper)
    return wrapped


def _attrs(signal: Signal, sender: Any) -> tuple[str, dict[str, Any]]:
    name, dotted = signal_name(signal)
    attrs: dict[str, Any] = {"signal": dotted} if dotted else {}
    if isinstance(sender, type):
        attrs["sender"] = sender.__name__
    return name, attrs


def _unwrapped(responses: Any) -> Any:
    """The send's result as Django would return it: the user's receivers, not our wrappers."""
    if not isinstance(responses, list):
        return responses
    return [
        (pair[0].receiver, pair[1]) if isinstance(pair[0], _Receiver) else pair
        for pair in responses
    ]


def _outside_request(signal: Signal, state: State) -> bool:
    """request_started is sent just before the request's trace begins: not inline work."""
    return signal is request_started and not state.trace.request


def _send(original: Any) -> Any:
    def send(self: Signal, sender: Any, **named: Any) -> Any:
        # Django's own early exit, taken here instead of inside the original: most sends
        # (pre_init/post_init for every model instance) have no receivers for their sender,
        # and this way they cost no more traced or idle than they do untraced.
        if not self.receivers or self.sender_receivers_cache.get(sender) is NO_RECEIVERS:
            return []
        state = current.get()
        if state is None or _outside_request(self, state):
            return original(self, sender, **named)
        name, attrs = _attrs(self, sender)
        span = enter(state, "signal", name, attrs)
        try:
            responses = original(self, sender, **named)
        except BaseException as exc:
            leave(state, span, exc)
            raise
        leave(state, span)
        if span is not None:
            attrs.setdefault("receivers", 0)
        return _unwrapped(responses)

    return send


def _asend(original: Any) -> Any:
    async def asend(self: Signal, sender: Any, **named: Any) -> Any:
        if not self.receivers or self.sender_receivers_cache.get(sender) is NO_RECEIVERS:
            return []
        state = current.get()
        if state is None or _outside_request(self, state):
            return await original(self, sender, **named)
        name, attrs = _attrs(self, sender)
        attrs["async"] = True
        with async_span_scope(state, "signal", name, attrs) as span:
            responses = await original(self, sender, **named)
        if span is not None:
            attrs.setdefault("receivers", 0)
        return _unwrapped(responses)

    return asend


def _live_receivers(original: Any) -> Any:
    def live_receivers(self: Signal, sender: Any) -> Any:
        result = original(self, sender)
        state = current.get()
        if state is None:
            return result
        span = state.span
        # Only for the send that is starting right now (has_listeners etc. get the originals).
        if span is None or span[PHASE] != "signal" or "receivers" in span[ATTRS]:
            return result
        try:
            if isinstance(result, tuple):  # Django 5+: (sync receivers, async receivers)
                sync, asynchronous = result
                span[ATTRS]["receivers"] = len(sync) + len(asynchronous)
                return (
                    _wrapped(_Receiver, sync, state),
                    _wrapped(_AsyncReceiver, asynchronous, state),
                )
            span[ATTRS]["receivers"] = len(result)
            return _wrapped(_Receiver, result, state)
        except Exception:
            tracer_failed(state.trace, "signal receivers")
            return result

    return live_receivers


def install() -> None:
    patch(Signal, "send", _send)
    patch(Signal, "send_robust", _send)
    if "asend" in Signal.__dict__:  # Django 5.0+
        patch(Signal, "asend", _asend)
        patch(Signal, "asend_robust", _asend)
    patch(Signal, "_live_receivers", _live_receivers)
