"""A worker's own side of ``--workers``: what its parent tells it, and how it
dies with its parent.

A worker is the single process of ``tap.py`` listening on its share of the
parent's port (``workers.py`` is the parent's side); the pieces here run in
the worker and are named by the parent on its command line.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer, error, main
from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import ILogObserver, Logger, jsonFileLogObserver
from twisted.python.failure import Failure
from zope.interface import implementer

from mockai_tw.config import ConfigError
from mockai_tw.web.connections import SharedPort

log = Logger()

#: What the worker's ready event carries; the parent consumes it.
READY_KEY = "mockai_worker_listening"


@dataclass(frozen=True)
class WorkerSpec:
    """What ``--worker`` tells a worker: its index, its parent's pid, and how
    it shares the parent's port (``0:1234:port=8082``, ``1:1234:fd=3``)."""

    index: int
    parent: int
    shared: SharedPort

    def argument(self) -> str:
        how = (
            f"fd={self.shared.fd}"
            if self.shared.fd is not None
            else f"port={self.shared.port}"
        )
        return f"{self.index}:{self.parent}:{how}"

    @classmethod
    def parse(cls, text: str) -> WorkerSpec:
        try:
            index, parent, how = text.split(":")
            kind, value = how.split("=")
            shared = {
                "port": lambda: SharedPort(port=int(value)),
                "fd": lambda: SharedPort(fd=int(value)),
            }[kind]()
            return cls(int(index), int(parent), shared)
        except (KeyError, ValueError):
            raise ConfigError(
                "--worker",
                f"must be INDEX:PARENT:port=N or INDEX:PARENT:fd=N, not {text!r}",
            ) from None


def worker_log_observer() -> ILogObserver:
    """A worker's ``twistd --logger``: each event as one JSON line on stdout,
    which the parent reads and republishes as its own."""
    return jsonFileLogObserver(sys.stdout, recordSeparator="")


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``sig`` when the parent exits (``PR_SET_PDEATHSIG``);
    elsewhere this does nothing and the parent-pipe watch stands alone."""
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None).prctl(1, sig)  # PR_SET_PDEATHSIG


@implementer(IReadDescriptor)
class ParentWatch:
    """Reads the worker's stdin, a pipe whose other end only the parent holds:
    it closes when the parent is gone, however it went."""

    def __init__(self, fd: int, gone: Callable[[], None]) -> None:
        self.fd = fd
        self.gone = gone
        os.set_blocking(fd, False)

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "ParentWatch"

    def doRead(self) -> Any:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return None
        except OSError:
            return main.CONNECTION_LOST
        return None if data else main.CONNECTION_DONE

    def connectionLost(self, reason: Failure) -> None:
        self.gone()


class WorkerService(Service):
    """In a worker: die with the parent, and say when the port is listened on.

    A worker stops like a single process, on the SIGTERM the parent forwards;
    the parent's death sends it SIGTERM too (Linux), and its stdin closing
    stops it anyway. It ignores SIGINT: Ctrl-C reaches the whole process
    group, and the parent turns it into one SIGTERM per worker (a second one
    into SIGKILL).
    """

    def __init__(self, spec: WorkerSpec, listening: defer.Deferred[Any], reactor: Any):
        self.spec = spec
        self.listening = listening
        self.reactor = reactor
        self.watch: ParentWatch | None = None

    def startService(self) -> None:
        super().startService()
        die_with_parent()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        if os.getppid() != self.spec.parent:
            # The parent died before the death signal was asked for.
            self._parent_gone()
            return
        with contextlib.suppress(OSError):
            self.watch = ParentWatch(0, self._parent_gone)
            self.reactor.addReader(self.watch)
        self.listening.addCallback(self._listening)

    def _listening(self, port: Any) -> Any:
        log.info(
            "mockai worker {worker} listening",
            worker=self.spec.index,
            **{READY_KEY: True},
        )
        return port

    def _parent_gone(self) -> None:
        if not self.running:
            return
        log.warn(
            "mockai worker {worker}: the parent is gone, stopping",
            worker=self.spec.index,
        )
        self._stop()

    def _stop(self) -> None:
        if getattr(self.reactor, "running", True):
            with contextlib.suppress(error.ReactorNotRunning):
                self.reactor.stop()
        else:  # at start, under twistd: the reactor runs only after this
            self.reactor.callWhenRunning(self._stop)

    def stopService(self) -> None:
        super().stopService()
        watch, self.watch = self.watch, None
        if watch is not None:
            self.reactor.removeReader(watch)
