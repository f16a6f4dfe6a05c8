"""Fitting a table to the terminal without ever cutting a number.

Numbers (ids, times, counts) keep their full width. Text columns (paths, routes, workers)
give way instead: each shrinks to its minimum (then shows an ellipsis), and optional ones
are dropped whole, in a fixed order, when even their minimum does not fit. The same data
at the same width always gives the same columns.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Between two columns: the right padding, the separator, the left padding (SIMPLE_HEAD).
GAP = 3


@dataclass
class Col:
    header: str
    cells: list[str]
    text: bool = False  # shrinks (with an ellipsis) when space is short; numbers never do
    min_width: int = 8  # for text columns: narrower than this, drop it (or keep it this wide)
    drop: int = 0  # text columns: 0 = always kept; higher numbers are dropped first

    @property
    def natural(self) -> int:
        return max([len(self.header), *(len(c) for c in self.cells)])


@dataclass
class Layout:
    widths: dict[str, int]  # header → width, for the columns kept, in the order given
    total: int  # the table's width (may exceed the terminal when only numbers are left)
    dropped: list[str]


def fit(columns: list[Col], width: int) -> Layout:
    """Widths for `columns` in `width` characters (see the module docstring)."""
    kept = list(columns)
    dropped: list[str] = []
    while True:
        numbers = sum(c.natural for c in kept if not c.text)
        room = width - numbers - GAP * (len(kept) - 1)
        texts = [c for c in kept if c.text]
        if sum(min(c.natural, c.min_width) for c in texts) <= room:
            break
        optional = [c for c in texts if c.drop]
        if not optional:
            break
        victim = max(optional, key=lambda c: c.drop)
        kept.remove(victim)
        dropped.append(victim.header)
    widths = {c.header: c.natural for c in kept}
    for c in texts:
        widths[c.header] = min(c.natural, c.min_width)
    spare = room - sum(widths[c.header] for c in texts)
    for c in sorted(texts, key=lambda c: c.drop):  # the most important text grows first
        grow = max(0, min(spare, c.natural - widths[c.header]))
        widths[c.header] += grow
        spare -= grow
    total = sum(widths.values()) + GAP * (len(kept) - 1)
    return Layout(widths, total, dropped)
