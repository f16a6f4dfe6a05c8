"""Tree labels and summary counts for connections, transactions, cache, sessions and signals.

Kept beside cli/render.py, which calls `service_label` for these phases and appends
`service_summary` to its summary line.
"""

from __future__ import annotations

from typing import Any

from djtrace.analysis import Node
from rich.text import Text

SERVICE_PHASES = frozenset(
    {
        "db.connect",
        "db.close",
        "db.transaction",
        "db.commit",
        "db.rollback",
        "cache",
        "session",
        "signal",
        "signal.receiver",
    }
)

#: Drawn however fast they were: a request's connection and transaction story.
ALWAYS_SHOWN = frozenset({"db.connect", "db.close", "db.transaction", "db.rollback"})


def always_shown(node: Node) -> bool:
    """A connection or transaction line, or a node on the way to one."""
    return node.phase in ALWAYS_SHOWN or any(always_shown(child) for child in node.children)


def _ms(ns: int) -> str:
    from djtrace.cli.render import ms  # render imports this module: import at call time

    return ms(ns)


def _alias(attrs: dict[str, Any]) -> str:
    return str(attrs.get("alias", ""))


def _connect(node: Node, attrs: dict[str, Any]) -> Text:
    text = Text.assemble(("connection ", "cyan"), (_alias(attrs), "bold"), " ")
    action = attrs.get("action")
    if action == "reused":
        text.append("reused", "green")
    elif action == "checkout":
        text.append(f"checked out of the pool {_ms(node.total)}", "yellow")
        if "pool_available" in attrs and "pool_size" in attrs:
            text.append(f"  ({attrs['pool_available']} of {attrs['pool_size']} free after)", "dim")
    else:
        text.append(f"opened {_ms(node.total)}", "yellow")
    if attrs.get("vendor"):
        text.append(f"  {attrs['vendor']}", "dim")
    return text


def _cache(node: Node, attrs: dict[str, Any]) -> Text:
    text = Text.assemble(("cache ", "cyan"), (node.name, "bold"))
    keys = {s.attrs.get("key") for s in node.spans}
    if "count" in attrs:  # a many-variant: `key` is only its first key
        total = sum(s.attrs.get("count", 0) for s in node.spans)
        text.append(f" {total} keys")
        if node.count == 1 and attrs.get("key") is not None:
            text.append(f" ({attrs['key']}{', …' if total > 1 else ''})", "dim")
    elif len(keys) == 1 and attrs.get("key") is not None:
        text.append(f" {attrs['key']}")
    elif len(keys) > 1:
        text.append(f" {len(keys)} keys", "dim")
    hits = misses = 0
    for span in node.spans:
        a = span.attrs
        if "hits" in a and "count" in a:
            hits += a["hits"]
            misses += a["count"] - a["hits"]
        elif "hit" in a:
            hits += bool(a["hit"])
            misses += not a["hit"]
    if node.count == 1 and "hits" not in attrs and "hit" in attrs:
        text.append(
            "  HIT" if attrs["hit"] else "  MISS", "bold green" if attrs["hit"] else "yellow"
        )
    elif hits or misses:
        text.append(f"  {hits} HIT", "bold green" if hits else "dim")
        text.append(" · ", "dim")
        text.append(f"{misses} MISS", "yellow" if misses else "dim")
    if attrs.get("alias") not in (None, "default"):
        text.append(f"  [{attrs['alias']}]", "dim")
    return text


def service_label(node: Node) -> Text:
    attrs = node.first.attrs
    phase = node.phase
    if phase == "db.connect":
        return _connect(node, attrs)
    if phase == "db.close":
        returned = attrs.get("action") == "returned"
        return Text.assemble(
            ("connection ", "cyan"),
            (_alias(attrs), "bold"),
            (" returned to the pool" if returned else " closed", ""),
        )
    if phase == "db.transaction":
        kind = attrs.get("kind", node.name)
        text = Text.assemble(((kind if kind != "nested" else "atomic") + " ", "cyan"))
        text.append(_alias(attrs), "bold")
        if kind == "nested":
            text.append(" (no savepoint)", "dim")
        if attrs.get("durable"):
            text.append(" durable", "dim")
        outcomes = [s.attrs.get("outcome") for s in node.spans]
        if "rollback" in outcomes:
            rolled = outcomes.count("rollback")
            text.append(
                " → ROLLBACK" + (f" ({rolled} of {len(outcomes)})" if len(outcomes) > 1 else ""),
                "bold red",
            )
        elif "commit" in outcomes:
            text.append(" → commit", "green")
        return text
    if phase in ("db.commit", "db.rollback"):
        word = "COMMIT" if phase == "db.commit" else "ROLLBACK"
        style = "cyan" if phase == "db.commit" else "bold red"
        return Text.assemble((word + " ", style), (_alias(attrs), ""))
    if phase == "cache":
        return _cache(node, attrs)
    if phase == "session":
        text = Text.assemble(("session ", "cyan"), (node.name, "bold"))
        text.append(f" ({attrs.get('engine', '?')})", "dim")
        if node.count == 1 and attrs.get("empty"):
            text.append("  no session", "dim")
        return text
    if phase == "signal":
        text = Text.assemble(("signal ", "cyan"), (node.name, "bold"))
        if attrs.get("sender"):
            text.append(f" ({attrs['sender']})", "dim")
        receivers = attrs.get("receivers")
        if node.count == 1 and receivers is not None:
            text.append(f" → {receivers} receiver{'s' if receivers != 1 else ''}", "dim")
        return text
    if phase == "signal.receiver":
        module, dot, last = node.name.rpartition(".")
        return Text.assemble(("receiver ", "cyan"), (module + dot, "dim"), (last, "bold"))
    return Text.assemble((phase + " ", "cyan"), (node.name, ""))


def service_summary(info: dict[str, Any]) -> str:
    """Cache and connection counts for the summary line ('' when the request had none)."""
    parts = []
    if info.get("cache_ops"):
        parts.append(
            f"cache {info['cache_hits']} hit{'s' if info['cache_hits'] != 1 else ''}"
            f" / {info['cache_misses']} miss{'es' if info['cache_misses'] != 1 else ''}"
        )
    connections = []
    for key, word in (
        ("connections_opened", "opened"),
        ("connections_reused", "reused"),
        ("connections_closed", "closed"),
    ):
        if info.get(key):
            connections.append(f"{info[key]} {word}")
    if connections:
        parts.append("connections " + ", ".join(connections))
    if info.get("rollbacks"):
        parts.append(f"{info['rollbacks']} rollback{'s' if info['rollbacks'] != 1 else ''}")
    return "  ·  ".join(parts)
