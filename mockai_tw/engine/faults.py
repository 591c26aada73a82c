"""Faults: which request gets one, decided in one place.

Pure: the odds are drawn from a seeded ``random.Random``.  What a kind does
(answer before headers, break a body, break a stream) is the table in
``mockai_tw.fault_kinds``; this module only chooses the kind.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from mockai_tw.config import FaultConfig
from mockai_tw.errors import ApiError
from mockai_tw.fault_kinds import (
    FAULT_KINDS,
    KINDS,
    Event,
    Settings,
    break_stream,
)
from mockai_tw.fault_kinds import break_body as _break_body
from mockai_tw.globs import for_model


@dataclass(frozen=True)
class Fault:
    kind: str
    settings: Settings = field(default_factory=Settings)

    @property
    def before_headers(self) -> bool:
        return KINDS[self.kind].before_headers

    @property
    def drop(self) -> bool:
        return KINDS[self.kind].drop

    @property
    def error(self) -> ApiError | None:
        """The HTTP error this fault answers with, if it is one."""
        answer = KINDS[self.kind].answer
        if answer is None:
            return None
        headers = {"retry-after": answer.retry_after} if answer.retry_after else {}
        return ApiError(
            answer.status, answer.message, type=answer.type, headers=headers
        )


def unknown_fault(name: str) -> ApiError:
    known = ", ".join(FAULT_KINDS)
    return ApiError(
        400, f"Unknown fault {name!r} in x-mock-fault; known: {known}.", param=None
    )


class FaultInjector:
    """Decides faults from the config; counts what it dealt."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.counts: dict[str, int] = {}
        self.settings = Settings(
            stall_s=config.stall_s,
            cut_after=config.cut_after,
            trickle_bytes=config.trickle_bytes,
            trickle_interval_s=config.trickle_interval_ms / 1000.0,
        )
        # ``unprompted``'s answer, for the config it was worked out from.
        self._unprompted: tuple[FaultConfig | None, bool] = (None, True)

    def _odds(self, model: str) -> tuple[float, Mapping[str, float]]:
        config = self.config
        probability, kinds = config.probability, config.kinds
        entry = for_model(config.models, model)
        if entry is not None:
            if entry.probability is not None:
                probability = entry.probability
            if entry.kinds is not None:
                kinds = entry.kinds
        return probability, kinds

    def unprompted(self) -> bool:
        """Whether ``decide`` may deal a fault that no header or rule asked
        for: False when every odds the config gives is 0, so ``decide(model)``
        returns None without a draw and the pipeline need not ask."""
        config = self.config
        known = self._unprompted
        if known[0] is not config:
            odds = config.probability > 0 or any(
                entry.probability is not None and entry.probability > 0
                for entry in config.models.values()
            )
            known = self._unprompted = (config, odds)
        return known[1]

    def make(self, kind: str) -> Fault:
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return Fault(kind, self.settings)

    def decide(
        self,
        model: str,
        requested: str | None = None,
        scripted: str | None = None,
        scripted_odds: float = 1.0,
    ) -> Fault | None:
        """The fault for this request, the one place that chooses it.

        A header's request (``requested``, already allowed by the config)
        wins; then a rule's (``scripted``, dealt with ``scripted_odds``);
        then one drawn by the configured odds.
        """
        if requested:
            if requested not in KINDS:
                raise unknown_fault(requested)
            return self.make(requested)
        if scripted:
            if scripted_odds >= 1 or self.rng.random() < scripted_odds:
                return self.make(scripted)
            return None
        probability, kinds = self._odds(model)
        if probability <= 0 or self.rng.random() >= probability:
            return None
        names = list(kinds) or list(FAULT_KINDS)
        weights = [kinds.get(n, 1.0) for n in names] if kinds else None
        if weights is not None and not any(weights):
            return None
        return self.make(self.rng.choices(names, weights)[0])


def break_events(events: Iterator[Event], fault: Fault | None) -> Iterator[Any]:
    """The reply's events as ``fault`` delivers them (unchanged when None)."""
    if fault is None:
        return events
    return break_stream(events, fault.kind, fault.settings)


def break_body(body: bytes, delay_s: float, fault: Fault | None) -> Iterator[Any]:
    """A non-streamed body as ``fault`` delivers it, after ``delay_s``."""
    if fault is None:
        return iter([(delay_s, body)])
    return _break_body(body, delay_s, fault.kind, fault.settings)
