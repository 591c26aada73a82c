"""Connection limits: a deadline per request, an idle timeout, a cap on open
connections, and accept failures (EMFILE) logged once per episode.

Twisted's own channel timeout is an idle timer that every received byte
resets, so a client trickling one header byte a second holds its descriptor
forever. Here the deadline runs from a request's first byte to its last and
is never reset; what happens after (handling, a long SSE stream) is not timed.
Knows HTTP/1.1 framing and Twisted's ports, not what the API answers.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from twisted.internet import protocol, tcp
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import (
    IDelayedCall,
    IListeningPort,
    IProtocolFactory,
    IReactorTime,
)
from twisted.internet.posixbase import PosixReactorBase
from twisted.logger import ILogObserver, LogEvent, Logger, globalLogPublisher
from twisted.protocols import basic
from twisted.python.failure import Failure
from twisted.web import http
from twisted.web.http import _IdentityTransferDecoder
from twisted.web.http_headers import Headers
from twisted.web.iweb import INonQueuedRequestFactory
from zope.interface import implementer

from mockai_tw.config import HttpConfig
from mockai_tw.errors import ApiError
from mockai_tw.web.heads import Head, read_head
from mockai_tw.wire.errors import error_body

log = Logger()


class HttpLimits(Protocol):
    """What this module reads from ``http.*`` (``HttpConfig`` has it)."""

    @property
    def request_timeout_s(self) -> float: ...
    @property
    def idle_timeout_s(self) -> float: ...
    @property
    def max_connections(self) -> int: ...


_DEFAULTS = HttpConfig()


def default_limits() -> HttpLimits:
    return _DEFAULTS


def channel_factory(
    limits: Callable[[], HttpLimits], clock: IReactorTime
) -> Callable[[], Any]:
    """What a Site's ``protocol`` should be: it builds guarded channels."""
    return lambda: GuardedChannel(limits, clock)


def request_timeout(limit_s: float) -> ApiError:
    return ApiError(
        408,
        f"The request was not received in time: its headers and body must"
        f" arrive within {limit_s:g} seconds.",
        code="request_timeout",
    )


def timeout_response(limit_s: float) -> bytes:
    """A whole HTTP/1.1 408 with the OpenAI error body (the channel is closed
    after it, so it is written raw, as Twisted writes its own 400)."""
    body = error_body(request_timeout(limit_s))
    return (
        b"HTTP/1.1 408 Request Timeout\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: %d\r\n"
        b"Connection: close\r\n\r\n" % len(body)
    ) + body


# What a channel is doing, for its one timer.
_OPENED = "opened"  # connected, nothing received: the first request's deadline runs
_RECEIVING = "receiving"  # a request is arriving: its deadline runs
_HANDLING = "handling"  # the request is in, its response under way: no timer
_IDLE = "idle"  # kept alive, waiting for the next request: the idle timer runs


class GuardedChannel(http.HTTPChannel):
    """An HTTP/1.1 channel with a request deadline and an idle timeout.

    A request past its deadline gets a 408 and the connection closes; a
    connection that never sent a byte, or sat idle, is closed without a word
    (an unasked-for response could be taken for the answer to a request
    crossing it). Twisted's own idle timer (``timeOut``) must be off.

    One timer per connection, moved lazily: a change of state only records
    when the new limit runs out (``_due``); the timer, when it fires early,
    sets itself again for the rest. So a keep-alive request costs no timer
    call at all, and a timer is never moved sooner in place (Twisted's
    ``DelayedCall.reset`` to an earlier time scans the reactor's whole heap).
    """

    # A whole plain head in one read is taken apart at once (heads.py); off,
    # every head goes through twisted.web's line parser (the tests compare).
    fast_heads = True

    # This class's own attributes are slots: with twisted.web's, an open
    # connection's instance dict held 31 keys, past the 30 a key-sharing
    # dict takes, so each connection had a dict of its own (1.6 kB).
    __slots__ = (
        "_due",
        "_head",
        "_holding",
        "_host",
        "_lost",
        "_peer",
        "_state",
        "_timer",
        "clock",
        "limits",
    )

    def __init__(self, limits: Callable[[], HttpLimits], clock: IReactorTime) -> None:
        super().__init__()
        self.limits = limits
        self.clock = clock
        self._timer: IDelayedCall | None = None
        self._state = _OPENED
        self._due = 0.0
        self._lost = False
        # Every Request asks for both addresses; neither changes while the
        # connection lives, and the host's is a getsockname call each time.
        self._host: Any = None
        self._peer: Any = None
        # A response's head waits (``hold_head``) for its first body bytes,
        # so both go to the transport in one write.
        self._holding = False
        self._head: bytes | None = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._enter(_OPENED, self.limits().request_timeout_s)

    def getHost(self) -> Any:
        host = self._host
        if host is None:
            host = self._host = super().getHost()
        return host

    def getPeer(self) -> Any:
        peer = self._peer
        if peer is None:
            peer = self._peer = super().getPeer()
        return peer

    def hold_head(self) -> None:
        self._holding = True

    def release_head(self) -> None:
        """The held head goes out, if no body bytes took it (HEAD, 204)."""
        self._holding = False
        head, self._head = self._head, None
        if head is not None:
            self.send_now(head)

    def writeHeaders(
        self, version: bytes, code: bytes, reason: bytes, headers: Any
    ) -> None:
        if not self._holding or not isinstance(headers, Headers):
            super().writeHeaders(version, code, reason, headers)
            return
        self._holding = False
        self._head = response_head(version, code, reason, headers)

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            data = head + data
        self.send_now(data)

    def writeSequence(self, iovec: Sequence[bytes]) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self.send_now(b"".join((head, *iovec)))
        else:
            self.send_now(b"".join(iovec))

    def send_now(self, data: bytes) -> None:
        """Into the transport's own queue, sent by this module after the
        reactor's round of I/O (``_send_queued``), not on a write event.

        Through a write event, every response and every stream chunk costs
        an epoll registration and a deregistration; sent at once, each
        response wakes the client separately (on this project's machines
        a send that wakes a sleeping peer costs twice one that finds it
        awake: benchmarks/README.md). So the bytes wait in the transport's
        queue -- where Twisted's own paths (another write,
        ``loseConnection``, a producer) find them in order -- and every
        connection written in one round is sent at its end, one send each.
        Only a plain TCP transport takes this path; what the socket does
        not take, and any other state, goes to Twisted's write path.
        """
        transport: Any = self.transport
        if (
            type(transport) is not _TCP_SERVER
            or not transport.connected
            or transport._writeDisconnected
            or transport.disconnecting
        ):
            transport.write(data)
            return
        if not data:
            return
        # Listed once a round: bytes already waiting are either listed or
        # Twisted's to write (its write event is asked for).
        waiting = transport._tempDataLen
        transport._tempDataBuffer.append(data)
        size = transport._tempDataLen = waiting + len(data)
        if (
            transport.producer is not None
            and size + len(transport.dataBuffer) > transport.bufferSize
        ):
            # Twisted's own test (``_isSendBufferFull``), made here first:
            # it is false for nearly every chunk, and two calls a chunk.
            transport._maybePauseProducer()
        if waiting:
            return
        queued = _QUEUED
        queued.append(transport)
        if not _ROUND_END:
            _ROUND_END.append(
                cast(IReactorTime, transport.reactor).callLater(0, _at_round_end)
            )
        elif len(queued) >= SEND_BATCH:
            # A round answering hundreds (a burst) sends as it goes: the
            # first response waits for 64 others at most, not for all.
            _send_queued()

    def dataReceived(self, data: bytes) -> None:
        state = self._state
        if state is _IDLE:
            # The first byte of the next request: its deadline starts now.
            self._enter(_RECEIVING, self.limits().request_timeout_s)
        elif state is _OPENED:
            # The first request's deadline has run since the connection opened.
            self._state = _RECEIVING
        if (
            self.fast_heads
            and self.line_mode
            and not self._buffer
            and not self._busyReceiving
            and self._HTTPChannel__first_line == 1
            and self.persistent
        ):
            end = data.find(b"\r\n\r\n")
            if end > 0 and self._whole_head(data, end):
                return
        super().dataReceived(data)

    def _whole_head(self, data: bytes, end: int) -> bool:
        """A request whose head is all in ``data`` (up to ``end``), read in
        one pass (heads.py), then handed on as twisted.web's own line parser
        would have (``lineReceived`` of the blank line) and the rest of
        ``data`` through twisted.web's own loop. False: nothing was done."""
        raw = data[:end]
        head = read_head(raw, self.maxHeaders, self.totalHeadersSize)
        if head is None:
            return False
        self.resetTimeout()
        factory = self.requestFactory
        request: Any
        if _non_queued(factory):
            request = factory(self)
        else:
            request = factory(self, len(self.requests))
        self.requests.append(request)
        self._HTTPChannel__first_line = 0
        self._command = head.command
        self._path = head.path
        self._version = head.version
        # (a copy: the head read may be shared, web/heads.py)
        request.requestHeaders._rawHeaders = head.headers.copy()
        if getattr(request, "keeps_raw_head", False):
            request.raw_head = raw
        self._receivedHeaderCount = head.count
        self._receivedHeaderSize = head.size
        length = self.length = head.length
        rest = data[end + 4 :]
        transport: Any = self.transport
        # As LineReceiver runs lineReceived and rawDataReceived: busy, so
        # what the request's handling feeds back (pipelined bytes) is queued.
        self._busyReceiving = True
        try:
            if length and len(rest) >= length and self._plain_body(head):
                self._whole_body(request, head, rest)
            else:
                if length:
                    self._transferDecoder = _IdentityTransferDecoder(
                        length, request.handleContentChunk, self._finishRequestBody
                    )
                self.allHeadersReceived()
                if length == 0:
                    self.allContentReceived()
                else:
                    self.setRawMode()
                if rest and not (transport is None or transport.disconnecting):
                    if self.line_mode:
                        self._buffer = rest + self._buffer
                    else:
                        self.rawDataReceived(rest)
        finally:
            self._busyReceiving = False
        queued = self._buffer
        if queued and not (transport is None or transport.disconnecting):
            self._buffer = b""
            basic.LineReceiver.dataReceived(self, queued)
        return True

    # Off: every body goes through twisted.web's decoder (the tests compare).
    fast_bodies = True

    def _plain_body(self, head: Head) -> bool:
        """Nothing twisted.web's ``allHeadersReceived`` would act on beyond
        the length: no ``Expect`` to answer, no cookies, no idle timer."""
        headers = head.headers
        return (
            self.fast_bodies
            and b"Expect" not in headers
            and b"Cookie" not in headers
            and not self.timeOut
        )

    def _whole_body(self, request: Any, head: Head, rest: bytes) -> None:
        """A body that came with its head, handed over as twisted.web's
        ``allHeadersReceived``, identity decoder and ``_finishRequestBody``
        would (five calls and a decoder less per request); what follows the
        body waits in ``_dataBuffer``, as there."""
        length = head.length
        self.persistent = self.checkPersistence(request, head.version)
        request.gotLength(length)
        request.handleContentChunk(rest[:length])
        self._dataBuffer.append(rest[length:])
        # Then what allContentReceived does, ours and twisted.web's (no idle
        # timer to save: ``_plain_body``), in one step.
        self._state = _HANDLING
        self.length = 0
        self._receivedHeaderCount = 0
        self._receivedHeaderSize = 0
        self._HTTPChannel__first_line = 1
        self._transferDecoder = None
        del self._command, self._path, self._version
        self._handlingRequest = True
        self.setRawMode()
        request.requestReceived(head.command, head.path, head.version)

    def allContentReceived(self) -> None:
        # Received in full: from here the response takes the time it takes.
        self._state = _HANDLING
        super().allContentReceived()

    def requestDone(self, request: http.Request) -> None:
        # Idle before Twisted replays any pipelined bytes (dataReceived then
        # starts their deadline) or, if not persistent, closes.
        if self.persistent and not self._lost:
            self._enter(_IDLE, self.limits().idle_timeout_s)
        super().requestDone(request)

    def checkPersistence(self, request: http.Request, version: bytes) -> bool:
        # A graceful stop is under way (the Site's ``draining``, drain.py): no
        # response keeps its connection alive, and each says so.
        if getattr(getattr(self, "site", None), "draining", False):
            request.responseHeaders.setRawHeaders(b"connection", [b"close"])
            return False
        raw: dict[bytes, Any] = request.requestHeaders._rawHeaders
        if version == b"HTTP/1.1" and b"Connection" not in raw:
            return True  # twisted.web's answer with no Connection header
        return bool(super().checkPersistence(request, version))

    def close_when_idle(self) -> None:
        """A graceful stop began: close now if no request is under way, else
        once its response is done (saying ``Connection: close`` if its headers
        have not gone yet)."""
        transport: Any = self.transport
        if self._lost or transport is None or transport.disconnecting:
            return
        if self._state is _IDLE or self._state is _OPENED:
            self.loseConnection()
            return
        if not self.requests:
            # Its first line is still arriving (Twisted would drop it if the
            # channel were not persistent now): checkPersistence decides.
            return
        self.persistent = False
        for request in self.requests:
            if not request.startedWriting:
                request.responseHeaders.setRawHeaders(b"connection", [b"close"])

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._lost = True
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        super().connectionLost(reason)

    def _enter(self, state: str, seconds: float) -> None:
        self._state = state
        self._due = due = self.clock.seconds() + seconds
        timer = self._timer
        if timer is not None and timer.getTime() > due:
            # Rare: a limit shorter than the one the timer was set for.
            timer.cancel()
            timer = None
        if timer is None:
            self._timer = self.clock.callLater(seconds, self._expired)

    def _expired(self) -> None:
        self._timer = None
        transport: Any = self.transport
        if self._lost or transport is None or self._state is _HANDLING:
            return
        left = self._due - self.clock.seconds()
        if left > 0:
            self._timer = self.clock.callLater(left, self._expired)
        elif transport.disconnecting:
            # Already closing (Twisted's 400 for a malformed request) and the
            # peer is not reading it: let the descriptor go now.
            transport.abortConnection()
        elif self._state is _RECEIVING:
            transport.write(timeout_response(self.limits().request_timeout_s))
            self._close()
        elif self._state is _IDLE and self._waitingForTransport:
            # The last response is still being written: not idle yet.
            self._enter(_IDLE, self.limits().idle_timeout_s)
        else:
            self._close()

    def _close(self) -> None:
        # As Twisted's own timeout does: close once what is written has left,
        # and abort if the peer does not take it within abortTimeout.
        if self.abortTimeout is not None:
            self._abortingCall = self.clock.callLater(
                self.abortTimeout, self.forceAbortClient
            )
        self.loseConnection()


_NON_QUEUED: dict[Any, bool] = {}


def _non_queued(factory: Any) -> bool:
    """``INonQueuedRequestFactory.providedBy``, asked once per factory (a
    zope lookup per request otherwise)."""
    known = _NON_QUEUED.get(factory)
    if known is None:
        known = bool(INonQueuedRequestFactory.providedBy(factory))
        if len(_NON_QUEUED) < 64:
            _NON_QUEUED[factory] = known
    return known


def response_head(
    version: bytes, code: bytes, reason: bytes, headers: Headers
) -> bytes:
    """A status line and header block (the values Headers has sanitised)."""
    parts = [version, b" ", code, b" ", reason]
    extend = parts.extend
    for name, values in headers.getAllRawHeaders():
        for value in values:
            extend((b"\r\n", name, b": ", value))
    parts.append(b"\r\n\r\n")
    return b"".join(parts)


# Descriptors kept back for what is not a client: listeners, logs, files.
RESERVED_DESCRIPTORS = 64


def descriptor_budget() -> int:
    """Client connections the open-file limit leaves room for."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 1_000_000
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 1_000_000
    return max(1, soft - RESERVED_DESCRIPTORS)


class ConnectionCap:
    """``http.max_connections``: says when to refuse, logs once per episode.

    A refused connection is the Site's ``buildProtocol`` returning None: the
    port closes the socket there and then, unread, so a burst of refusals
    holds no descriptors (``listen`` makes TLS ports pass the None on too).

    An episode ends when the open connections fall to nine tenths of the cap
    (at least one below it), so a server hovering at the cap logs one pair of
    lines, not one per connection.
    """

    def __init__(
        self, limit: Callable[[], int], descriptors: int | None = None
    ) -> None:
        self.configured = limit
        # The cap never exceeds what the process may open: past it the
        # kernel refuses accepts (EMFILE) before the cap would.
        self.descriptors = descriptor_budget() if descriptors is None else descriptors
        self.refusing = False
        self.refused = 0

    def limit(self) -> int:
        return max(1, min(self.configured(), self.descriptors))

    def admit(self, open_connections: int) -> bool:
        limit = self.limit()
        if open_connections < limit:
            return True
        self.refused += 1
        if not self.refusing:
            self.refusing = True
            why = (
                "http.max_connections"
                if self.configured() <= self.descriptors
                else f"the open-file limit less {RESERVED_DESCRIPTORS} kept back"
            )
            log.warn(
                "mockai: {open} connections open, refusing new ones ({why})",
                open=open_connections,
                why=why,
            )
        return False

    def released(self, open_connections: int) -> None:
        if not self.refusing:
            return
        limit = self.limit()
        if open_connections <= limit - max(1, limit // 10):
            log.info(
                "mockai: {open} connections open, accepting new ones again"
                " ({refused} refused)",
                open=open_connections,
                refused=self.refused,
            )
            self.refusing = False
            self.refused = 0


# The events Twisted's accept loop logs for each failed accept (EMFILE and
# friends) or each client it closes to recover from EMFILE.
_RECOVERY_EVENTS = frozenset(
    {
        "EMFILE encountered; releasing reserved file descriptor.",
        "EMFILE recovery: Closed socket from {address}",
        "Re-reserving EMFILE recovery file descriptor.",
    }
)
_COULD_NOT_ACCEPT = "Could not accept new connection ({acceptError})"
# Out of a resource: an episode. (ECONNABORTED, a client gone before accept,
# is not, and is passed on as Twisted logs it.)
_EXHAUSTED = frozenset({"EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"})


@implementer(ILogObserver)
class AcceptErrors:
    """A listening port's log observer: its per-accept failure lines become
    one line when accepting starts failing and one when it works again.

    Everything else is passed on to ``forward``.
    """

    def __init__(self, forward: ILogObserver = globalLogPublisher) -> None:
        self.forward = forward
        self.failing: str | None = None
        self._failed_this_round = False

    def __call__(self, event: LogEvent) -> None:
        text = event.get("log_format")
        if text in _RECOVERY_EVENTS:
            error = "EMFILE"
        elif text == _COULD_NOT_ACCEPT and event.get("acceptError") in _EXHAUSTED:
            error = event["acceptError"]
        else:
            self.forward(event)
            return
        self._failed_this_round = True
        if self.failing is None:
            self.failing = error
            code = getattr(errno, error, None)
            reason = os.strerror(code) if code is not None else error
            log.warn(
                "mockai: cannot accept connections ({error}: {reason}): new ones"
                " are turned away until descriptors are free; raise the limit"
                " (ulimit -n) or lower http.max_connections below it",
                error=error,
                reason=reason,
            )

    def round_done(self) -> None:
        """An accept round (one ``doRead``) is over."""
        if self.failing is not None and not self._failed_this_round:
            log.info(
                "mockai: accepting connections again after {error}",
                error=self.failing,
            )
            self.failing = None
        self._failed_this_round = False


class QuietPort(tcp.Port):
    """A TCP port whose accept failures are logged once per episode.

    Twisted buffers each accept round's log events and hands them to the
    port's ``_logger.observer``; this port's observer is an ``AcceptErrors``.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.accept_errors = AcceptErrors()
        self._logger = Logger(
            namespace=tcp.Port._logger.namespace, observer=self.accept_errors
        )

    def doRead(self) -> None:
        try:
            super().doRead()
        finally:
            self.accept_errors.round_done()


@dataclass(frozen=True)
class SharedPort:
    """How a worker listens on the port its supervising parent holds: bind
    ``port`` with ``SO_REUSEPORT`` beside the other workers, or adopt the
    listening socket the parent passed down as descriptor ``fd``."""

    port: int | None = None
    fd: int | None = None


class _Listening:
    """The reactor as an endpoint sees it, except that TCP and TLS ports are
    ``QuietPort``s, and TLS passes the Site's refusals on (everything else is
    the reactor's own). With ``shared``, a TCP port (under TLS too) is the
    worker's share of its parent's port instead of a socket of its own."""

    def __init__(
        self, reactor: PosixReactorBase, shared: SharedPort | None = None
    ) -> None:
        self._reactor = reactor
        self._shared = shared

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reactor, name)

    def listenTCP(
        self,
        port: int,
        factory: IProtocolFactory,
        backlog: int = 50,
        interface: str = "",
    ) -> QuietPort:
        shared = self._shared
        if shared is not None and shared.fd is not None:
            with socket.socket(fileno=os.dup(shared.fd)) as inherited:
                family = inherited.family
            listening = QuietPort._fromListeningDescriptor(
                self._reactor, shared.fd, family, factory
            )
        elif shared is not None and shared.port is not None:
            binding = tcp.makeBinding(
                interface, shared.port, reuseAddress=True, reusePort=True
            )
            listening = QuietPort(binding, factory, backlog, interface, self._reactor)
        else:
            listening = QuietPort(port, factory, backlog, interface, self._reactor)
        listening.startListening()
        return listening

    def listenSSL(
        self,
        port: int,
        factory: IProtocolFactory,
        contextFactory: Any,
        backlog: int = 50,
        interface: str = "",
    ) -> IListeningPort:
        # As the reactor does it (TLS in memory over a TCP port), with a TLS
        # factory that can refuse.
        listening = self.listenTCP(
            port, _refusable_tls(contextFactory, factory), backlog, interface
        )
        listening._type = "TLS"  # for its log lines, as the reactor sets it
        return listening


def _refusable_tls(contextFactory: Any, factory: IProtocolFactory) -> Any:
    """Twisted's TLS server factory, except that a refusal (None) from the
    factory it wraps is passed on to the port, which closes the socket;
    Twisted's own wraps the None and fails in the accept loop."""
    from twisted.protocols.tls import TLSMemoryBIOFactory

    class RefusableTLSFactory(TLSMemoryBIOFactory):
        def buildProtocol(self, addr: Any) -> Any:
            inner = self.wrappedFactory.buildProtocol(addr)
            return None if inner is None else self.protocol(self, inner)

    return RefusableTLSFactory(contextFactory, False, factory)


def listen(
    reactor: Any,
    description: str,
    factory: IProtocolFactory,
    shared: SharedPort | None = None,
) -> Deferred[IListeningPort]:
    """``serverFromString(reactor, description).listen(factory)``, where TCP
    and TLS ports (``tcp:``, ``tcp6:``, ``ssl:``) log accept failures once per
    episode and let the factory refuse a connection by returning None;
    ``shared``: a worker's share of its parent's port (``workers.py``)."""
    if isinstance(reactor, PosixReactorBase):
        reactor = _Listening(reactor, shared)
    listening: Deferred[IListeningPort] = serverFromString(reactor, description).listen(
        factory
    )
    return listening


# The class ``send_now`` takes its own path for (one global load a chunk).
_TCP_SERVER = tcp.Server
# Transports written to in this round of the reactor, to send at its end.
_QUEUED: list[Any] = []
# Sent at once when this many are queued (see ``send_now``).
SEND_BATCH = 64
# The call that sends at the round's end, while one is pending.
_ROUND_END: list[IDelayedCall] = []


def _at_round_end() -> None:
    del _ROUND_END[:]
    _send_queued()


def _send_queued() -> None:
    """What ``GuardedChannel.send_now`` queued, one send per connection;
    what a socket does not take goes to Twisted's write path."""
    queued = _QUEUED[:]
    del _QUEUED[:]
    for transport in queued:
        try:
            _send_one(transport)
        except Exception:
            # Not a reason to strand the others' bytes, or this one's.
            log.failure("mockai: a queued send failed")
            if transport.connected:
                transport.startWriting()


def _send_one(transport: Any) -> None:
    if not transport._tempDataLen or not transport.connected:
        return  # sent by Twisted, or lost
    if (
        transport.offset != len(transport.dataBuffer)
        or transport.producerPaused
        or transport.disconnecting
        or transport._writeDisconnected
    ):
        # Twisted's write path holds it (it resumes a paused producer once
        # the queue drains, and owns a close).
        transport.startWriting()
        return
    pending = transport._tempDataBuffer
    data = pending[0] if len(pending) == 1 else b"".join(pending)
    try:
        sent = transport.socket.send(data)
    except OSError:
        sent = 0
    # (Only now: should the send raise anything else, the bytes are still
    # queued for Twisted's write path.)
    transport._tempDataBuffer = []
    transport._tempDataLen = 0
    if sent != len(data):
        transport.write(data[sent:])
