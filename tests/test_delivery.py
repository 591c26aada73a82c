"""Pacing on a fake clock; disconnects and backpressure on a live listener."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from mockai_tw.delivery import CATCH_UP_TICKS, Stream, Ticker
from tests.support import TOKEN, Live, events, start


@implementer(IPushProducer)
class FakeRequest:
    """Records writes with the fake clock's time."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.writes: list[tuple[float, bytes]] = []
        self.finished = False
        self.producer: Any = None

    def write(self, data: bytes) -> None:
        self.writes.append((self.clock.seconds(), data))

    def finish(self) -> None:
        self.finished = True

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def pauseProducing(self) -> None: ...
    def resumeProducing(self) -> None: ...
    def stopProducing(self) -> None: ...


def paced(n: int, interval: float, first: float = 0.0) -> list[tuple[float, bytes]]:
    return [(first + i * interval, b"e%d;" % i) for i in range(n)]


class TickerTests(TestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.ticker = Ticker(self.clock, 0.005)

    def open(self, events: list[tuple[float, bytes]]) -> tuple[Stream, FakeRequest]:
        request = FakeRequest(self.clock)
        stream = Stream(request, iter(events), self.clock.seconds())
        self.ticker.add(stream)
        return stream, request

    def test_events_written_when_due(self) -> None:
        _, request = self.open(paced(4, 0.1))
        self.assertEqual(request.writes, [(0.0, b"e0;")])
        self.clock.pump([0.005] * 80)
        times = [round(t, 3) for t, _ in request.writes]
        self.assertEqual(times, [0.0, 0.1, 0.2, 0.3])
        self.assertTrue(request.finished)
        self.assertEqual(self.ticker.streams, set())
        self.assertFalse(self.ticker.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_one_loop_serves_many_streams(self) -> None:
        requests = [self.open(paced(3, 0.02, first=0.01 * i))[1] for i in range(50)]
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.pump([0.005] * 120)
        for i, request in enumerate(requests):
            data = b"".join(d for _, d in request.writes)
            self.assertEqual(data, b"e0;e1;e2;", i)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stalled_reactor_catches_up_in_one_write(self) -> None:
        _, request = self.open(paced(10, 0.02))
        self.clock.advance(0.105)  # the reactor was busy for five intervals
        self.assertEqual(request.writes[-1], (0.105, b"e1;e2;e3;e4;e5;"))
        self.clock.pump([0.005] * 40)
        self.assertEqual(
            b"".join(d for _, d in request.writes),
            b"".join(e for _, e in paced(10, 0.02)),
        )
        self.assertTrue(request.finished)

    def _wave(self, n: int) -> tuple[list[FakeRequest], FakeRequest]:
        """``n`` streams due at 20 ms whose writes take 1.2 ms of CPU each
        (the clock moves as they write), and one stream due during their
        tick: at 21 and 41 ms."""

        class Costly(FakeRequest):
            def write(self, data: bytes) -> None:
                super().write(data)
                self.clock.rightNow += 0.0012

        def costly(events: list[tuple[float, bytes]]) -> FakeRequest:
            request = Costly(self.clock)
            self.ticker.add(Stream(request, iter(events), 0.0))
            return request

        wave = [costly([(0.02, b"a;"), (0.1, b"z;")]) for _ in range(n)]
        late = costly([(0.021, b"b;"), (0.041, b"c;"), (0.1, b"z;")])
        self.clock.pump([0.005] * 4)
        self.assertEqual([round(r.writes[0][0], 4) for r in wave[:2]], [0.02, 0.0212])
        return wave, late

    def _finish(self, requests: list[FakeRequest]) -> None:
        self.clock.pump([0.005] * 30)
        self.assertTrue(all(r.finished for r in requests))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_a_long_tick_is_caught_up_after_io_not_at_the_next_interval(self) -> None:
        # Ten writes: the tick runs 12 ms.  The stream that fell due during
        # it goes out when it ends (after a round of I/O), not at the loop's
        # next interval (35 ms): under load, waiting made ticks ratchet apart.
        wave, late = self._wave(10)
        self.assertEqual([(round(t, 4), d) for t, d in late.writes], [(0.032, b"b;")])
        # And then the loop alone again: one call pending, no second pass.
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self._finish([*wave, late])

    def test_a_tick_past_capacity_is_not_caught_up(self) -> None:
        # Twenty writes: the tick runs 24 ms, past CATCH_UP_TICKS intervals.
        # The late stream waits for the loop's next interval (45 ms), and
        # what it owes by then goes out in one write.
        self.assertLess(CATCH_UP_TICKS * 0.005, 0.024)
        wave, late = self._wave(20)
        self.assertEqual(late.writes, [])
        self.clock.advance(0.045 - self.clock.seconds())
        self.assertEqual([(round(t, 4), d) for t, d in late.writes], [(0.045, b"b;c;")])
        self._finish([*wave, late])

    def test_pause_stops_writes_and_resume_writes_what_is_owed(self) -> None:
        stream, request = self.open(paced(6, 0.01))
        stream.pauseProducing()
        self.clock.pump([0.005] * 12)
        self.assertEqual(len(request.writes), 1)
        stream.resumeProducing()
        self.assertEqual(request.writes[-1][1], b"e1;e2;e3;e4;e5;")
        self.assertTrue(request.finished)

    def test_float_rounding_cannot_spin_the_tick(self) -> None:
        # now - start < due, yet start + due == now: seen under load.
        start, due, now = 1795524932.2511227, 0.54, 1795524932.7911227
        self.assertLess(now - start, due)
        self.assertEqual(start + due, now)
        self.clock.advance(start)
        _, request = self.open([(0.0, b"a;"), (due, b"b;"), (due + 0.02, b"c;")])
        self.clock.advance(now - self.clock.seconds())
        self.assertEqual(self.clock.seconds(), now)
        self.assertEqual(request.writes[-1][1], b"b;")
        self.clock.pump([0.005] * 10)
        self.assertTrue(request.finished)

    def test_one_failing_stream_stops_no_other(self) -> None:
        # Seen: a generator that raised killed the shared LoopingCall, and
        # every open and later stream hung.
        def failing() -> Iterator[tuple[float, bytes]]:
            yield 0.0, b"f0;"
            yield 0.01, b"f1;"
            raise ValueError("a renderer broke")

        _, healthy_request = self.open(paced(5, 0.01))
        broken_request = FakeRequest(self.clock)
        broken = Stream(
            broken_request,
            failing(),
            self.clock.seconds(),
            failed=lambda: b'data: {"error": {}}\n\n',
        )
        self.ticker.add(broken)
        self.clock.pump([0.005] * 4)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(
            [d for _, d in broken_request.writes],
            [b"f0;", b"f1;", b'data: {"error": {}}\n\n'],
        )
        self.assertTrue(broken_request.finished)
        self.assertEqual(broken.close_reason, "failed")
        self.assertNotIn(broken, self.ticker.streams)
        self.assertTrue(self.ticker.running)
        _, later_request = self.open(paced(5, 0.01))
        self.clock.pump([0.005] * 40)
        for request in (healthy_request, later_request):
            self.assertEqual(b"".join(d for _, d in request.writes), b"e0;e1;e2;e3;e4;")
            self.assertTrue(request.finished)
        self.assertEqual(self.ticker.streams, set())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stream_failing_at_its_first_event_ends_alone(self) -> None:
        def failing() -> Iterator[tuple[float, bytes]]:
            raise ValueError("nothing to say")
            yield 0.0, b""  # pragma: no cover - makes this a generator

        request = FakeRequest(self.clock)
        stream = Stream(request, failing(), 0.0, failed=lambda: b"end;")
        self.ticker.add(stream)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(request.writes, [(0.0, b"end;")])
        self.assertTrue(request.finished)
        self.assertEqual(self.ticker.streams, set())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_disconnect_forgets_the_stream(self) -> None:
        stream, request = self.open(paced(100, 0.01))
        self.clock.pump([0.005] * 4)
        stream.connectionLost(Failure(ConnectionError("gone")))
        written = len(request.writes)
        self.clock.pump([0.005] * 20)
        self.assertEqual(len(request.writes), written)
        self.assertFalse(request.finished)
        self.assertEqual(self.ticker.streams, set())
        self.assertIsNone(stream.request)
        self.assertIsNone(stream.events)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class SlowReader(Protocol):
    """Sends one streaming request, then reads only when told to."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.received = b""
        self.lost: Deferred[None] = Deferred()
        self.first: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if not self.first.called:
            self.first.callback(None)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost.callback(None)


def chat_request(body: dict[str, Any]) -> bytes:
    data = json.dumps(body).encode()
    return (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(data)
    ) + data


async def connect(live: Live, body: dict[str, Any]) -> SlowReader:
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", live.port)
    return await connectProtocol(endpoint, SlowReader(chat_request(body)))


async def paused_reader(case: TestCase, live: Live) -> tuple[SlowReader, Any, Stream]:
    """A stream whose client stopped reading, once the server has paused it."""
    paused = when(live, "paused")
    client = await connect(live, BODY)
    transport: Any = client.transport
    case.addCleanup(transport.abortConnection)
    transport.pauseProducing()
    return client, transport, await paused


# The pipeline's event for what a test waits on (hooks name requests).
HOOKS = {"opened": "first_byte", "paused": "paused", "closed": "disconnected"}


def when(live: Live, what: str) -> Deferred[Stream]:
    """Fires the next time the pipeline reports ``what`` for a stream."""
    d: Deferred[Stream] = Deferred()
    event = HOOKS[what]

    def observe(request: Any, *rest: Any) -> None:
        if request.stream is not None and not d.called:
            live.server.hooks.off(event, observe)
            d.callback(request.stream)

    live.server.hooks.on(event, observe)
    return d


BODY = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
}


class LiveStreamTests(TestCase):
    async def test_disconnect_mid_stream_leaves_nothing_behind(self) -> None:
        live = await start(self, {"stream": {"interval_ms": 20, "chunking": "char"}})
        ticker = live.server.ticker
        opened = when(live, "opened")
        gone = when(live, "closed")
        client = await connect(live, BODY)
        stream = await opened
        await client.first
        self.assertEqual(ticker.streams, {stream})
        self.assertTrue(ticker.running)
        assert client.transport is not None
        client.transport.loseConnection()
        self.assertIs(await gone, stream)
        self.assertIn(stream.close_reason, ("disconnected", "stopped"))
        self.assertEqual(ticker.streams, set())
        self.assertFalse(ticker.running)
        self.assertIsNone(stream.request)
        self.assertFalse([c for c in reactor.getDelayedCalls() if "Ticker" in repr(c)])
        await client.lost

    async def test_a_reader_that_pauses_gets_every_byte_in_order(self) -> None:
        # Sends go straight to the socket only while nothing is queued: once
        # the kernel is full the rest queues, and no later chunk overtakes it.
        words = [f"w{i}" for i in range(30_000)]
        live = await start(
            self, {"replies": [" ".join(words)], "stream": {"chunking": "word"}}
        )
        client, transport, stream = await paused_reader(self, live)
        self.assertTrue(stream.paused)
        done: Deferred[None] = Deferred()
        seen = client.dataReceived

        def received(data: bytes) -> None:
            seen(data)
            if client.received.endswith(b"\r\n0\r\n\r\n") and not done.called:
                done.callback(None)

        client.dataReceived = received  # type: ignore[method-assign]
        transport.resumeProducing()
        await done
        head, _, chunked = client.received.partition(b"\r\n\r\n")
        self.assertIn(b"transfer-encoding: chunked", head.lower())
        body = b""
        while True:
            size, _, rest = chunked.partition(b"\r\n")
            n = int(size, 16)
            if n == 0:
                break
            self.assertEqual(rest[n : n + 2], b"\r\n")
            body += rest[:n]
            chunked = rest[n + 2 :]
        text = "".join(
            (json.loads(e)["choices"] or [{}])[0].get("delta", {}).get("content") or ""
            for e in events(body)[:-1]
        )
        self.assertEqual(text, " ".join(words))

    async def test_client_that_stops_reading_is_not_buffered(self) -> None:
        # ~40 MB of events if the server kept writing; the kernel takes a few MB.
        reply = "lorem " * 200_000
        total = 200_000 * 200
        live = await start(self, {"replies": [reply], "stream": {"chunking": "word"}})
        ticker = live.server.ticker
        buffered: list[int] = []

        def on_pause(origin: Any) -> None:
            # What the server holds in user space each time it stops producing.
            stream = origin.stream
            if stream.request is not None:
                transport: Any = stream.request.channel.transport
                held = len(transport.dataBuffer) + sum(
                    map(len, transport._tempDataBuffer)
                )
                buffered.append(held)

        live.server.hooks.on("paused", on_pause)
        client, transport, stream = await paused_reader(self, live)
        # Give the reactor a few turns: the kernel fills, the stream stays paused.
        for _ in range(5):
            await deferLater(reactor, 0.02)
        self.assertTrue(stream.paused)
        self.assertGreater(len(buffered), 0)
        self.assertLess(max(buffered), 256 * 1024)
        self.assertLess(stream.bytes_written, total / 4)
        written = stream.bytes_written
        await deferLater(reactor, 0.05)
        self.assertEqual(stream.bytes_written, written)
        gone = when(live, "closed")
        transport.loseConnection()
        await gone
        await client.lost
        self.assertEqual(ticker.streams, set())
        self.assertFalse(ticker.running)
