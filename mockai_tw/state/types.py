"""What the shared-state store takes and gives back: plain values, no client.

A leaf (no Twisted, nothing of ours) so the engine, the web layer and any
backend can share these names.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple


class StoreError(Exception):
    """The store refused an operation (a Redis error reply, a bad argument)."""


class StoreUnavailable(StoreError):
    """The store cannot be reached: not connected, lost, or timed out.

    The message names ``state.url`` (redacted), never a password.
    """


class BucketCharge(NamedTuple):
    """A budget to charge: ``limit`` per minute, holding at most ``capacity``
    (created full), and the ``amount`` this request takes from it."""

    key: str
    limit: int
    capacity: float
    amount: float


class BucketState(NamedTuple):
    """A budget after the decision: what is left, the seconds until the
    amount asked would be available (0 when charged, ``inf`` when it is more
    than the capacity) and the seconds until it is full again."""

    available: float
    wait: float
    reset: float


class Candidate(NamedTuple):
    """A rule that could answer a question: its counter, and how many times
    it may answer in all (``-1``: no limit)."""

    counter: str
    times: int


UNLIMITED = -1


class Pick(NamedTuple):
    """The answer to one question: the index of the candidate chosen (``-1``
    when none had times left) and that counter's hits after this one."""

    candidate: int
    hits: int


class Counter(NamedTuple):
    """A rule's counter: its hits, and times left (None: no limit, or unused)."""

    hits: int
    left: int | None


@dataclass(frozen=True)
class AdmitResult:
    """One ``admit``: stale rules (nothing done), or the budgets' decision
    and, when admitted, a pick per question."""

    stale: bool
    version: int
    admitted: bool
    buckets: tuple[BucketState, ...] = ()
    picks: tuple[Pick, ...] = ()

    def claimed(
        self, questions: Sequence[Sequence[Candidate | tuple[str, int]]]
    ) -> list[str]:
        """The counters the picks took (to ``release`` them), given the
        ``questions`` this result answered."""
        return [
            questions[q][pick.candidate][0]
            for q, pick in enumerate(self.picks)
            if pick.candidate >= 0
        ]


@dataclass(frozen=True)
class ChargeResult:
    """One ``charge``: all the budgets charged, or none, and their state."""

    admitted: bool
    buckets: tuple[BucketState, ...] = ()


@dataclass(frozen=True)
class RulesSnapshot:
    """The runtime rules at ``version`` (0: none ever stored): the caller's
    encoded blobs, those that go before the file's rules and those after."""

    version: int
    first: tuple[bytes, ...] = ()
    last: tuple[bytes, ...] = ()


def check_buckets(
    buckets: Sequence[BucketCharge | tuple[str, int, float, float]],
) -> list[BucketCharge]:
    """The buckets as ``BucketCharge``, or ``ValueError`` for one Redis would
    choke on (a limit of 0 has no rate: leave that bucket out)."""
    out = []
    for bucket in buckets:
        key, limit, capacity, amount = bucket
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            raise ValueError(f"bucket {key!r}: limit must be a positive integer")
        if not (math.isfinite(capacity) and capacity > 0):
            raise ValueError(f"bucket {key!r}: capacity must be positive")
        if not (math.isfinite(amount) and amount >= 0):
            raise ValueError(f"bucket {key!r}: amount must be 0 or more")
        out.append(BucketCharge(key, limit, float(capacity), float(amount)))
    return out


def check_questions(
    questions: Sequence[Sequence[Candidate | tuple[str, int]]],
) -> list[list[Candidate]]:
    out = []
    for candidates in questions:
        row = []
        for counter, times in candidates:
            if not isinstance(times, int) or not (times == UNLIMITED or times >= 1):
                raise ValueError(f"rule {counter!r}: times must be -1 or 1 or more")
            row.append(Candidate(counter, times))
        out.append(row)
    return out
