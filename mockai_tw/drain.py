"""A graceful stop: readiness off first, new connections for a grace period,
then none; what is in flight finishes, up to a deadline; what is left is cut
(a stream ends with an error event) and closed.

The sequence runs on an injected clock (``IReactorTime``), so it is tested on
``task.Clock``.  It knows connections (the Site's channels) and open streams
(the ticker), not endpoints or what they answer.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable
from typing import Any, Protocol

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from mockai_tw.config import ShutdownConfig
from mockai_tw.delivery import Ticker
from mockai_tw.errors import ApiError

log = Logger()

# What ``/ready`` says.
STARTING = "starting"
READY = "ready"
DRAINING = "draining"

# After the cut, how long a connection may take to send what it was last
# given (the error event, the end of a response) before it is aborted; and
# after a cut at once (a second signal), which must not keep anyone waiting.
CLOSE_TIMEOUT_S = 2.0
NOW_CLOSE_TIMEOUT_S = 0.5

# The drain's phases.
_IDLE = "idle"  # serving; no stop asked for
_GRACE = "grace"  # /ready is 503, new connections still accepted
_DRAINING = "draining"  # no new connections; what is in flight finishes
_CLOSING = "closing"  # cut: what is left is closing, then aborted
_ENDING = "ending"  # every connection is gone; the listeners are stopping
_DONE = "done"


class Readiness:
    """Whether this process should be sent new work (``/ready``): ``starting``
    until its listener is up, then ``ready``, then ``draining`` once a stop
    begins.  Liveness (``/health``) is not this: it stays on throughout."""

    def __init__(self) -> None:
        self.state = STARTING

    @property
    def ready(self) -> bool:
        return self.state == READY

    def serving(self) -> None:
        """The listener is up."""
        if self.state == STARTING:
            self.state = READY

    def stopping(self) -> None:
        self.state = DRAINING


def shutting_down() -> ApiError:
    """What a stream cut by the stop says in its last event."""
    return ApiError(
        503,
        "The server is shutting down and ended this response before it was"
        " complete. Please retry your request.",
        type="server_error",
        code="server_shutting_down",
    )


class Connections(Protocol):
    """What the drain needs of the Site (``MockSite`` has it)."""

    # Each open connection: a ``GuardedChannel`` (web/connections.py).
    channels: set[Any]
    # Set when the stop begins: no response keeps its connection alive.
    draining: bool

    def quiet(self) -> defer.Deferred[None]: ...


StopListening = Callable[[], "defer.Deferred[None] | None"]


class Drain:
    """The graceful stop of one server, from ``start()`` to ``finished()``.

    ``start`` (a service's ``stopService``) turns readiness off and closes idle
    keep-alive connections at once; after ``shutdown.ready_grace_s`` (none if
    the server never was ready) the listeners stop; the drain is over when no
    connection is left, or at ``shutdown.drain_timeout_s`` after that, when
    every open stream is ended with a ``server_shutting_down`` error event and
    every connection is closed (aborted if it has not gone within
    ``CLOSE_TIMEOUT_S``).  ``now()`` (a second signal) skips to the end.
    """

    def __init__(
        self,
        clock: IReactorTime,
        site: Connections,
        ticker: Ticker,
        readiness: Readiness,
        settings: Callable[[], ShutdownConfig],
    ) -> None:
        self.clock = clock
        self.site = site
        self.ticker = ticker
        self.readiness = readiness
        self.settings = settings
        self.phase = _IDLE
        # Streams ended early and connections aborted, for logs and tests.
        self.cut = 0
        self.aborted = 0
        self._hurry = False
        self._timer: IDelayedCall | None = None
        self._listeners: list[StopListening] = []
        self._unlistened: list[defer.Deferred[Any]] = []
        self._waiting: list[defer.Deferred[None]] = []

    @property
    def started(self) -> bool:
        return self.phase != _IDLE

    def finished(self) -> defer.Deferred[None]:
        """Fires once the stop is over (at once if it is)."""
        if self.phase == _DONE:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._waiting.append(d)
        return d

    def start(
        self, stop_listening: StopListening | None = None
    ) -> defer.Deferred[None]:
        """Begin the stop (once: later calls add their listener and wait)."""
        if stop_listening is not None:
            self._listeners.append(stop_listening)
        if self.phase == _IDLE:
            self._begin()
        elif self.phase != _GRACE:
            self._stop_listening()
        return self.finished()

    def now(self) -> None:
        """Stop at once: cut what is open and end (a second signal)."""
        if self.phase in (_ENDING, _DONE):
            return
        self._hurry = True
        if self.phase == _IDLE:
            # The stop to come cuts at once.
            return
        self._cancel_timer()
        log.info(
            "mockai: stopping now: {streams} streams cut, {connections}"
            " connections closed",
            streams=len(self.ticker.streams),
            connections=len(self.site.channels),
        )
        if self.phase == _GRACE:
            self.phase = _DRAINING
            self._stop_listening()
        self._cut()

    # The sequence

    def _begin(self) -> None:
        settings = self.settings()
        was_ready = self.readiness.ready
        self.readiness.stopping()
        self.site.draining = True
        self._close_idle()
        grace = settings.ready_grace_s if was_ready and not self._hurry else 0.0
        log.info(
            "mockai: stopping: /ready answers 503 from now; accepting connections"
            " for {grace:g}s more, then up to {timeout:g}s for requests in flight",
            grace=grace,
            timeout=settings.drain_timeout_s,
        )
        if grace > 0:
            self.phase = _GRACE
            self._timer = self.clock.callLater(grace, self._stop_accepting)
        else:
            self._stop_accepting()

    def _stop_accepting(self) -> None:
        self._timer = None
        self.phase = _DRAINING
        self._stop_listening()
        # Connections opened during the grace period and idle since.
        self._close_idle()
        if self._hurry:
            self._cut()
            return
        timeout = self.settings().drain_timeout_s
        requests = sum(len(getattr(c, "requests", ())) for c in self.site.channels)
        log.info(
            "mockai: no longer accepting connections; {requests} requests in"
            " flight ({streams} streams) have up to {timeout:g}s to finish",
            requests=requests,
            streams=len(self.ticker.streams),
            timeout=timeout,
        )
        if not self.site.channels:
            self._end()
        elif timeout <= 0:
            self._deadline()
        else:
            self._timer = self.clock.callLater(timeout, self._deadline)
            self.site.quiet().addCallback(self._quiet)

    def _quiet(self, _: object) -> None:
        if self.phase == _DRAINING:
            log.info("mockai: drained: every request in flight finished")
        if self.phase in (_DRAINING, _CLOSING):
            self._end()

    def _deadline(self) -> None:
        self._timer = None
        log.info(
            "mockai: drain timeout ({timeout:g}s): cutting {streams} streams and"
            " closing {connections} connections",
            timeout=self.settings().drain_timeout_s,
            streams=len(self.ticker.streams),
            connections=len(self.site.channels),
        )
        self._cut()

    def _cut(self) -> None:
        """End every open stream with the error event, close every connection;
        abort what has not gone after ``CLOSE_TIMEOUT_S`` (in a hurry,
        ``NOW_CLOSE_TIMEOUT_S``)."""
        self.phase = _CLOSING
        error = shutting_down()
        for stream in list(self.ticker.streams):
            self.cut += 1
            try:
                stream.end(error)
            except Exception:
                log.failure("mockai: ending a stream at the stop failed")
                stream.stopProducing()
        for channel in list(self.site.channels):
            transport = getattr(channel, "transport", None)
            if transport is not None and not transport.disconnecting:
                channel.loseConnection()
        self._cancel_timer()
        if not self.site.channels:
            self._end()
            return
        bound = NOW_CLOSE_TIMEOUT_S if self._hurry else CLOSE_TIMEOUT_S
        self._timer = self.clock.callLater(bound, self._hang_up)
        self.site.quiet().addCallback(self._quiet)

    def _hang_up(self) -> None:
        self._timer = None
        left = list(self.site.channels)
        if left:
            log.info(
                "mockai: {connections} connections did not close in"
                " {seconds:g}s; aborting them",
                connections=len(left),
                seconds=NOW_CLOSE_TIMEOUT_S if self._hurry else CLOSE_TIMEOUT_S,
            )
        for channel in left:
            transport = getattr(channel, "transport", None)
            if transport is not None:
                self.aborted += 1
                transport.abortConnection()
        self._end()

    def _end(self) -> None:
        if self.phase in (_ENDING, _DONE):
            return
        self._cancel_timer()
        self.phase = _ENDING
        self.ticker.stop()
        self._stop_listening()
        unlistened, self._unlistened = self._unlistened, []
        gathered = defer.DeferredList(unlistened, consumeErrors=True)
        gathered.addCallback(self._done)

    def _done(self, _: object) -> None:
        self.phase = _DONE
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    # Helpers

    def _stop_listening(self) -> None:
        listeners, self._listeners = self._listeners, []
        for stop in listeners:
            d = defer.maybeDeferred(stop)
            d.addErrback(self._unlisten_failed)
            self._unlistened.append(d)

    def _unlisten_failed(self, failure: Failure) -> None:
        log.failure("mockai: stopping a listener failed", failure)

    def _close_idle(self) -> None:
        for channel in list(self.site.channels):
            close = getattr(channel, "close_when_idle", None)
            if close is not None:
                close()

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()


# The signals that stop the server: the first drains, a second ends at once.
STOP_SIGNALS = ("SIGTERM", "SIGINT")


class StopOnSignal(Service):
    """``SIGTERM`` and ``SIGINT``: the first stops the reactor, which runs the
    drain (the services' ``stopService``); a second ends the drain at once.

    These replace the reactor's own handlers, which stop it too but then make
    twistd kill itself with the signal, so that a stop, however clean, would
    not exit 0.  The handlers only hand the work to the reactor thread; they
    are installed when the service starts (in the main thread only: Python
    allows no other), and the previous ones come back once the drain is over.
    A signal already ignored (``SIG_IGN``) is left ignored.  Add this service
    before the listeners: a ``MultiService`` stops its children last first,
    so the drain has begun when this one stops.
    """

    def __init__(self, drain: Drain, reactor: Any) -> None:
        self.drain = drain
        self.reactor = reactor
        self.previous: dict[int, Any] = {}
        self.signalled = False
        # Signals to handle: those not ignored when the service started.
        self.numbers: list[int] = []
        # Before the reactor runs: what came, and the handlers found.
        self.early: list[int] = []
        self.original: dict[int, Any] = {}

    def startService(self) -> None:
        super().startService()
        if threading.current_thread() is not threading.main_thread():
            return
        for name in STOP_SIGNALS:
            number = getattr(signal, name, None)
            if number is None or signal.getsignal(number) == signal.SIG_IGN:
                # Ignored on purpose (a worker ignores the terminal's SIGINT:
                # its parent forwards one SIGTERM): it stays ignored.
                continue
            self.numbers.append(number)
            # Until the reactor runs, a stop is only noted (Python's default
            # would kill the process before any drain could begin).
            self.original[number] = signal.signal(number, self._noted)
        # twistd starts its services before the reactor runs, and the reactor
        # installs its own handlers as it starts: these must come after.
        self.reactor.callWhenRunning(self._install)

    def _noted(self, signum: int, frame: Any) -> None:
        self.early.append(signum)

    def _install(self) -> None:
        if not self.running:
            return
        for number in self.numbers:
            if number in self.previous:
                continue
            found = signal.signal(number, self._signal)
            # The reactor's own handler, or (if it installed none) the one
            # found before this service started.
            self.previous[number] = (
                self.original[number] if found == self._noted else found
            )
        early, self.early = self.early, []
        for signum in early:
            self.received(signum)

    def _signal(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.received, signum)

    def received(self, signum: int) -> None:
        """A stop signal, on the reactor thread."""
        name = signal.Signals(signum).name
        if self.signalled or self.drain.started:
            log.info("mockai: {signal} again: stopping at once", signal=name)
            self.drain.now()
            return
        self.signalled = True
        log.info(
            "mockai: {signal} received: stopping gracefully (send it again to"
            " stop at once)",
            signal=name,
        )
        # Stopping already, by other means: the drain is on its way.
        with contextlib.suppress(ReactorNotRunning):
            self.reactor.stop()

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        if not self.drain.started:
            self._restore()
            return None
        d = self.drain.finished()
        d.addCallback(lambda _: self._restore())
        return d

    def _restore(self) -> None:
        previous, self.previous = self.previous, {}
        original, self.original = self.original, {}
        for number, handler in {**original, **previous}.items():
            signal.signal(number, handler)
