"""Bounded keeping of plain JSON records, and the API's cursor pages.

Conversations and stored chat completions are kept as JSON objects (what
the wire shows, plus what the server needs), so a shared store holds them
as JSON too and nothing read back can run code.  Pure: no reactor.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

Record = dict[str, Any]


class Records:
    """The last ``size`` records of one kind, least recently used dropped first."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[str, Record] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Record]:
        return iter(list(self._entries.values()))

    def resize(self, size: int) -> None:
        self.size = size
        while len(self._entries) > size:
            self._entries.popitem(last=False)

    def get(self, key: str) -> Record | None:
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: str, record: Record) -> None:
        self._entries[key] = record
        self._entries.move_to_end(key)
        self.resize(self.size)

    def delete(self, key: str) -> bool:
        return self._entries.pop(key, None) is not None


@dataclass(frozen=True)
class Page:
    """One page of a cursor list: its entries and whether more follow."""

    data: list[Any]
    has_more: bool


def page(
    entries: Iterable[Any],
    key: Callable[[Any], str],
    limit: int,
    order: str,
    after: str | None,
) -> Page:
    """``entries`` (oldest first) as the API pages them: ``order`` asc or
    desc, starting after the entry whose key is ``after`` (none: empty)."""
    ordered = list(entries)
    if order == "desc":
        ordered.reverse()
    if after is not None:
        keys = [key(e) for e in ordered]
        ordered = ordered[keys.index(after) + 1 :] if after in keys else []
    return Page(ordered[:limit], len(ordered) > limit)
