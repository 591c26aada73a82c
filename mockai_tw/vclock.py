"""A clock a test drives: the reactor's time, plus jumps the test asks for.

``DrivenClock`` is an ``IReactorTime`` that runs with real time (so streams,
paced on it, keep flowing) and that ``advance(seconds)`` moves forward at
once, running every timer that falls due -- batch stages, rule ``ttl_s``,
rate-limit windows, file expiry -- without sleeping.  Its timers sit in
one heap behind a single reactor timer, set for the earliest of them.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

log = Logger()


@implementer(IDelayedCall)
class DrivenCall:
    """One timer of a ``DrivenClock``."""

    def __init__(
        self,
        clock: DrivenClock,
        time: float,
        f: Callable[..., Any],
        args: tuple[Any, ...],
        kw: dict[str, Any],
    ) -> None:
        self.clock = clock
        self.time = time
        self.f = f
        self.args = args
        self.kw = kw
        self.cancelled = False
        self.called = False

    def getTime(self) -> float:
        return self.time

    def active(self) -> bool:
        return not (self.cancelled or self.called)

    def cancel(self) -> None:
        if not self.active():
            from twisted.internet.error import AlreadyCalled, AlreadyCancelled

            raise AlreadyCancelled() if self.cancelled else AlreadyCalled()
        self.cancelled = True
        self.clock._arm()

    def delay(self, seconds: float) -> None:
        self.reset(self.time + seconds - self.clock.seconds())

    def reset(self, seconds: float) -> None:
        if not self.active():
            from twisted.internet.error import AlreadyCalled, AlreadyCancelled

            raise AlreadyCancelled() if self.cancelled else AlreadyCalled()
        # The old heap entry goes stale (its time no longer matches).
        self.time = self.clock.seconds() + max(0.0, seconds)
        self.clock._push(self)


@implementer(IReactorTime)
class DrivenClock:
    """Real time from ``reactor``, moved forward by ``advance``."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.offset = 0.0
        self._heap: list[tuple[float, int, DrivenCall]] = []
        self._order = itertools.count()
        self._timer: Any = None

    def seconds(self) -> float:
        return float(self.reactor.seconds()) + self.offset

    def callLater(
        self,
        delay: float,
        callable: Callable[..., Any],  # IReactorTime's own name
        *args: object,
        **kwargs: object,
    ) -> IDelayedCall:
        call = DrivenCall(
            self, self.seconds() + max(0.0, delay), callable, args, dict(kwargs)
        )
        self._push(call)
        return call

    def _push(self, call: DrivenCall) -> None:
        heapq.heappush(self._heap, (call.time, next(self._order), call))
        self._arm()

    def _live(self, entry: tuple[float, int, DrivenCall]) -> bool:
        return entry[2].active() and entry[2].time == entry[0]

    def getDelayedCalls(self) -> list[IDelayedCall]:
        return [e[2] for e in self._heap if self._live(e)]

    def advance(self, seconds: float) -> None:
        """Move time forward now; every timer due by then runs, in order."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.offset += seconds
        self._run()

    def _fired(self) -> None:
        self._timer = None
        self._run()

    def _run(self) -> None:
        while self._heap:
            time, _, call = self._heap[0]
            if not self._live(self._heap[0]):
                heapq.heappop(self._heap)
                continue
            if time > self.seconds():
                break
            heapq.heappop(self._heap)
            call.called = True
            try:
                call.f(*call.args, **call.kw)
            except Exception:
                log.failure("mockai: a timer on the driven clock failed")
        self._arm()

    def _arm(self) -> None:
        while self._heap and not self._live(self._heap[0]):
            heapq.heappop(self._heap)
        if not self._heap:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None
            return
        delay = max(0.0, self._heap[0][0] - self.seconds())
        if self._timer is not None and self._timer.active():
            self._timer.reset(delay)
        else:
            self._timer = self.reactor.callLater(delay, self._fired)

    def stop(self) -> None:
        """No more real timer (the test is over)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
