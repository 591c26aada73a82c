"""The pipeline's events, for the journal, metrics and tests to subscribe to.

Pure: the web layer and delivery emit; subscribers never reach into the Site
or the ticker.  Every event's first argument is the request it concerns.
A subscriber that raises is reported to ``on_failure`` (with the event, the
exception and the request) and the request goes on as if it had not been there.

| event | arguments | when |
|---|---|---|
| ``queued`` | request | it passed every check but waits for a capacity slot |
| ``admitted`` | request | it passed every check and runs now (maybe after ``queued``) |
| ``first_byte`` | request, status | its status is decided and headers go out |
| ``first_chunk`` | request, bytes written, stream | a paced reply's first write |
| ``chunk`` | request, bytes written | a streamed write (paced replies only) |
| ``paused`` / ``resumed`` | request | the client stopped / started reading |
| ``last_byte`` | request | the response is finished |
| ``disconnected`` | request | the client went away before the end |
| ``error`` | request, ApiError | an error body is sent |

A ``first_chunk`` listener may give the stream a ``Gaps`` (below): the
stream then times each later write into it, with no event per chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

EVENTS = (
    "queued",
    "admitted",
    "first_byte",
    "first_chunk",
    "chunk",
    "paused",
    "resumed",
    "last_byte",
    "disconnected",
    "error",
)

Listener = Callable[..., None]


class Gaps:
    """Where the gaps between a stream's writes go, for whoever measures
    them (metrics' inter-token histogram): one list shared by the streams of
    a kind, handed to ``fold`` once it holds ``batch`` amounts.

    A listener gives a stream one at its first write (the ``first_chunk``
    hook); from then on each write costs a clock read and an append, not
    a hook and a lookup per chunk (a fifth of a paced chunk's cost).
    """

    __slots__ = ("amounts", "batch", "fold", "seconds")

    def __init__(
        self,
        seconds: Callable[[], float],
        fold: Callable[[list[float]], None],
        batch: int,
    ) -> None:
        self.seconds = seconds
        self.fold = fold
        self.batch = batch
        self.amounts: list[float] = []


class Hooks:
    """Listeners per event; emitting to an event nobody hears costs a lookup.

    ``listeners`` is the list per event; ``emit`` walks a tuple of it made
    when a listener comes or goes, not a copy per emit (listeners change at
    a reload, events happen several times per request).
    """

    def __init__(
        self, on_failure: Callable[[str, BaseException, Any], None] | None = None
    ) -> None:
        self.listeners: dict[str, list[Listener]] = {name: [] for name in EVENTS}
        self._calls: dict[str, tuple[Listener, ...]] = dict.fromkeys(EVENTS, ())
        self.on_failure = on_failure

    def on(self, event: str, listener: Listener) -> None:
        self.listeners[event].append(listener)
        self._calls[event] = tuple(self.listeners[event])

    def off(self, event: str, listener: Listener) -> None:
        listeners = self.listeners[event]
        if listener in listeners:
            listeners.remove(listener)
        self._calls[event] = tuple(listeners)

    def heard(self, event: str) -> bool:
        """Whether anyone listens (so the caller can skip building arguments)."""
        return bool(self._calls[event])

    def emit(self, event: str, *args: Any) -> None:
        for listener in self._calls[event]:
            try:
                listener(*args)
            except Exception as failure:
                if self.on_failure is not None:
                    self.on_failure(event, failure, args[0] if args else None)
