"""Prompt caching as Anthropic bills it: a prefix that ends at a breakpoint
(a block with ``cache_control``) is written on first use and read while it
lives, each read renewing its time to live.

Pure: the caller passes the time (the pipeline's reactor clock); state is
one bounded LRU of prefix digests per process, so a replica or another
worker has its own cache, as a new region would.  A prefix shorter than
``MIN_TOKENS`` is not cached, as the real API's minimum.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from mockai_tw.engine import tokenizer
from mockai_tw.request.features import PromptSegment

# The smallest prefix the API caches (Sonnet's and Opus's figure).
MIN_TOKENS = 1024
# How many prefixes a process keeps, least recently used dropped first.
CACHE_SIZE = 4096
ONE_HOUR = 3600.0


@dataclass(frozen=True)
class Breakpoint:
    """A cacheable prefix: its digest, its tokens, how long it lives."""

    key: str
    tokens: int
    ttl_s: float


@dataclass(frozen=True)
class CacheUse:
    """Of a prompt's tokens: read from the cache, and written to it (by
    the time to live of the breakpoint that wrote them)."""

    read: int = 0
    written_5m: int = 0
    written_1h: int = 0


NO_USE = CacheUse()


def breakpoints(
    model: str, segments: Sequence[PromptSegment], total: int
) -> list[Breakpoint]:
    """The prompt's cacheable prefixes, shortest first; their tokens as the
    tokenizer counts the blocks, never more than the prompt's ``total``."""
    digest = hashlib.blake2b(model.encode(), digest_size=16)
    counter = tokenizer.for_model(model)
    tokens = 0
    out = []
    for segment in segments:
        digest.update(b"%d:" % len(segment.key))
        digest.update(segment.key)
        tokens += segment.tokens + (counter.count(segment.text) if segment.text else 0)
        if segment.ttl_s is not None:
            out.append(
                Breakpoint(digest.copy().hexdigest(), min(tokens, total), segment.ttl_s)
            )
    return out


class PromptCache:
    """Which prefixes are cached, and until when."""

    def __init__(self, size: int = CACHE_SIZE, min_tokens: int = MIN_TOKENS) -> None:
        self.size = size
        self.min_tokens = min_tokens
        self._until: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def _live(self, key: str, now: float) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until <= now:
            del self._until[key]
            return False
        return True

    def _keep(self, point: Breakpoint, now: float) -> None:
        self._until[point.key] = now + point.ttl_s
        self._until.move_to_end(point.key)
        while len(self._until) > self.size:
            self._until.popitem(last=False)

    def use(self, points: Sequence[Breakpoint], now: float) -> CacheUse:
        """The longest live prefix is read (and renewed); every longer one
        is written, each for the tokens it adds."""
        points = [p for p in points if p.tokens >= self.min_tokens]
        if not points:
            return NO_USE
        hit = next(
            (
                i
                for i in range(len(points) - 1, -1, -1)
                if self._live(points[i].key, now)
            ),
            -1,
        )
        read = points[hit].tokens if hit >= 0 else 0
        if hit >= 0:
            self._keep(points[hit], now)
        written = {False: 0, True: 0}
        done = read
        for point in points[hit + 1 :]:
            added = max(0, point.tokens - done)
            done = max(done, point.tokens)
            written[point.ttl_s >= ONE_HOUR] += added
            self._keep(point, now)
        return CacheUse(read, written[False], written[True])
