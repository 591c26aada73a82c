"""The faults a reply can be dealt, one table from kind to behaviour.

A leaf every layer may import (it imports nothing of ours): the config and
the rules validate names against it, the engine breaks a reply's events by
it, and the pipeline reads what a kind does before headers.  A new kind is
one entry in ``KINDS``.

A reply's events are ``(due, bytes | Action)`` pairs, ``due`` counted in
seconds from the start of the reply; an ``Action`` is what delivery does at
that point instead of writing (reset or close the connection).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass


class Action:
    """A stream event that is not bytes: what delivery does at that point."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Action({self.name})"


#: Abort the connection (TCP reset), or finish the response as it stands.
RESET = Action("reset")
CLOSE = Action("close")

Event = tuple[float, bytes | Action]
Events = Iterator[Event]


@dataclass(frozen=True)
class Settings:
    """How hard a fault bites (``faults.*`` in the config)."""

    stall_s: float = 30.0
    cut_after: int = 3
    trickle_bytes: int = 8
    trickle_interval_s: float = 0.05


@dataclass(frozen=True)
class HttpAnswer:
    """An error status sent instead of the reply, before any header."""

    status: int
    type: str
    message: str
    retry_after: str | None = None


# --- how a kind breaks a stream or a body ------------------------------------


def _stall(events: Events, s: Settings) -> Events:
    if s.stall_s == 0:
        yield float("inf"), RESET  # silence until the client gives up
        return
    for due, data in events:
        yield due + s.stall_s, data


def _dribble(data: bytes | Action, due: float, s: Settings, offset: float) -> Events:
    if isinstance(data, Action):
        yield due + offset, data
        return
    for i, start in enumerate(range(0, len(data), s.trickle_bytes)):
        yield (
            due + offset + i * s.trickle_interval_s,
            data[start : start + s.trickle_bytes],
        )


def _trickle(events: Events, s: Settings) -> Events:
    offset = 0.0
    for due, data in events:
        pieces = list(_dribble(data, due, s, offset))
        offset = pieces[-1][0] - due if pieces else offset
        yield from pieces


def _cut(action: Action) -> Callable[[Events, Settings], Events]:
    def cut(events: Events, s: Settings) -> Events:
        for sent, (due, data) in enumerate(events):
            if sent >= s.cut_after:
                yield due, action
                return
            yield due, data

    return cut


def _half_event(event: bytes) -> bytes:
    """The event's data line cut mid-JSON: invalid, but still framed."""
    head, _, payload = event.partition(b"data: ")
    body = payload.rstrip(b"\n")
    return head + b"data: " + body[: max(1, len(body) // 2)] + b"\n\n"


def _malformed(events: Events, s: Settings) -> Events:
    for sent, (due, data) in enumerate(events):
        if sent >= s.cut_after and isinstance(data, bytes):
            yield due, _half_event(data)
            yield from events
            return
        yield due, data


def _cut_body(action: Action) -> Callable[[bytes, float, Settings], Events]:
    def cut(body: bytes, delay_s: float, s: Settings) -> Events:
        # Headers promise the whole body; half of it arrives.
        yield delay_s, body[: len(body) // 2]
        yield delay_s, action

    return cut


def _malformed_body(body: bytes, delay_s: float, s: Settings) -> Events:
    half = len(body) // 2
    yield delay_s, body[: max(1, half)] + b" " * (len(body) - half)


def _as_body(
    stream: Callable[[Events, Settings], Events],
) -> Callable[[bytes, float, Settings], Events]:
    def body(data: bytes, delay_s: float, s: Settings) -> Events:
        return stream(iter([(delay_s, data)]), s)

    return body


@dataclass(frozen=True)
class FaultKind:
    """What one kind does at each step; None where it leaves the step alone."""

    name: str
    # Before headers: answer with this error instead of the reply ...
    answer: HttpAnswer | None = None
    # ... or drop the connection without a byte.
    drop: bool = False
    # A streamed reply's events, broken.
    stream: Callable[[Events, Settings], Events] | None = None
    # A non-streamed JSON body (sent after ``delay_s``), broken.
    body: Callable[[bytes, float, Settings], Events] | None = None

    @property
    def before_headers(self) -> bool:
        return self.answer is not None or self.drop


_SORRY = "The server had an error while processing your request. Sorry about that!"

KINDS: Mapping[str, FaultKind] = {
    k.name: k
    for k in (
        FaultKind("http_500", HttpAnswer(500, "server_error", _SORRY)),
        FaultKind("http_502", HttpAnswer(502, "server_error", "Bad gateway.")),
        FaultKind(
            "http_503",
            HttpAnswer(
                503,
                "server_error",
                "The engine is currently overloaded, please try again later.",
                "1",
            ),
        ),
        FaultKind("http_504", HttpAnswer(504, "server_error", "Gateway timeout.")),
        FaultKind(
            "overloaded",
            HttpAnswer(
                529, "overloaded_error", "Overloaded. Please try again later.", "1"
            ),
        ),
        FaultKind("stall", stream=_stall, body=_as_body(_stall)),
        FaultKind("drop", drop=True),
        FaultKind("cut_reset", stream=_cut(RESET), body=_cut_body(RESET)),
        FaultKind("cut_close", stream=_cut(CLOSE), body=_cut_body(CLOSE)),
        FaultKind("malformed", stream=_malformed, body=_malformed_body),
        FaultKind("trickle", stream=_trickle, body=_as_body(_trickle)),
    )
}

FAULT_KINDS: tuple[str, ...] = tuple(KINDS)


def break_stream(events: Events, kind: str | None, s: Settings) -> Events:
    """A streamed reply's events as ``kind`` delivers them."""
    fault = KINDS.get(kind) if kind else None
    if fault is None or fault.stream is None:
        return events
    return fault.stream(events, s)


def break_body(body: bytes, delay_s: float, kind: str | None, s: Settings) -> Events:
    """A non-streamed body as ``kind`` delivers it, after ``delay_s``."""
    fault = KINDS.get(kind) if kind else None
    if fault is None or fault.body is None:
        return iter([(delay_s, body)])
    return fault.body(body, delay_s, s)


__all__ = [
    "CLOSE",
    "FAULT_KINDS",
    "KINDS",
    "RESET",
    "Action",
    "Event",
    "FaultKind",
    "HttpAnswer",
    "Settings",
    "break_body",
    "break_stream",
]
