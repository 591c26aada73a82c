"""Bounded tables of what was worked out before, for the hot path.

Clients send the same heads, bodies and models again and again, so several
layers keep what they made of one (a head read, a request parsed, a body
template, a count). Each such table has a bound and is emptied when full:
a client that never repeats itself costs a lookup and nothing past the
bound, and no entry outlives a burst of new ones. A leaf: it imports
nothing of ours, so the wire format and the engine may use it.
"""

from __future__ import annotations

from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")


def remember(table: dict[K, V], key: K, value: V, bound: int) -> V:
    """Keep ``value`` under ``key`` (the table emptied first if it holds
    ``bound`` entries); returns ``value``."""
    if len(table) >= bound:
        table.clear()
    table[key] = value
    return value
