"""Replay: which recording answers a request, and the events it plays.

The book indexes recordings by match key; identical keys play in order,
then the last repeats.  A replayed stream is a plain list of ``(seconds
after start, bytes)`` -- the reply plan delivery already paces on the shared
ticker -- with the recorded offsets scaled by ``speed``.  ``Fresh`` renews
ids and timestamps consistently across one answer.  Pure: no Twisted.
"""

from __future__ import annotations

import difflib
import re
import secrets
import string
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mockai_tw.recording.files import Recording
from mockai_tw.recording.keys import MatchKey

#: How many recordings a miss compares itself with to name the closest.
MAX_COMPARED = 500
#: And how much of each canonical key it compares.
MAX_COMPARED_BYTES = 4096

_ALPHABET = string.ascii_letters + string.digits
_ID = re.compile(
    rb'"(id|response_id|item_id|call_id|tool_call_id|responseId)"(\s*:\s*)"([^"\\]{3,200})"'
)
_CREATED = re.compile(rb'"(created|created_at)"(\s*:\s*)(\d{9,11})(?=[,}\s])')


class Book:
    """The loaded recordings and what replay has played of each."""

    def __init__(self, recordings: Sequence[Recording] = ()) -> None:
        self.by_key: dict[bytes, list[Recording]] = {}
        self.played: dict[bytes, int] = {}
        self.hits: dict[str, int] = {}
        self.order: list[Recording] = []
        for rec in recordings:
            self.add(rec)

    def add(self, rec: Recording) -> None:
        self.by_key.setdefault(rec.key.canonical, []).append(rec)
        self.hits.setdefault(rec.id, 0)
        self.order.append(rec)

    def __len__(self) -> int:
        return len(self.order)

    def count(self, key: MatchKey) -> int:
        return len(self.by_key.get(key.canonical, ()))

    def take(self, key: MatchKey) -> Recording | None:
        """The next recording of ``key`` (the last one repeats), or None."""
        canonical = key.canonical
        found = self.by_key.get(canonical)
        if not found:
            return None
        n = self.played.get(canonical, 0)
        self.played[canonical] = n + 1
        rec = found[min(n, len(found) - 1)]
        self.hits[rec.id] = self.hits.get(rec.id, 0) + 1
        return rec

    def get(self, rec_id: str) -> Recording | None:
        return next((r for r in self.order if r.id == rec_id), None)

    def closest(self, key: MatchKey) -> Recording | None:
        """The recording most like ``key``: same route first, then by text."""
        same = [r for r in self.order if r.key.path == key.path]
        pool = (same or self.order)[:MAX_COMPARED]
        if not pool:
            return None
        wanted = key.canonical[:MAX_COMPARED_BYTES]

        def likeness(rec: Recording) -> float:
            theirs = rec.key.canonical[:MAX_COMPARED_BYTES]
            return difflib.SequenceMatcher(None, wanted, theirs).ratio()

        return max(pool, key=likeness)

    def view(self) -> list[dict[str, Any]]:
        return [
            {
                "id": r.id,
                "file": r.file,
                "key": r.key.describe(),
                "match_key": r.key.as_dict(),
                "sequence": r.seq,
                "status": r.status,
                "stream": r.streamed,
                "events": len(r.events),
                "hits": self.hits.get(r.id, 0),
            }
            for r in self.order
        ]


def _token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


class Fresh:
    """New ids and timestamps for one replayed answer, the same in every event.

    An id keeps its prefix (``chatcmpl-``, ``resp_``, ``call_``) and its
    length; ``created`` moves by one shift, so gaps between values stay.
    """

    def __init__(self, now: int, token: Callable[[int], str] = _token) -> None:
        self.now = now
        self.token = token
        self.ids: dict[bytes, bytes] = {}
        self.shift: int | None = None

    def _id(self, match: re.Match[bytes]) -> bytes:
        old = match.group(3)
        new = self.ids.get(old)
        if new is None:
            cuts = [at for at in (old.find(b"_"), old.find(b"-")) if at >= 0]
            cut = min(cuts) if cuts else -1
            prefix, rest = old[: cut + 1], old[cut + 1 :]
            new = prefix + self.token(max(len(rest), 4)).encode()
            self.ids[old] = new
        return b'"%s"%s"%s"' % (match.group(1), match.group(2), new)

    def _created(self, match: re.Match[bytes]) -> bytes:
        old = int(match.group(3))
        if self.shift is None:
            self.shift = self.now - old
        return b'"%s"%s%d' % (match.group(1), match.group(2), old + self.shift)

    def __call__(self, data: bytes) -> bytes:
        return _CREATED.sub(self._created, _ID.sub(self._id, data))


def scaled(offset_ms: float, speed: float) -> float:
    """Seconds after the request an event is due at ``speed`` (0: at once)."""
    return 0.0 if speed <= 0 else offset_ms / 1000.0 / speed


def replay_events(
    rec: Recording, speed: float, elapsed_s: float, fresh: Fresh | None
) -> Iterator[tuple[float, bytes]]:
    """The recorded events, each due at its scaled offset from the request
    (``elapsed_s``: how long ago the request came, already spent)."""
    for event in rec.events:
        data = fresh(event.data) if fresh is not None else event.data
        yield max(0.0, scaled(event.offset_ms, speed) - elapsed_s), data


def replay_body(rec: Recording, fresh: Fresh | None) -> bytes:
    return fresh(rec.body) if fresh is not None else rec.body


def miss_message(key: MatchKey, closest: Recording | None, known: int) -> str:
    """The words of a miss: the key asked for, and the nearest recording."""
    near = (
        f" The closest recording is {closest.id} ({closest.key.describe()},"
        f" file {closest.file})."
        if closest is not None
        else " There are no recordings."
    )
    return (
        f"No recording matches this request (match key {key.describe()})"
        f" among {known} recordings.{near}"
    )
