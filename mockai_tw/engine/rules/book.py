"""The rule book: rules in order with their run-time state (hits, times, expiry).

Matching is tentative (a ``Claim``) until committed, so a request the server
refuses moves no counter.  Pure: the caller passes the time.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mockai_tw.engine.rules.answers import Answer, SequenceAnswer
from mockai_tw.engine.rules.conditions import NO_CAPTURES, Captures
from mockai_tw.engine.rules.context import RequestContext
from mockai_tw.engine.rules.errors import RuleError
from mockai_tw.engine.rules.rule import Rule


@dataclass
class Entry:
    """A rule in the book, with its state."""

    id: str
    rule: Rule
    origin: str  # "file" or "runtime"
    added: float
    hits: int = 0
    left: int | None = None
    expires: float | None = None
    # Names this entry's counter in a shared store: a replaced rule or a
    # changed file rule starts afresh (the token is new).
    token: str = ""

    @property
    def counter(self) -> str:
        return f"{self.origin}:{self.id}:{self.token}"

    def view(self, position: int) -> dict[str, Any]:
        return {
            "id": self.id,
            "position": position,
            "origin": self.origin,
            "hits": self.hits,
            "times_left": self.left,
            "expires_at": self.expires,
            "rule": dict(self.rule.source),
        }


@dataclass(frozen=True)
class Hit:
    """A matched rule: the answer this request gets, and what it captured."""

    rule: str
    answer: Answer
    context: RequestContext
    captures: Captures = NO_CAPTURES
    count: int = 1
    chunking: str | None = None
    interval_ms: float | None = None
    ttft_ms: float | None = None
    fault: str | None = None
    fault_probability: float = 1.0


class Claim:
    """The tentative hits of one request, in order, until the book commits them.

    A request may hit more than once (legacy completions ask once per prompt),
    the same entry too.  A claim never committed changes nothing: that is how
    a refused request (429, a fault before headers) leaves the rules alone.
    """

    def __init__(self, recording: bool = False) -> None:
        self._claimed: list[tuple[Entry, Hit]] = []
        self._committed = 0  # how many of them the book has applied
        # Shared counters (state.backend: redis): each question's candidates
        # (every live rule whose conditions hold, in order), for the store to
        # pick from; ``match`` answers None until ``resolve``.
        self.recording = recording
        self.questions: list[list[tuple[Entry, RequestContext, Captures]]] = []

    @property
    def hits(self) -> tuple[Hit, ...]:
        """Every hit claimed, committed or not, in order."""
        return tuple(hit for _, hit in self._claimed)

    @property
    def pending(self) -> tuple[Hit, ...]:
        """The hits the next ``commit`` applies."""
        return tuple(hit for _, hit in self._claimed[self._committed :])

    def __repr__(self) -> str:
        return f"<Claim {[h.rule for h in self.hits]!r}, {len(self.pending)} pending>"

    # The book's side: only RuleBook calls these.

    def _pending_on(self, entry: Entry) -> int:
        return sum(1 for e, _ in self._claimed[self._committed :] if e is entry)

    def _record(self, entry: Entry, hit: Hit) -> None:
        self._claimed.append((entry, hit))

    def _take(self) -> list[Entry]:
        entries = [e for e, _ in self._claimed[self._committed :]]
        self._committed = len(self._claimed)
        return entries


class RuleBook:
    """Rules in order: those added ``first`` at run time, the file's, those
    added ``last``.  Whatever no rule matches gets the default answer."""

    def __init__(self, rules: Sequence[Rule] = (), now: float = 0.0) -> None:
        self.first: list[Entry] = []
        self.file: list[Entry] = []
        self.last: list[Entry] = []
        self._added = 0
        self.load(rules, now)

    def __bool__(self) -> bool:
        return bool(self.first or self.file or self.last)

    def _entry(
        self, rule: Rule, entry_id: str, origin: str, now: float, token: str = ""
    ) -> Entry:
        if not token:
            token = _digest(rule) if origin == "file" else secrets.token_hex(8)
        return Entry(
            id=entry_id,
            rule=rule,
            origin=origin,
            added=now,
            left=rule.times,
            expires=None if rule.ttl_s is None else now + rule.ttl_s,
            token=token,
        )

    def load(self, rules: Sequence[Rule], now: float) -> None:
        """The file's rules (at start, at reload) with fresh counters; run-time
        rules stay."""
        self.file = [
            self._entry(r, r.name or f"rule-{i}", "file", now)
            for i, r in enumerate(rules)
        ]

    def reset(self, rules: Sequence[Rule], now: float) -> None:
        """Back to the file's rules alone."""
        self.first, self.last = [], []
        self.load(rules, now)

    def entries(self, now: float | None = None) -> list[Entry]:
        if now is not None:
            self._expire(now)
        return [*self.first, *self.file, *self.last]

    def get(self, entry_id: str) -> Entry | None:
        return next((e for e in self.entries() if e.id == entry_id), None)

    def add(self, rule: Rule, now: float, position: str = "last") -> Entry:
        """A run-time rule; its id is its name, else ``added-N``."""
        if rule.name is not None and self.get(rule.name) is not None:
            raise RuleError(
                "name", f"a rule named {rule.name!r} exists; replace it instead"
            )
        self._added += 1
        entry = self._entry(rule, rule.name or f"added-{self._added}", "runtime", now)
        if position == "first":
            self.first.insert(0, entry)
        else:
            self.last.append(entry)
        return entry

    def replace(self, entry_id: str, rule: Rule, now: float) -> Entry | None:
        """Swap a rule in place (same id and position, fresh counters)."""
        for entries in (self.first, self.file, self.last):
            for i, entry in enumerate(entries):
                if entry.id == entry_id:
                    entries[i] = self._entry(rule, entry_id, entry.origin, now)
                    return entries[i]
        return None

    def delete(self, entry_id: str) -> bool:
        for entries in (self.first, self.file, self.last):
            for i, entry in enumerate(entries):
                if entry.id == entry_id:
                    del entries[i]
                    return True
        return False

    # --- a shared store's copy (state.backend: redis) -------------------------

    def runtime(self) -> tuple[list[bytes], list[bytes]]:
        """The run-time rules, ``first`` and ``last``, as a store keeps them."""

        def blob(entry: Entry) -> bytes:
            return json.dumps(
                {
                    "id": entry.id,
                    "added": entry.added,
                    "token": entry.token,
                    "rule": _plain(entry.rule.source),
                },
                separators=(",", ":"),
            ).encode()

        return [blob(e) for e in self.first], [blob(e) for e in self.last]

    def install(
        self,
        first: Sequence[bytes],
        last: Sequence[bytes],
        parse: Callable[[Mapping[str, Any]], Rule],
    ) -> None:
        """Make the store's run-time rules this book's (the file's stay).

        A blob that does not parse is a store written by another version:
        a RuleError names it."""

        def entry(raw: bytes) -> Entry:
            try:
                data = json.loads(raw)
                rule = parse(data["rule"])
                return self._entry(
                    rule,
                    str(data["id"]),
                    "runtime",
                    float(data["added"]),
                    str(data["token"]),
                )
            except (ValueError, KeyError, TypeError) as error:
                raise RuleError(
                    "rules", f"a shared rule is unreadable: {error}"
                ) from None

        self.first = [entry(b) for b in first]
        self.last = [entry(b) for b in last]
        numbers = [
            int(e.id.removeprefix("added-"))
            for e in (*self.first, *self.last)
            if e.id.startswith("added-") and e.id.removeprefix("added-").isdigit()
        ]
        self._added = max([self._added, *numbers])

    def _expire(self, now: float) -> None:
        for entries in (self.first, self.file, self.last):
            if any(e.expires is not None and now >= e.expires for e in entries):
                entries[:] = [
                    e for e in entries if e.expires is None or now < e.expires
                ]

    def match(
        self, ctx: RequestContext, now: float, claim: Claim | None = None
    ) -> Hit | None:
        """The first live rule whose conditions hold, or None.

        With a ``claim`` no counter moves: the hit is what it would be had the
        claim's earlier hits been committed (its ``count``, a sequence's step,
        ``times`` used up), and the claim records it for ``commit``.  Without
        one, the hit is committed at once.
        """
        if claim is None:
            claim = Claim()
            hit = self.match(ctx, now, claim)
            self.commit(claim, now)
            return hit
        if claim.recording:
            question = []
            for entry in self.entries(now):
                rule = entry.rule
                captures = rule.match.evaluate(ctx, rule.endpoints)
                if captures is not None:
                    question.append((entry, ctx, captures))
            claim.questions.append(question)
            return None
        for entries in (self.first, self.file, self.last):
            for entry in entries:
                if entry.expires is not None and now >= entry.expires:
                    continue
                earlier = claim._pending_on(entry)
                if entry.left is not None and entry.left <= earlier:
                    continue
                rule = entry.rule
                captures = rule.match.evaluate(ctx, rule.endpoints)
                if captures is None:
                    continue
                hit = _hit(entry, ctx, captures, entry.hits + earlier + 1)
                claim._record(entry, hit)
                return hit
        self._expire(now)
        return None

    @staticmethod
    def resolve(
        claim: Claim, picks: Sequence[tuple[int, int]]
    ) -> tuple[Hit | None, ...]:
        """A recording claim's hits, as a shared store picked them: per
        question, the candidate chosen (-1: none) and its hits after this."""
        hits: list[Hit | None] = []
        for candidates, (chosen, count) in zip(claim.questions, picks, strict=True):
            if chosen < 0 or chosen >= len(candidates):
                hits.append(None)
                continue
            entry, ctx, captures = candidates[chosen]
            hits.append(_hit(entry, ctx, captures, count))
        return tuple(hits)

    def commit(self, claim: Claim, now: float) -> None:
        """Apply the claim's hits not yet committed, in order.

        Each adds one to its entry's ``hits`` and takes one from its ``times``
        left; an entry at 0 leaves the book.  An entry no longer in it
        (deleted, replaced, reloaded) or expired by ``now`` is skipped.
        Committing again applies nothing new.
        """
        for entry in claim._take():
            if entry.expires is not None and now >= entry.expires:
                continue
            entries = self._holding(entry)
            if entries is None:
                continue
            entry.hits += 1
            if entry.left is not None:
                entry.left -= 1
                if entry.left <= 0:
                    entries[:] = [e for e in entries if e is not entry]

    def _holding(self, entry: Entry) -> list[Entry] | None:
        """The list that holds this very entry (not an equal one), if any."""
        for entries in (self.first, self.file, self.last):
            if any(e is entry for e in entries):
                return entries
        return None


def _hit(entry: Entry, ctx: RequestContext, captures: Captures, count: int) -> Hit:
    rule = entry.rule
    answer = rule.answer
    if isinstance(answer, SequenceAnswer):
        answer = answer.step(count)
    return Hit(
        rule=entry.id,
        answer=answer,
        context=ctx,
        captures=captures,
        count=count,
        chunking=rule.chunking,
        interval_ms=rule.interval_ms,
        ttft_ms=rule.ttft_ms,
        fault=rule.fault,
        fault_probability=rule.fault_probability,
    )


def _digest(rule: Rule) -> str:
    """A file rule's token: the same rule in every process's file, the same
    counter; a changed rule, a fresh one."""
    text = json.dumps(_plain(rule.source), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
