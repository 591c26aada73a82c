"""Faults: which request gets one, and how a reply's events are broken by it.

Pure: the decision draws from a seeded ``random.Random``, and breaking a
reply is a transformation of its ``(due, bytes)`` events; delivery only acts
out the two things bytes cannot say (reset the connection, close it early).
"""

from __future__ import annotations

import fnmatch
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from mockai_tw.config import FaultConfig
from mockai_tw.engine.plan import CLOSE, RESET
from mockai_tw.errors import ApiError
from mockai_tw.fault_kinds import FAULT_KINDS

_HTTP: Mapping[str, tuple[int, str, str, str | None]] = {
    "http_500": (
        500,
        "server_error",
        "The server had an error while processing your request. Sorry about that!",
        None,
    ),
    "http_502": (502, "server_error", "Bad gateway.", None),
    "http_503": (
        503,
        "server_error",
        "The engine is currently overloaded, please try again later.",
        "1",
    ),
    "http_504": (504, "server_error", "Gateway timeout.", None),
    "overloaded": (529, "overloaded_error", "Overloaded. Please try again later.", "1"),
}


@dataclass(frozen=True)
class Fault:
    kind: str
    stall_s: float = 0.0
    cut_after: int = 0
    trickle_bytes: int = 8
    trickle_interval_s: float = 0.05

    @property
    def error(self) -> ApiError | None:
        """The HTTP error this fault answers with, if it is one."""
        spec = _HTTP.get(self.kind)
        if spec is None:
            return None
        status, kind, message, retry_after = spec
        headers = {"retry-after": retry_after} if retry_after else {}
        return ApiError(status, message, type=kind, headers=headers)


class FaultInjector:
    """Decides faults from the config; counts what it dealt."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.counts: dict[str, int] = {}

    def _settings(self, model: str) -> tuple[float, Mapping[str, float]]:
        config = self.config
        probability, kinds = config.probability, config.kinds
        entry = config.models.get(model) or next(
            (v for k, v in config.models.items() if fnmatch.fnmatchcase(model, k)),
            None,
        )
        if entry is not None:
            if entry.probability is not None:
                probability = entry.probability
            if entry.kinds is not None:
                kinds = entry.kinds
        return probability, kinds

    def make(self, kind: str) -> Fault:
        config = self.config
        self.counts[kind] = self.counts.get(kind, 0) + 1
        return Fault(
            kind,
            stall_s=config.stall_s,
            cut_after=config.cut_after,
            trickle_bytes=config.trickle_bytes,
            trickle_interval_s=config.trickle_interval_ms / 1000.0,
        )

    def decide(self, model: str, requested: str | None = None) -> Fault | None:
        """The fault for this request: the one asked for, or one drawn by chance."""
        if requested:
            if requested not in FAULT_KINDS:
                known = ", ".join(FAULT_KINDS)
                raise ApiError(
                    400,
                    f"Unknown fault {requested!r} in x-mock-fault; known: {known}.",
                    param=None,
                )
            return self.make(requested)
        probability, kinds = self._settings(model)
        if probability <= 0 or self.rng.random() >= probability:
            return None
        names = list(kinds) or list(FAULT_KINDS)
        weights = [kinds.get(n, 1.0) for n in names] if kinds else None
        if weights is not None and not any(weights):
            return None
        return self.make(self.rng.choices(names, weights)[0])


def _malformed(event: bytes) -> bytes:
    """The event's data line cut mid-JSON: invalid, but still framed."""
    head, _, payload = event.partition(b"data: ")
    body = payload.rstrip(b"\n")
    return head + b"data: " + body[: max(1, len(body) // 2)] + b"\n\n"


def _dribble(
    data: bytes, due: float, fault: Fault, offset: float
) -> Iterator[tuple[float, bytes]]:
    for i, start in enumerate(range(0, len(data), fault.trickle_bytes)):
        yield (
            due + offset + i * fault.trickle_interval_s,
            data[start : start + fault.trickle_bytes],
        )


def break_events(
    events: Iterator[tuple[float, bytes]], fault: Fault | None
) -> Iterator[Any]:
    """The reply's events as ``fault`` delivers them (unchanged when None)."""
    if fault is None or fault.kind not in (
        "cut_reset",
        "cut_close",
        "malformed",
        "trickle",
        "stall",
    ):
        yield from events
        return
    if fault.kind == "stall":
        if fault.stall_s == 0:
            yield float("inf"), RESET  # silence until the client gives up
            return
        for due, data in events:
            yield due + fault.stall_s, data
        return
    offset = 0.0
    for sent, (due, data) in enumerate(events):
        if fault.kind == "trickle":
            pieces = list(_dribble(data, due, fault, offset))
            offset = pieces[-1][0] - due if pieces else offset
            yield from pieces
            continue
        if sent < fault.cut_after:
            yield due, data
            continue
        if fault.kind == "malformed":
            yield due, _malformed(data)
            yield from ((d, b) for d, b in events)
            return
        yield due, RESET if fault.kind == "cut_reset" else CLOSE
        return


def break_body(body: bytes, delay_s: float, fault: Fault | None) -> Iterator[Any]:
    """A non-streamed body as ``fault`` delivers it, after ``delay_s``."""
    if fault is not None and fault.kind in ("cut_reset", "cut_close"):
        # Headers promise the whole body; half of it arrives.
        yield delay_s, body[: len(body) // 2]
        yield delay_s, RESET if fault.kind == "cut_reset" else CLOSE
        return
    if fault is not None and fault.kind == "malformed":
        body = body[: max(1, len(body) // 2)] + b" " * (len(body) - len(body) // 2)
    yield from break_events(iter([(delay_s, body)]), fault)
