"""The graceful stop: readiness first, a grace period, then no new
connections; in-flight work finishes or is cut at the drain timeout.

The sequence on a fake clock with connections in memory; ``/ready`` and a
drain over the wire on a live listener; the signal handlers.  The real
process (SIGTERM to twistd) is tests/test_drain_daemon.py.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Mapping
from typing import Any, cast

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, TestCase

from mockai_tw.config_load import parse_config
from mockai_tw.drain import CLOSE_TIMEOUT_S, NOW_CLOSE_TIMEOUT_S, StopOnSignal
from mockai_tw.server import MockServer
from tests.openapi import validate
from tests.support import TOKEN, events, merge, start

# Ten characters, one a chunk, 100 ms apart: a stream of about a second.
SLOW = {
    "replies": ["abcdefghij"],
    "stream": {"interval_ms": 100, "chunking": "char"},
}


class Wire(StringTransport):
    """One connection in memory.  ``loseConnection`` completes when the clock
    next turns (what was written has left), unless the peer reads nothing
    (``stuck``); ``abortConnection`` completes at once."""

    def __init__(self, clock: Clock, stuck: bool = False) -> None:
        super().__init__()
        self.clock = clock
        self.stuck = stuck
        self.closed = False
        self.aborted = False
        self.protocol: Any = None

    def loseConnection(self) -> None:
        if self.disconnecting:
            return
        self.disconnecting = True
        if not self.stuck:
            self.clock.callLater(0, self._lost)

    def abortConnection(self) -> None:
        self.aborted = True
        self.disconnecting = True
        self._lost()

    def _lost(self) -> None:
        if not self.closed:
            self.closed = True
            self.protocol.connectionLost(Failure(ConnectionDone()))


def request(method: str, path: str, body: Any = None) -> bytes:
    data = b"" if body is None else json.dumps(body).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    )
    return head.encode() + data


def chat(stream: bool = True) -> bytes:
    return request(
        "POST",
        "/v1/chat/completions",
        {
            "model": "gpt-4o",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": stream,
        },
    )


def parse(data: bytes) -> tuple[int, dict[str, str], bytes, bool]:
    """One HTTP/1.1 response: status, headers, body, and whether it ended
    (a chunked body's last chunk, or a whole Content-Length)."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                return status, headers, body, True
            body += rest[:size]
            rest = rest[size + 2 :]
        return status, headers, body, False
    length = int(headers.get("content-length", "0"))
    return status, headers, rest[:length], len(rest) >= length


class InMemory:
    """A MockServer on a fake clock, its connections in memory."""

    def __init__(self, case: TestCase, overrides: Mapping[str, Any]) -> None:
        self.clock = Clock()
        config = parse_config(merge({"access_token": TOKEN}, overrides), {})
        self.server = MockServer(config, self.clock)
        self.site = self.server.site
        self.drain = self.server.drain
        self.unlistened = 0
        case.addCleanup(self.hang_up)

    def connect(self, data: bytes = b"", stuck: bool = False) -> Wire:
        channel = self.site.buildProtocol(None)
        wire = Wire(self.clock, stuck)
        wire.protocol = channel
        channel.makeConnection(wire)
        if data:
            channel.dataReceived(data)
        return wire

    def stop_listening(self) -> None:
        self.unlistened += 1

    def start(self) -> Deferred[None]:
        return self.drain.start(self.stop_listening)

    def pump(self, seconds: float, step: float = 0.005) -> None:
        for _ in range(round(seconds / step)):
            self.clock.advance(step)

    def hang_up(self) -> None:
        for channel in list(self.site.channels):
            channel.transport.abortConnection()


def last_event(body: bytes) -> bytes:
    return events(body)[-1]


class DrainSequenceTests(TestCase):
    """The sequence on ``task.Clock``."""

    def test_nothing_open_stops_at_once(self) -> None:
        mem = InMemory(self, {})
        mem.server.readiness.serving()
        done = mem.start()
        self.assertTrue(done.called)
        self.assertEqual(mem.unlistened, 1)
        self.assertEqual(mem.server.readiness.state, "draining")
        self.assertEqual(mem.clock.getDelayedCalls(), [])
        # A second stop (a service stopped twice) waits for nothing.
        self.assertTrue(mem.drain.start().called)

    def test_ready_turns_first_then_the_grace_then_the_listener_stops(self) -> None:
        mem = InMemory(self, {"shutdown": {"ready_grace_s": 5}})
        mem.server.readiness.serving()
        kept = mem.connect(request("GET", "/ready"))
        status, headers, body, _ = parse(kept.value())
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["status"], "ready")
        self.assertNotEqual(headers.get("connection"), "close")
        self.assertFalse(kept.disconnecting)

        done = mem.start()
        # Readiness is off at once; the idle keep-alive connection is closed.
        self.assertEqual(mem.server.readiness.state, "draining")
        self.assertTrue(kept.disconnecting)
        self.assertEqual(mem.unlistened, 0)
        # A connection made during the grace is served, and told to go.
        late = mem.connect(request("GET", "/ready"))
        status, headers, body, _ = parse(late.value())
        self.assertEqual(status, 503)
        self.assertEqual(headers["connection"], "close")
        self.assertEqual(
            json.loads(body)["error"],
            {
                "message": json.loads(body)["error"]["message"],
                "type": "server_error",
                "param": None,
                "code": "server_draining",
            },
        )
        self.assertTrue(late.disconnecting)
        health = mem.connect(request("GET", "/health"))
        self.assertEqual(parse(health.value())[0], 200)

        mem.clock.advance(4.9)
        self.assertEqual(mem.unlistened, 0)
        self.assertFalse(done.called)
        mem.clock.advance(0.1)
        self.assertEqual(mem.unlistened, 1)
        mem.clock.advance(0)
        self.assertTrue(done.called)
        self.assertEqual(mem.site.channels, set())

    def test_in_flight_stream_runs_to_its_end(self) -> None:
        mem = InMemory(self, SLOW)
        mem.server.readiness.serving()
        wire = mem.connect(chat())
        mem.pump(0.2)
        done = mem.start()
        # No grace: the listener stops now; the stream goes on.
        self.assertEqual(mem.unlistened, 1)
        self.assertFalse(done.called)
        self.assertEqual(len(mem.server.ticker.streams), 1)
        mem.pump(1.5)
        status, _, body, ended = parse(wire.value())
        self.assertEqual(status, 200)
        self.assertTrue(ended)
        self.assertEqual(last_event(body), b"[DONE]")
        text = "".join(
            json.loads(e)["choices"][0]["delta"].get("content") or ""
            for e in events(body)[:-1]
        )
        self.assertEqual(text, "abcdefghij")
        self.assertTrue(wire.closed)
        self.assertTrue(done.called)
        self.assertEqual(mem.drain.cut, 0)

    def test_drain_timeout_cuts_a_stream_with_the_error_event(self) -> None:
        mem = InMemory(self, merge(SLOW, {"shutdown": {"drain_timeout_s": 0.3}}))
        mem.server.readiness.serving()
        wire = mem.connect(chat())
        done = mem.start()
        mem.pump(0.295)
        self.assertFalse(done.called)
        self.assertEqual(len(mem.server.ticker.streams), 1)
        mem.pump(0.01)
        status, _, body, ended = parse(wire.value())
        self.assertEqual(status, 200)
        # The stream ends properly, its last event the error.
        self.assertTrue(ended)
        error = json.loads(last_event(body))["error"]
        self.assertEqual(error["code"], "server_shutting_down")
        self.assertEqual(error["type"], "server_error")
        self.assertIsNone(error["param"])
        validate({"error": error}, "ErrorResponse")
        self.assertNotIn(b"[DONE]", body)
        self.assertEqual(mem.drain.cut, 1)
        mem.clock.advance(0)
        self.assertTrue(wire.closed)
        self.assertFalse(wire.aborted)
        self.assertTrue(done.called)
        self.assertEqual(mem.server.ticker.streams, set())

    def test_a_responses_stream_is_cut_with_its_own_error_event(self) -> None:
        mem = InMemory(self, merge(SLOW, {"shutdown": {"drain_timeout_s": 0.3}}))
        mem.server.readiness.serving()
        wire = mem.connect(
            request(
                "POST",
                "/v1/responses",
                {"model": "gpt-4o", "input": "hi", "stream": True},
            )
        )
        mem.start()
        mem.pump(0.31)
        body = parse(wire.value())[2]
        last = body.rstrip(b"\n").split(b"\n\n")[-1]
        self.assertTrue(last.startswith(b"event: error\n"), last)
        payload = json.loads(last.split(b"data: ", 1)[1])
        self.assertEqual(payload["type"], "error")
        self.assertEqual(payload["code"], "server_shutting_down")

    def test_a_delayed_plain_body_is_closed(self) -> None:
        mem = InMemory(
            self,
            merge(
                SLOW,
                {
                    "timing": {"non_stream": True},
                    "shutdown": {"drain_timeout_s": 0.3},
                },
            ),
        )
        mem.server.readiness.serving()
        wire = mem.connect(chat(stream=False))
        done = mem.start()
        mem.pump(0.31)
        mem.clock.advance(0)
        self.assertTrue(wire.closed)
        # Nothing of the body was sent: the client sees the connection close.
        self.assertNotIn(b"chat.completion", wire.value())
        self.assertTrue(done.called)

    def test_a_connection_that_reads_nothing_is_aborted(self) -> None:
        mem = InMemory(self, merge(SLOW, {"shutdown": {"drain_timeout_s": 0.3}}))
        mem.server.readiness.serving()
        wire = mem.connect(chat(), stuck=True)
        done = mem.start()
        mem.pump(0.31)
        self.assertTrue(wire.disconnecting)
        self.assertFalse(wire.closed)
        mem.clock.advance(CLOSE_TIMEOUT_S - 0.1)
        self.assertFalse(done.called)
        mem.clock.advance(0.1)
        self.assertTrue(wire.aborted)
        self.assertEqual(mem.drain.aborted, 1)
        self.assertTrue(done.called)

    def test_a_request_still_arriving_is_answered_then_closed(self) -> None:
        mem = InMemory(self, {})
        mem.server.readiness.serving()
        data = request("GET", "/health")
        wire = mem.connect(data[:20])
        done = mem.start()
        self.assertFalse(wire.disconnecting)
        self.assertFalse(done.called)
        wire.protocol.dataReceived(data[20:])
        status, headers, _, ended = parse(wire.value())
        self.assertEqual((status, ended), (200, True))
        self.assertEqual(headers["connection"], "close")
        mem.clock.advance(0)
        self.assertTrue(wire.closed)
        self.assertTrue(done.called)

    def test_stop_at_once_during_the_grace(self) -> None:
        mem = InMemory(self, merge(SLOW, {"shutdown": {"ready_grace_s": 10}}))
        mem.server.readiness.serving()
        wire = mem.connect(chat())
        done = mem.start()
        mem.pump(0.2)
        mem.drain.now()
        self.assertEqual(mem.unlistened, 1)
        error = json.loads(last_event(parse(wire.value())[2]))["error"]
        self.assertEqual(error["code"], "server_shutting_down")
        self.assertFalse(done.called)
        # Done as soon as the connection has sent what it was given.
        mem.clock.advance(0)
        self.assertTrue(done.called)
        self.assertEqual(mem.clock.getDelayedCalls(), [])

    def test_stop_at_once_waits_little_for_a_connection_that_reads_nothing(
        self,
    ) -> None:
        mem = InMemory(self, merge(SLOW, {"shutdown": {"ready_grace_s": 10}}))
        mem.server.readiness.serving()
        wire = mem.connect(chat(), stuck=True)
        done = mem.start()
        mem.drain.now()
        mem.clock.advance(NOW_CLOSE_TIMEOUT_S - 0.01)
        self.assertFalse(done.called)
        mem.clock.advance(0.01)
        self.assertTrue(wire.aborted)
        self.assertTrue(done.called)

    def test_stop_at_once_before_the_stop_begins(self) -> None:
        mem = InMemory(self, merge(SLOW, {"shutdown": {"ready_grace_s": 10}}))
        mem.server.readiness.serving()
        wire = mem.connect(chat())
        mem.drain.now()
        self.assertEqual(len(mem.server.ticker.streams), 1)
        done = mem.start()
        self.assertEqual(mem.unlistened, 1)
        self.assertIn(b"server_shutting_down", wire.value())
        mem.clock.advance(0)
        self.assertTrue(done.called)

    def test_no_grace_when_never_ready(self) -> None:
        mem = InMemory(self, {"shutdown": {"ready_grace_s": 10}})
        wire = mem.connect(request("GET", "/ready"))
        status, _, body, _ = parse(wire.value())
        self.assertEqual(status, 503)
        self.assertEqual(json.loads(body)["error"]["code"], "server_starting")
        done = mem.start()
        # No grace: the listener stops at once, the idle connection closes.
        self.assertEqual(mem.unlistened, 1)
        mem.clock.advance(0)
        self.assertTrue(done.called)

    def test_ready_answers_head(self) -> None:
        mem = InMemory(self, {})
        mem.server.readiness.serving()
        wire = mem.connect(request("HEAD", "/ready"))
        self.assertEqual(parse(wire.value())[0], 200)
        mem.start()
        wire = mem.connect(request("HEAD", "/ready"))
        status = parse(wire.value())[0]
        self.assertEqual(status, 503)
        self.assertEqual(wire.value().partition(b"\r\n\r\n")[2], b"")


class FakeReactor:
    def __init__(self) -> None:
        self.stops = 0

    def stop(self) -> None:
        self.stops += 1

    def callFromThread(self, f: Any, *args: Any) -> None:
        f(*args)

    def callWhenRunning(self, f: Any, *args: Any) -> None:
        f(*args)


class StopSignalTests(TestCase):
    def setUp(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            raise SkipTest("signal handlers need the main thread")
        self.before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        self.mem = InMemory(self, merge(SLOW, {"shutdown": {"ready_grace_s": 10}}))
        self.mem.server.readiness.serving()
        self.reactor = FakeReactor()
        self.service = StopOnSignal(self.mem.drain, self.reactor)
        self.service.startService()
        self.addCleanup(self.service._restore)

    def test_first_signal_stops_the_reactor_a_second_ends_the_drain(self) -> None:
        wire = self.mem.connect(chat())
        handler = signal.getsignal(signal.SIGTERM)
        self.assertEqual(signal.getsignal(signal.SIGINT), handler)
        assert callable(handler)
        handler(signal.SIGTERM, None)
        self.assertEqual(self.reactor.stops, 1)
        # The reactor's stop runs the services' stopService: the drain.
        done = self.mem.start()
        stopped = self.service.stopService()
        assert stopped is not None
        self.assertNotIn(b"server_shutting_down", wire.value())
        handler(signal.SIGINT, None)
        self.assertEqual(self.reactor.stops, 1)
        self.assertIn(b"server_shutting_down", wire.value())
        self.mem.clock.advance(0)
        self.assertTrue(done.called)
        self.assertTrue(stopped.called)
        # The previous handlers are back once the drain is over.
        self.assertEqual({s: signal.getsignal(s) for s in self.before}, self.before)

    def test_an_ignored_signal_stays_ignored(self) -> None:
        self.service._restore()
        self.service.stopService()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.addCleanup(signal.signal, signal.SIGINT, self.before[signal.SIGINT])
        service = StopOnSignal(self.mem.drain, self.reactor)
        service.startService()
        self.addCleanup(service._restore)
        self.assertEqual(signal.getsignal(signal.SIGINT), signal.SIG_IGN)
        self.assertEqual(signal.getsignal(signal.SIGTERM), service._signal)

    def test_a_signal_before_the_reactor_runs_is_a_graceful_stop(self) -> None:
        # Seen: a SIGTERM in the second after start (before the reactor ran)
        # killed the process outright, with Python's default action.
        self.service._restore()
        self.service.stopService()
        later: list[Any] = []
        reactor = FakeReactor()
        reactor.callWhenRunning = lambda f, *a: later.append((f, a))  # type: ignore[method-assign]
        service = StopOnSignal(self.mem.drain, reactor)
        service.startService()
        self.addCleanup(service._restore)
        handler = signal.getsignal(signal.SIGTERM)
        self.assertNotEqual(handler, signal.SIG_DFL)
        assert callable(handler)
        handler(signal.SIGTERM, None)
        self.assertEqual(reactor.stops, 0)  # not running yet: nothing to stop
        for f, a in later:  # the reactor starts
            f(*a)
        self.assertEqual(reactor.stops, 1)
        self.assertEqual(signal.getsignal(signal.SIGTERM), service._signal)

    def test_stopped_without_a_drain_restores_at_once(self) -> None:
        self.assertIsNot(signal.getsignal(signal.SIGTERM), self.before[signal.SIGTERM])
        self.assertIsNone(self.service.stopService())
        self.assertEqual({s: signal.getsignal(s) for s in self.before}, self.before)


class LiveReadinessTests(TestCase):
    """``/ready`` and a drain over the wire (the listener ``makeService`` builds)."""

    async def test_ready_then_503_while_draining(self) -> None:
        live = await start(self, {"shutdown": {"ready_grace_s": 30}})
        response, body = await live.json("GET", "/ready", token=None)
        self.assertEqual(response.code, 200)
        self.assertEqual(body["status"], "ready")
        self.assertEqual(body["version"], live.server.version)

        stopping = live.listener.stopService()
        # Still accepting (the grace), but not ready; still alive.
        response, body = await live.json("GET", "/ready", token=None)
        self.assertEqual(response.code, 503)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["application/json"]
        )
        self.assertEqual(body["error"]["code"], "server_draining")
        self.assertEqual(body["error"]["type"], "server_error")
        self.assertIsNone(body["error"]["param"])
        validate(body, "ErrorResponse")
        response, body = await live.json("GET", "/health", token=None)
        self.assertEqual(response.code, 200)
        self.assertEqual(body["status"], "ok")
        live.server.drain.now()
        await stopping

    async def test_a_stream_in_flight_finishes_and_new_connections_are_refused(
        self,
    ) -> None:
        live = await start(self, merge(SLOW, {"stream": {"interval_ms": 30}}))
        response = await live.request(
            "POST",
            "/v1/chat/completions",
            {
                "model": "gpt-4o",
                "messages": [{"role": "user", "content": "hi"}],
                "stream": True,
            },
        )
        first: Deferred[None] = Deferred()
        chunks: list[bytes] = []

        def got(data: bytes) -> None:
            chunks.append(data)
            if not first.called:
                first.callback(None)

        collected = treq.collect(response, got)
        await first
        stopping = live.listener.stopService()
        with self.assertRaises(ConnectionRefusedError):
            await live.request("GET", "/health")
        await collected
        await stopping
        body = b"".join(chunks)
        self.assertEqual(events(body)[-1], b"[DONE]")
        self.assertNotIn(b"server_shutting_down", body)

    async def test_the_sdk_sees_the_cut_as_an_error(self) -> None:
        import openai

        live = await start(
            self,
            merge(
                SLOW,
                {"stream": {"interval_ms": 200}, "shutdown": {"drain_timeout_s": 0.3}},
            ),
        )
        client = live.sdk()
        first: Deferred[None] = Deferred()
        told: list[bool] = []

        def consume() -> list[str]:
            got = []
            stream = client.chat.completions.create(
                model="gpt-4o",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
            )
            for chunk in stream:
                got.append(chunk.choices[0].delta.content or "")
                if not told:
                    told.append(True)
                    cast(Any, reactor).callFromThread(first.callback, None)
            return got

        consumed = live.in_thread(consume)
        await first
        stopping = live.listener.stopService()
        with self.assertRaises(openai.APIError) as raised:
            await consumed
        self.assertEqual(raised.exception.code, "server_shutting_down")
        await stopping
        self.assertEqual(live.server.drain.cut, 1)
