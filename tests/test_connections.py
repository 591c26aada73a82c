"""Connection limits on a live listener whose timers run on a fake clock.

The server listens on the real reactor, but its request deadline, idle timeout
and stream pacing run on a ``task.Clock`` that the test advances, so "30
seconds of trickled headers" takes no real time.
"""

from __future__ import annotations

import contextlib
import errno
import json
import resource
import socket
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, cast

import treq
import twisted.test
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import HTTPConnectionPool
from zope.interface import implementer

from mockai_tw.config_load import parse_config
from mockai_tw.server import ListenService, MockServer
from mockai_tw.web.connections import (
    RESERVED_DESCRIPTORS,
    ConnectionCap,
    GuardedChannel,
    default_limits,
    descriptor_budget,
)
from tests.support import TOKEN, Live, events, merge

HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
STREAM = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
}


async def start_clocked(
    case: TestCase,
    overrides: Mapping[str, Any] | None = None,
    endpoint: str = "tcp:0:interface=127.0.0.1",
) -> tuple[Live, Clock]:
    """A MockServer on a fake clock, listening on the real reactor."""
    clock = Clock()
    config = parse_config(merge({"access_token": TOKEN}, overrides or {}), {})
    server = MockServer(config, clock)
    listener = ListenService(server, endpoint, reactor)
    listener.startService()
    case.addCleanup(listener.stopService)
    port: Any = await listener.listening
    pool = HTTPConnectionPool(reactor, persistent=False)
    live = Live(server, listener, port.getHost().port, pool)
    case.addCleanup(server.site.quiet)
    case.addCleanup(pool.closeCachedConnections)
    return live, clock


async def until(what: Callable[[], bool], turns: int = 5000) -> None:
    """Let the real reactor run until ``what()`` holds (a sync, not a sleep)."""
    for _ in range(turns):
        if what():
            return
        await deferLater(reactor, 0.001)
    raise AssertionError("condition never held")


class Raw(Protocol):
    """A raw TCP client: writes what it is told, keeps what it receives."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred[None] = Deferred()
        self._waiting: list[tuple[Callable[[bytes], bool], Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for entry in list(self._waiting):
            if entry[0](self.received):
                self._waiting.remove(entry)
                entry[1].callback(None)

    def connectionLost(self, reason: Failure | None = None) -> None:
        if not self.closed.called:
            self.closed.callback(None)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def has(self, data: bytes, count: int = 1) -> Deferred[None]:
        """Fires once ``data`` has been received ``count`` times."""
        d: Deferred[None] = Deferred()
        self._waiting.append((lambda got: got.count(data) >= count, d))
        self.dataReceived(b"")
        return d

    def close(self) -> Deferred[None]:
        if not self.closed.called:
            assert self.transport is not None
            self.transport.loseConnection()
        return self.closed


async def connect(case: TestCase, live: Live) -> Raw:
    """A raw connection the server has accepted (so its clock has started)."""
    before = len(live.server.site.channels)
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", live.port)
    client = await connectProtocol(endpoint, Raw())
    case.addCleanup(client.close)
    await until(lambda: len(live.server.site.channels) > before)
    return client


async def started(live: Live) -> None:
    """Until the server has read a request line (so it is receiving one)."""
    await until(lambda: any(c.requests for c in live.server.site.channels))


async def still_open(client: Raw) -> bool:
    """Whether ``client`` survives a few real reactor turns."""
    for _ in range(5):
        await deferLater(reactor, 0.001)
    return not client.closed.called


def capture_log(case: TestCase) -> list[str]:
    """The text of every log event emitted during the test."""
    lines: list[str] = []

    @implementer(ILogObserver)
    def observe(event: LogEvent) -> None:
        lines.append(formatEvent(event) or "")

    globalLogPublisher.addObserver(observe)
    case.addCleanup(globalLogPublisher.removeObserver, observe)
    return lines


def error_of(response: bytes) -> dict[str, Any]:
    _, _, body = response.partition(b"\r\n\r\n")
    error: dict[str, Any] = json.loads(body)["error"]
    return error


def in_memory(
    case: TestCase, http: Mapping[str, Any]
) -> tuple[Any, Any, StringTransport, Clock]:
    """A MockSite channel on a StringTransport, its timers on a Clock."""
    clock = Clock()
    config = parse_config({"access_token": TOKEN, "http": dict(http)}, {})
    site = MockServer(config, clock).site
    channel = site.buildProtocol(None)
    transport = StringTransport()
    channel.makeConnection(transport)

    def lose() -> None:
        if channel in site.channels:
            channel.connectionLost(Failure(ConnectionError("test over")))

    case.addCleanup(lose)
    return site, channel, transport, clock


class RequestDeadlineTests(TestCase):
    # A connection that is never cut fails fast, not at trial's 120 s.
    timeout = 15

    async def test_trickled_headers_are_cut_at_the_deadline(self) -> None:
        live, clock = await start_clocked(self, {"http": {"request_timeout_s": 5}})
        slow = await connect(self, live)
        slow.write(b"GET /health HTTP/1.1\r\n")
        await started(live)
        header = b"Host: x\r\nX-Slow: " + b"z" * 100
        for i in range(5):
            # One byte a second, every second, never a whole header block.
            slow.write(header[i : i + 1])
            # A normal client is served meanwhile (and its round trip lets the
            # server read the slow byte before the clock moves).
            response = await live.request("GET", "/health")
            self.assertEqual(response.code, 200)
            await treq.content(response)
            self.assertTrue(await still_open(slow), f"cut after {i} s")
            clock.advance(1)
        await slow.closed
        self.assertEqual(clock.seconds(), 5)
        self.assertTrue(slow.received.startswith(b"HTTP/1.1 408 "), slow.received)
        error = error_of(slow.received)
        self.assertEqual(error["type"], "invalid_request_error")
        self.assertEqual(error["code"], "request_timeout")
        self.assertIsNone(error["param"])
        self.assertIn("5 seconds", error["message"])
        await until(lambda: not live.server.site.channels)

    async def test_a_slow_body_is_cut_too(self) -> None:
        live, clock = await start_clocked(self, {"http": {"request_timeout_s": 3}})
        slow = await connect(self, live)
        slow.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
        )
        await started(live)
        clock.advance(2.9)
        self.assertTrue(await still_open(slow))
        slow.write(b'"model"')
        clock.advance(0.1)
        await slow.closed
        self.assertIn(b" 408 ", slow.received)

    async def test_the_deadline_starts_at_a_requests_first_byte(self) -> None:
        live, clock = await start_clocked(
            self, {"http": {"request_timeout_s": 5, "idle_timeout_s": 60}}
        )
        client = await connect(self, live)
        client.write(HEALTH)
        await client.has(b'"ok"')
        # Idle for longer than a request may take, then one slow request.
        clock.advance(30)
        line = len(b"GET /health HTTP/1.1\r\n")
        client.write(HEALTH[:line])
        await started(live)
        clock.advance(4)
        client.write(HEALTH[line:])
        await client.has(b'"ok"', 2)
        self.assertNotIn(b" 408 ", client.received)
        self.assertTrue(await still_open(client))
        await client.close()

    async def test_a_long_stream_is_not_cut(self) -> None:
        live, clock = await start_clocked(
            self,
            {
                "http": {"request_timeout_s": 2},
                "replies": ["abcdef"],
                "stream": {"interval_ms": 1000, "chunking": "char"},
            },
        )
        response = await live.request("POST", "/v1/chat/completions", STREAM)
        self.assertEqual(response.code, 200)
        body = treq.content(response)
        for _ in range(10):
            clock.advance(1)
            await deferLater(reactor, 0.001)
        data = await body
        chunks = events(data)
        self.assertEqual(chunks[-1], b"[DONE]")
        text = "".join(
            (json.loads(c)["choices"] or [{}])[0].get("delta", {}).get("content") or ""
            for c in chunks[:-1]
        )
        self.assertEqual(text, "abcdef")
        self.assertGreater(clock.seconds(), 5)

    async def test_a_silent_connection_is_closed_quietly(self) -> None:
        live, clock = await start_clocked(self, {"http": {"request_timeout_s": 5}})
        silent = await connect(self, live)
        clock.advance(4.9)
        self.assertTrue(await still_open(silent))
        clock.advance(0.1)
        await silent.closed
        # Nothing was asked: no 408 that a client could take for an answer.
        self.assertEqual(silent.received, b"")

    def test_a_malformed_request_left_unread_is_aborted(self) -> None:
        # Twisted answers 400 and closes; a peer that never reads that answer
        # loses its descriptor at the deadline.
        _, channel, transport, clock = in_memory(self, {"request_timeout_s": 5})
        channel.dataReceived(b"NONSENSE\r\n")
        self.assertIn(b" 400 ", transport.value())
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.disconnected)
        clock.advance(5)
        self.assertTrue(transport.disconnected)
        self.assertNotIn(b" 408 ", transport.value())

    async def test_a_reload_applies_to_new_connections(self) -> None:
        live, clock = await start_clocked(self, {"http": {"request_timeout_s": 30}})
        config = live.server.config
        live.server.apply(
            replace(config, http=replace(config.http, request_timeout_s=2))
        )
        slow = await connect(self, live)
        slow.write(b"GET / HTTP/1.1\r\n")
        await started(live)
        clock.advance(2)
        await slow.closed
        self.assertIn(b" 408 ", slow.received)


class NoDelayTests(TestCase):
    """Paced chunks are small: each must leave at once, not wait on Nagle.
    twisted.web sets TCP_NODELAY on every connection it accepts (under TLS
    too), so a stream need not set it again."""

    async def _no_delay(self, endpoint: str) -> int:
        live, _ = await start_clocked(self, {}, endpoint)
        await connect(self, live)
        (channel,) = live.server.site.channels
        handle = channel.transport.getHandle()
        if not isinstance(handle, socket.socket):  # TLS: its TCP transport's
            handle = channel.transport.transport.getHandle()
        return int(handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    async def test_tcp_connections_are_no_delay(self) -> None:
        self.assertEqual(await self._no_delay("tcp:0:interface=127.0.0.1"), 1)

    async def test_tls_connections_are_no_delay(self) -> None:
        pem = FilePath(twisted.test.__file__).sibling("server.pem").path
        listen = f"ssl:0:interface=127.0.0.1:privateKey={pem}"
        self.assertEqual(await self._no_delay(listen), 1)


# A transport made here, not accepted by a port (only its repr reads it).
_NO_PORT: Any = None


class _CountedSocket:
    """A socket whose sends are counted (a C socket's methods cannot be
    replaced); everything else is the socket's."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sends: list[bytes] = []

    fail_once: BaseException | None = None

    def send(self, data: bytes) -> int:
        failure, self.fail_once = self.fail_once, None
        if failure is not None:
            raise failure
        sent = self._sock.send(data)
        self.sends.append(bytes(data[:sent]))
        return sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


async def _round() -> None:
    """One turn of the real reactor: what was queued in it is sent."""
    await deferLater(reactor, 0)


def _drain(theirs: socket.socket) -> bytes:
    got = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := theirs.recv(1 << 20):
            got += chunk
    return got


class SendNowTests(TestCase):
    """A response's bytes wait in the transport's queue until the reactor's
    round ends, then go out in one send per connection; they never
    overtake bytes Twisted queued."""

    def _pair(
        self, send_buffer: int | None = None
    ) -> tuple[Any, Any, socket.socket, _CountedSocket]:
        """A channel on a real TCP transport over one end of a socketpair
        (not read from), and the other end."""
        from twisted.internet import tcp

        ours, theirs = socket.socketpair()
        self.addCleanup(theirs.close)
        if send_buffer is not None:
            ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
        ours.setblocking(False)
        theirs.setblocking(False)
        counted = _CountedSocket(ours)
        channel = GuardedChannel(default_limits, Clock())
        transport = tcp.Server(
            cast(socket.socket, counted),
            channel,
            ("127.0.0.1", 1),
            _NO_PORT,
            1,
            reactor,
        )
        self.addCleanup(transport.connectionLost, Failure(ConnectionDone()))
        transport.stopReading()
        channel.transport = transport
        return channel, transport, theirs, counted

    async def test_bytes_never_overtake_the_queue(self) -> None:
        channel, transport, theirs, _ = self._pair(send_buffer=4096)
        big = bytes(range(256)) * 4096  # 1 MiB: more than the socket takes
        channel.send_now(big)
        await _round()
        # What the socket did not take is Twisted's to write.
        self.assertGreater(
            transport._tempDataLen + len(transport.dataBuffer) - transport.offset, 0
        )
        got = theirs.recv(65536)  # the socket has room again, the queue not
        channel.send_now(b"NEXT")
        channel.writeSequence([b"AND", b"LAST"])
        want = big + b"NEXTANDLAST"
        while len(got) < len(want):
            await _round()
            got += _drain(theirs)
        self.assertEqual(got, want)

    async def test_a_rounds_writes_go_out_at_its_end_in_one_send(self) -> None:
        pairs = [self._pair() for _ in range(3)]
        for n, (channel, _transport, _theirs, _counted) in enumerate(pairs):
            channel.send_now(b"head %d;" % n)
            channel.writeSequence([b"body", b";"])
            channel.send_now(b"more")
        for _channel, transport, theirs, counted in pairs:
            # Nothing is sent while the round runs, and no write event is
            # asked for.
            self.assertEqual((counted.sends, _drain(theirs)), ([], b""))
            self.assertNotIn(transport, reactor.getWriters())
        await _round()
        for n, (_channel, transport, theirs, counted) in enumerate(pairs):
            self.assertEqual(counted.sends, [b"head %d;body;more" % n])
            self.assertEqual(_drain(theirs), b"head %d;body;more" % n)
            self.assertEqual(transport._tempDataLen, 0)
            self.assertNotIn(transport, reactor.getWriters())

    async def test_a_round_past_the_batch_sends_as_it_goes(self) -> None:
        from mockai_tw.web import connections

        self.patch(connections, "SEND_BATCH", 2)
        pairs = [self._pair() for _ in range(3)]
        for n, (channel, _transport, _theirs, _counted) in enumerate(pairs):
            channel.send_now(b"answer %d" % n)
        # The first two were sent when the second was queued; the third
        # waits for the round's end.
        self.assertEqual(
            [counted.sends for *_, counted in pairs],
            [[b"answer 0"], [b"answer 1"], []],
        )
        await _round()
        self.assertEqual(
            [_drain(theirs) for _, _, theirs, _ in pairs],
            [b"answer 0", b"answer 1", b"answer 2"],
        )

    async def test_queued_past_the_buffer_size_pauses_the_producer(self) -> None:
        channel, transport, _theirs, _counted = self._pair()
        paused: list[str] = []

        @implementer(IPushProducer)
        class Producer:
            def pauseProducing(self) -> None:
                paused.append("pause")

            def resumeProducing(self) -> None:
                paused.append("resume")

            def stopProducing(self) -> None:
                paused.append("stop")

        transport.registerProducer(Producer(), True)
        self.addCleanup(transport.unregisterProducer)
        size = transport.bufferSize
        channel.send_now(b"x" * (size // 2))
        channel.send_now(b"y" * (size // 2))
        # At the buffer's size, not past it: Twisted's own test.
        self.assertEqual((paused, transport.producerPaused), ([], False))
        channel.send_now(b"z")
        self.assertEqual((paused, transport.producerPaused), (["pause"], True))
        await _round()

    async def test_a_send_that_fails_strands_nothing(self) -> None:
        (first, _, theirs_1, counted), (second, _, theirs_2, _) = (
            self._pair(),
            self._pair(),
        )
        counted.fail_once = RuntimeError("a bug below the send")
        first.send_now(b"one")
        second.send_now(b"two")
        await _round()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(_drain(theirs_2), b"two")
        # The failed one is left to Twisted's write path, which sends it.
        got: list[bytes] = []

        def all_there() -> bool:
            got.append(_drain(theirs_1))
            return b"".join(got) == b"one"

        await until(all_there)

    async def test_a_close_asked_for_in_the_round_sends_first(self) -> None:
        channel, transport, theirs, _counted = self._pair()
        channel.send_now(b"last words")
        transport.loseConnection()
        while transport.connected:
            await _round()
        self.assertEqual(_drain(theirs), b"last words")
        self.assertEqual(theirs.recv(10), b"")  # then the end of the stream


class IdleTimeoutTests(TestCase):
    timeout = 15

    async def test_an_idle_keep_alive_connection_is_closed(self) -> None:
        live, clock = await start_clocked(self, {"http": {"idle_timeout_s": 10}})
        client = await connect(self, live)
        client.write(HEALTH)
        await client.has(b'"ok"')
        answered = client.received
        clock.advance(9.9)
        self.assertTrue(await still_open(client))
        clock.advance(0.1)
        await client.closed
        # Closed quietly: an idle connection gets no error response.
        self.assertEqual(client.received, answered)
        await until(lambda: not live.server.site.channels)

    def test_a_response_still_being_written_is_not_idle(self) -> None:
        # In memory: the transport says its buffer is full (pauseProducing).
        site, channel, transport, clock = in_memory(self, {"idle_timeout_s": 10})
        channel.dataReceived(HEALTH)
        self.assertIn(b'"ok"', transport.value())
        channel.pauseProducing()
        clock.advance(25)
        self.assertFalse(transport.disconnecting)
        channel.resumeProducing()
        clock.advance(10)
        self.assertTrue(transport.disconnecting)
        channel.connectionLost(Failure(ConnectionError("gone")))
        self.assertEqual(site.channels, set())
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_pipelined_requests_are_answered_then_idle(self) -> None:
        _, channel, transport, clock = in_memory(
            self, {"idle_timeout_s": 10, "request_timeout_s": 5}
        )
        channel.dataReceived(HEALTH * 3)
        self.assertEqual(transport.value().count(b'"ok"'), 3)
        clock.advance(9)
        self.assertFalse(transport.disconnecting)
        clock.advance(1)
        self.assertTrue(transport.disconnecting)
        self.assertNotIn(b" 408 ", transport.value())


class ConnectionCapTests(TestCase):
    timeout = 15

    async def test_connections_past_the_cap_are_closed_at_once(self) -> None:
        lines = capture_log(self)
        live, _ = await start_clocked(self, {"http": {"max_connections": 2}})
        first = await connect(self, live)
        second = await connect(self, live)
        for client in (first, second):
            client.write(HEALTH)
            await client.has(b'"ok"')
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", live.port)
        for _ in range(3):
            refused = await connectProtocol(endpoint, Raw())
            self.addCleanup(refused.close)
            await refused.closed
            self.assertEqual(refused.received, b"")
        # The first two are still served.
        for n, client in enumerate((first, second)):
            client.write(HEALTH)
            await client.has(b'"ok"', 2)
            self.assertTrue(await still_open(client), n)
        refusing = [line for line in lines if "refusing" in line]
        self.assertEqual(
            refusing,
            ["mockai: 2 connections open, refusing new ones (http.max_connections)"],
        )
        await first.close()
        await until(lambda: len(live.server.site.channels) == 1)
        again = [line for line in lines if "accepting new ones again" in line]
        self.assertEqual(len(again), 1, lines)
        self.assertIn("3 refused", again[0])
        third = await connect(self, live)
        third.write(HEALTH)
        await third.has(b'"ok"')
        await third.close()
        await second.close()

    async def test_a_tls_listener_refuses_as_cleanly(self) -> None:
        # Twisted's TLS factory cannot take a refusal; listen() gives it one
        # that can (else this logs an error, which fails the test).
        pem = FilePath(twisted.test.__file__).sibling("server.pem").path
        live, _ = await start_clocked(
            self,
            {"http": {"max_connections": 1}},
            f"ssl:0:interface=127.0.0.1:privateKey={pem}",
        )
        held = await connect(self, live)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", live.port)
        refused = await connectProtocol(endpoint, Raw())
        self.addCleanup(refused.close)
        await refused.closed
        self.assertEqual(refused.received, b"")
        self.assertEqual(len(live.server.site.channels), 1)
        await held.close()


class DescriptorBudgetTests(TestCase):
    def test_the_cap_never_exceeds_the_open_file_limit(self) -> None:
        cap = ConnectionCap(lambda: 10_000, descriptors=192)
        self.assertEqual(cap.limit(), 192)
        self.assertTrue(cap.admit(191))
        self.assertFalse(cap.admit(192))
        self.assertEqual(ConnectionCap(lambda: 100, descriptors=192).limit(), 100)

    def test_the_budget_is_the_soft_limit_less_the_reserve(self) -> None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft == resource.RLIM_INFINITY:
            raise SkipTest("no open-file limit here")
        self.assertEqual(descriptor_budget(), max(1, soft - RESERVED_DESCRIPTORS))


class EmfileSocket:
    """A listening socket stand-in whose ``accept`` fails with EMFILE."""

    def __init__(self, real: socket.socket) -> None:
        self.real = real
        self.failing = True

    def accept(self) -> Any:
        if self.failing:
            raise OSError(errno.EMFILE, "Too many open files")
        raise BlockingIOError(errno.EAGAIN, "try again")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class AcceptErrorTests(TestCase):
    timeout = 15

    async def test_emfile_is_logged_once_per_episode(self) -> None:
        live, _ = await start_clocked(self)
        port: Any = live.listener.port
        real = port.socket
        fake = EmfileSocket(real)
        port.socket = fake
        self.addCleanup(setattr, port, "socket", real)
        lines = capture_log(self)
        for _ in range(50):
            port.doRead()
        fake.failing = False
        port.doRead()
        port.doRead()
        self.assertEqual(
            [line for line in lines if "EMFILE" in line or "accept" in line],
            [
                "mockai: cannot accept connections (EMFILE: Too many open files):"
                " new ones are turned away until descriptors are free; raise the limit"
                " (ulimit -n) or lower http.max_connections below it",
                "mockai: accepting connections again after EMFILE",
            ],
        )
        # A second episode says so again.
        fake.failing = True
        port.doRead()
        port.doRead()
        self.assertEqual(sum("cannot accept" in line for line in lines), 2)
        # The port still works, and the next accept ends the episode.
        port.socket = real
        response = await live.request("GET", "/health")
        self.assertEqual(response.code, 200)
        await treq.content(response)
        self.assertEqual(sum("accepting connections again" in x for x in lines), 2)
