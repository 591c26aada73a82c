"""Sibling workers' metrics, over unix sockets in the run's runtime directory.

With several workers a scrape reaches one of them; it asks every sibling for
its own exposition and sums them (``metrics.merge``), so ``/metrics`` gives
the whole server's figures from any worker.  Each worker listens on
``<dir>/metrics-<index>.sock``; the supervising parent makes the directory
fresh at start, names it in ``--runtime-dir`` and removes it at stop.  A dead
worker's socket refuses at once and is left out; its replacement binds the
same path (what multiprocess mode's ``mark_process_dead`` is for).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

#: How long a scrape waits for one sibling, and how much it reads from it.
PEER_TIMEOUT_S = 2.0
MAX_PEER_BYTES = 64 * 1024 * 1024


#: A unix socket's path is at most 107 bytes on Linux (sun_path).
MAX_SOCKET_PATH = 107


def runtime_base(environ: Mapping[str, str]) -> str | None:
    """Where the run's directory goes: ``$XDG_RUNTIME_DIR`` when the sockets'
    paths fit there, else the temporary directory."""
    base = environ.get("XDG_RUNTIME_DIR")
    longest = os.path.join(base or "", "mockai-xxxxxxxx", "metrics-1024.sock")
    if base and os.path.isdir(base) and len(longest.encode()) <= MAX_SOCKET_PATH:
        return base
    return None


def socket_path(directory: str, index: int) -> str:
    return os.path.join(directory, f"metrics-{index}.sock")


class _Tell(Protocol):
    """The serving side: write this worker's exposition, then close."""

    def __init__(self, exposition: Callable[[], bytes]) -> None:
        self.exposition = exposition

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.exposition())
        self.transport.loseConnection()


class _Read(Protocol):
    """The asking side: everything the sibling writes, until it closes."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.size = 0
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > MAX_PEER_BYTES:
            assert self.transport is not None
            self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if self.done.called:
            return
        if self.size > MAX_PEER_BYTES:
            self.done.errback(ValueError("a sibling's exposition is too large"))
        else:
            self.done.callback(b"".join(self.parts))


class Peers(Service):
    """This worker's socket, and asking its siblings for their figures."""

    def __init__(
        self,
        reactor: Any,
        directory: str,
        index: int,
        exposition: Callable[[], bytes],
    ) -> None:
        self.reactor = reactor
        self.directory = directory
        self.index = index
        self.exposition = exposition
        self.port: IListeningPort | None = None

    def startService(self) -> None:
        super().startService()
        path = socket_path(self.directory, self.index)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a predecessor's, which died
        factory = Factory.forProtocol(lambda: _Tell(self.exposition))
        try:
            self.port = self.reactor.listenUNIX(path, factory, mode=0o600)
        except CannotListenError as failure:
            # Its siblings' scrapes leave it out; it serves on regardless.
            log.error(
                "mockai: worker {worker} cannot share its metrics at {path}: {why}",
                worker=self.index,
                path=path,
                why=failure.socketError,
            )

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        port, self.port = self.port, None
        if port is None:
            return None
        stopped = port.stopListening()
        return stopped if isinstance(stopped, defer.Deferred) else None

    def siblings(self) -> list[str]:
        own = socket_path(self.directory, self.index)
        try:
            names = sorted(os.listdir(self.directory))
        except OSError:
            return []
        paths = (os.path.join(self.directory, n) for n in names)
        return [
            p
            for p in paths
            if p != own and p.endswith(".sock") and "metrics-" in os.path.basename(p)
        ]

    def gather(self) -> defer.Deferred[list[bytes]]:
        """Every sibling's exposition that came in time (the others left out)."""
        asks = [self._ask(path) for path in self.siblings()]
        gathered = defer.DeferredList(asks, consumeErrors=True)
        return gathered.addCallback(lambda results: [v for ok, v in results if ok])

    def _ask(self, path: str) -> defer.Deferred[bytes]:
        endpoint = UNIXClientEndpoint(self.reactor, path, timeout=PEER_TIMEOUT_S)
        reader = _Read()
        connected = endpoint.connect(Factory.forProtocol(lambda: reader))

        def read(protocol: _Read) -> defer.Deferred[bytes]:
            return protocol.done

        answer: defer.Deferred[bytes] = connected.addCallback(read)
        return answer.addTimeout(PEER_TIMEOUT_S, self.reactor, self._abort(reader))

    @staticmethod
    def _abort(reader: _Read) -> Callable[[Any, float], Any]:
        def timed_out(result: Any, timeout: float) -> Any:
            if reader.transport is not None:
                reader.transport.abortConnection()  # type: ignore[attr-defined]
            return result

        return timed_out
