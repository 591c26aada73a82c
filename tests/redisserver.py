"""A real ``redis-server`` for a test: on a free loopback port or a unix socket.

``server = await RedisServer.start(self)`` (``unix=True``, ``tls=True``)
spawns it and fires when it logs that it is ready; a cleanup registered
before it even started stops it (SIGTERM, then SIGKILL), so no process or
port outlives the test.  ``kill()`` loses it abruptly, ``start_again()``
brings it back on the same port or socket (empty: nothing is saved), and
``pause()``/``resume()`` make it hang and answer again.
A missing ``redis-server`` fails the test with a message saying so.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import tempfile
from typing import Any
from urllib.parse import quote

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

READY = b"ready to accept connections"
#: Seconds to wait for the ready line, and for an exit after SIGTERM.
START_TIMEOUT = 15.0
STOP_TIMEOUT = 5.0


class RedisServerMissing(Exception):
    pass


def redis_server_path() -> str:
    path = os.environ.get("REDIS_SERVER") or shutil.which("redis-server")
    if not path:
        raise RedisServerMissing(
            "redis-server is not installed (apt-get install redis-server, or set"
            " REDIS_SERVER=/path/to/redis-server): the Redis store tests need a"
            " real one"
        )
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _Process(ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ready: Deferred[None] = Deferred()
        self.exited = False
        self._waiting: list[Deferred[None]] = []

    def when_ended(self) -> Deferred[None]:
        if self.exited:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if not self.ready.called and READY in self.output.lower():
            self.ready.callback(None)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        if not self.ready.called:
            tail = self.output.decode(errors="replace")[-2000:]
            self.ready.errback(RuntimeError(f"redis-server exited:\n{tail}"))
        self.exited = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)


class RedisServer:
    """One redis-server process (and the ones started again after it)."""

    def __init__(
        self,
        directory: str,
        unix: bool = False,
        tls: bool = False,
        password: str | None = None,
    ) -> None:
        self.directory = directory
        self.password = password
        self.port = 0 if unix else free_port()
        self.socket = os.path.join(directory, "redis.sock") if unix else None
        self.tls = tls
        self.ca: str | None = None
        self._certs: Any = None
        self._process: _Process | None = None
        self._transport: Any = None

    @classmethod
    def start(
        cls,
        testcase: TestCase,
        *,
        unix: bool = False,
        tls: bool = False,
        password: str | None = None,
    ) -> Deferred[RedisServer]:
        """A running server whose cleanup ``testcase`` runs; ``password``
        makes it require one (``url`` carries it)."""
        return Deferred.fromCoroutine(cls._start(testcase, unix, tls, password))

    @classmethod
    async def _start(
        cls, testcase: TestCase, unix: bool, tls: bool, password: str | None
    ) -> RedisServer:
        path = redis_server_path()
        # mkdtemp, not testcase.mktemp(): a unix socket path must stay short.
        directory = tempfile.mkdtemp(prefix="redis-")
        testcase.addCleanup(shutil.rmtree, directory, True)
        server = cls(directory, unix=unix, tls=tls, password=password)
        testcase.addCleanup(server.stop)
        if tls:
            from tests.test_tls import make_certs

            server._certs = make_certs(os.path.join(directory, "certs"))
            server.ca = server._certs.ca
        for attempt in range(3):
            try:
                await server._spawn(path)
                return server
            except RuntimeError:
                # The free port was taken in the meantime: another one.
                if unix or attempt == 2 or b"in use" not in server._output():
                    raise
                server.port = free_port()
        raise AssertionError("unreachable")

    def _output(self) -> bytes:
        return self._process.output if self._process else b""

    @property
    def url(self) -> str:
        """A ``state.url`` for this server (with its password, if any)."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        if self.socket is not None:
            return f"unix://{auth}{self.socket}"
        if self.tls:
            return f"rediss://{auth}localhost:{self.port}/0?ssl_ca_certs={self.ca}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and not self._process.exited

    def _args(self) -> list[str]:
        args = ["--save", "", "--appendonly", "no", "--dir", self.directory]
        args += ["--bind", "127.0.0.1", "--daemonize", "no", "--loglevel", "notice"]
        if self.socket is not None:
            args += ["--port", "0", "--unixsocket", self.socket]
            args += ["--unixsocketperm", "700"]
        elif self.tls:
            certs = self._certs
            args += ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", certs.cert, "--tls-key-file", certs.key]
            args += ["--tls-ca-cert-file", certs.ca, "--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        return args

    async def _spawn(self, path: str) -> None:
        if self.running:
            raise RuntimeError("redis-server is running already")
        process = _Process()
        self._process = process
        self._transport = reactor.spawnProcess(
            process, path, [path, *self._args()], env=None, path=self.directory
        )
        timer = reactor.callLater(START_TIMEOUT, self._signal, "KILL")
        try:
            await process.ready
        finally:
            if timer.active():
                timer.cancel()

    def start_again(self) -> Deferred[None]:
        """The server back on the same port (or socket), with no data."""
        return Deferred.fromCoroutine(self._spawn(redis_server_path()))

    def _signal(self, name: str) -> None:
        with contextlib.suppress(ProcessExitedAlready):
            self._transport.signalProcess(getattr(signal, f"SIG{name}"))

    def _wait_ended(self, first: str) -> Deferred[None]:
        process = self._process
        if process is None or process.exited:
            return succeed(None)
        ended = process.when_ended()
        self._signal(first)
        if first == "KILL":
            return ended
        timer = reactor.callLater(STOP_TIMEOUT, self._signal, "KILL")

        def done(_: None) -> None:
            if timer.active():
                timer.cancel()

        return ended.addCallback(done)

    def stop(self) -> Deferred[None]:
        """SIGTERM (SIGKILL after ``STOP_TIMEOUT``); fires once it exited."""
        if self.running:
            self.resume()  # a stopped process would not act on SIGTERM
        return self._wait_ended("TERM")

    def pause(self) -> None:
        """SIGSTOP: Redis hangs (connections stay open, nothing answers)."""
        self._signal("STOP")

    def resume(self) -> None:
        """SIGCONT after ``pause``."""
        self._signal("CONT")

    def kill(self) -> Deferred[None]:
        """SIGKILL: Redis gone without a goodbye; fires once it exited."""
        return self._wait_ended("KILL")
