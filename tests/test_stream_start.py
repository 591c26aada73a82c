"""A stream's start and its chunks take short cuts; each sends what the long
way sends.

- Delivery pumps a one-choice text stream (wire/chat.py ``TextStream``) with
  one ``take_due`` call per write (``Stream._take``) instead of peeking at
  its events one by one (``Stream.pump``'s general loop): the same writes,
  at the same times, cut into the same batches, ending the same way, through
  pauses, stalls, small batch limits and a renderer that fails.
- ``take_due`` renders what ``due_next`` and ``next`` render.
- A text stream's prefix is spliced from bytes kept per model
  (``stream_prefix``): the general prefix's bytes, or the general prefix.
- Metrics count open streams as an int folded into the gauge at each read,
  and find a first chunk's children by (endpoint, model).
- Through the whole Site, the bytes on the wire are the same either way.
"""

from __future__ import annotations

import dataclasses
import gc
import re
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any, cast

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from mockai_tw import delivery, metrics
from mockai_tw.config_load import parse_config
from mockai_tw.delivery import Stream, Ticker
from mockai_tw.engine.plan import ChatPlan, ChoicePlan, Pacing, Usage
from mockai_tw.hooks import Hooks
from mockai_tw.journal import Journal
from mockai_tw.server import MockServer
from mockai_tw.web import pipeline
from mockai_tw.wire import chat
from mockai_tw.wire.errors import error_event
from tests.test_delivery import FakeRequest

PIECE = st.text(max_size=6)
PACING = st.one_of(
    st.builds(
        Pacing,
        st.sampled_from([0.0, 0.01, 0.25]),
        st.sampled_from([0.0, 0.005, 0.02, 0.1]),
    ),
    st.builds(
        Pacing.from_gaps,
        st.sampled_from([0.0, 0.1]),
        st.lists(st.sampled_from([0.0, 0.002, 0.01, 0.3]), max_size=6),
    ),
)
# Where the clock starts: 0, and a time at which start + due and now - start
# round differently (tests/test_delivery.py test_float_rounding_...).
START = st.sampled_from([0.0, 1795524932.2511227])
TICKS = st.lists(st.sampled_from([0.0, 0.001, 0.005, 0.02, 0.2, 1.0]), max_size=40)


STEADY = Pacing()


def _plan(
    pieces: Sequence[str],
    include_usage: bool = False,
    content_filter: bool = False,
    pacing: Pacing = STEADY,
    index: int = 0,
    model: str = "gpt-4o-mini",
) -> ChatPlan:
    return ChatPlan(
        id="chatcmpl-x1",
        created=1732440000,
        model=model,
        system_fingerprint="fp_1a2b3c",
        choices=(ChoicePlan(index, tuple(pieces), "stop"),),
        usage=Usage(7, len(pieces)),
        stream=True,
        include_usage=include_usage,
        content_filter=content_filter,
        pacing=pacing,
    )


class Backpressured(FakeRequest):
    """Pauses its producer after every ``every``-th write, as a transport
    whose buffer filled would, until the test resumes it."""

    def __init__(self, clock: Clock, every: int) -> None:
        super().__init__(clock)
        self.every = every

    def write(self, data: bytes) -> None:
        super().write(data)
        paused = self.every and len(self.writes) % self.every == 0
        if paused and self.producer is not None:
            self.producer.pauseProducing()


def _deliver(
    plan: ChatPlan,
    taking: bool,
    start: float,
    ticks: Sequence[float],
    every: int = 0,
) -> tuple[Any, ...]:
    """Everything a stream's delivery shows, pumped one way or the other."""
    clock = Clock()
    clock.advance(start)
    ticker = Ticker(clock, 0.005)
    request = Backpressured(clock, every)
    events = chat.chat_stream(plan)
    assert isinstance(events, chat.TextStream)
    stream = Stream(request, events, clock.seconds(), error_event=error_event)
    assert stream.taking
    stream.taking = taking
    request.registerProducer(stream, True)
    ticker.add(stream)
    for step in [*ticks, *[0.05] * 200]:
        clock.advance(step)
        if stream.paused:
            stream.resumeProducing()
        if stream.closed:
            break
    return (
        request.writes,
        request.finished,
        stream.closed,
        stream.close_reason,
        stream.events_written,
        stream.bytes_written,
        len(ticker.streams),
        len(clock.getDelayedCalls()),
    )


class TakeDueTests(SynchronousTestCase):
    """``take_due`` against ``due_next`` and ``next``, event by event."""

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(PIECE, max_size=8),
        st.booleans(),
        st.booleans(),
        PACING,
        START,
        st.lists(st.floats(0, 2), max_size=12),
        st.one_of(st.sampled_from([1, 30, 200, 64 * 1024]), st.integers(-4, -1)),
    )
    def test_takes_what_next_gives(
        self,
        pieces: list[str],
        include_usage: bool,
        content_filter: bool,
        pacing: Pacing,
        start: float,
        nows: list[float],
        limit: int,
    ) -> None:
        plan = _plan(pieces, include_usage, content_filter, pacing)
        fast = chat.TextStream(plan, plan.choices[0])
        general = list(chat._chat_stream(plan))
        if limit < 0:
            # A limit met exactly: the bytes of the first few events.
            limit = sum(len(e) for _, e in general[:-limit]) or 1
        at = 0
        for now in sorted(start + n for n in nows):
            taken: list[bytes] = []
            due = fast.take_due(start, now, taken, limit)
            want: list[bytes] = []
            size = 0
            while at < len(general) and start + general[at][0] <= now and size < limit:
                want.append(general[at][1])
                size += len(general[at][1])
                at += 1
            self.assertEqual(taken, want)
            self.assertEqual(due, general[at][0] if at < len(general) else None)
            self.assertEqual(due, fast.due_next())

    def test_taken_to_the_end_and_no_further(self) -> None:
        plan = _plan(["a", "b"], include_usage=True)
        stream = chat.TextStream(plan, plan.choices[0])
        taken: list[bytes] = []
        self.assertIsNone(stream.take_due(0.0, 10.0, taken, 1 << 20))
        self.assertEqual(taken, [e for _, e in chat._chat_stream(plan)])
        again: list[bytes] = []
        self.assertIsNone(stream.take_due(0.0, 10.0, again, 1 << 20))
        self.assertEqual(again, [])
        self.assertIsNone(next(stream, None))


class TakingPumpTests(SynchronousTestCase):
    """``Stream._take`` against the general ``pump``, on a fake clock."""

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(PIECE, max_size=10),
        st.booleans(),
        PACING,
        START,
        TICKS,
        st.sampled_from([0, 1, 2, 3]),
        st.one_of(
            st.sampled_from([1, 40, 200, delivery.MAX_BATCH_BYTES]),
            st.integers(-3, -1),
        ),
    )
    def test_same_writes_as_the_general_pump(
        self,
        pieces: list[str],
        include_usage: bool,
        pacing: Pacing,
        start: float,
        ticks: list[float],
        every: int,
        batch: int,
    ) -> None:
        plan = _plan(pieces, include_usage, False, pacing)
        if batch < 0:
            # A batch filled exactly by the first few events.
            events = list(chat._chat_stream(plan))
            batch = sum(len(e) for _, e in events[:-batch])
        self.patch(delivery, "MAX_BATCH_BYTES", batch)
        fast = _deliver(plan, True, start, ticks, every)
        general = _deliver(plan, False, start, ticks, every)
        self.assertEqual(fast, general)
        self.assertTrue(fast[1])  # finished

    def test_a_stalled_tick_writes_what_is_owed_in_one_write(self) -> None:
        plan = _plan(["a", "b", "c", "d"], pacing=Pacing(0.0, 0.02))
        fast = _deliver(plan, True, 0.0, [0.105])
        self.assertEqual(fast, _deliver(plan, False, 0.0, [0.105]))
        times = [t for t, _ in fast[0]]
        # Role and first piece at once; the rest, owed by 0.105, in one write.
        self.assertEqual(times, [0.0, 0.105])

    def test_a_piece_that_cannot_render_ends_the_stream_alike(self) -> None:
        # orjson refuses a lone surrogate: the stream's events fail there.
        plan = _plan(["a", "b", "\ud800", "c"], pacing=Pacing(0.0, 0.01))
        for batch in (1, delivery.MAX_BATCH_BYTES):
            self.patch(delivery, "MAX_BATCH_BYTES", batch)
            fast = _deliver(plan, True, 0.0, [0.1])
            general = _deliver(plan, False, 0.0, [0.1])
            self.assertEqual(fast, general)
            self.assertEqual(fast[3], "failed")
            self.assertIn(b'"error"', fast[0][-1][1])
        self.flushLoggedErrors(TypeError)

    def test_other_events_keep_the_general_pump(self) -> None:
        stream = Stream(FakeRequest(Clock()), iter([(0.0, b"a")]), 0.0)
        self.assertFalse(stream.taking)
        plan = _plan(["a"])
        self.assertFalse(
            Stream(FakeRequest(Clock()), chat._chat_stream(plan), 0.0).taking
        )


NAME = st.text(
    st.one_of(st.sampled_from('%"\\\x00{}:,'), st.characters(codec="utf-8")),
    max_size=8,
)


class StreamPrefixTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(NAME, NAME, NAME, NAME, st.integers(-(2**70), 2**70))
    def test_the_spliced_prefix_is_the_general_prefix(
        self, model: str, tier: str, fingerprint: str, cid: str, created: int
    ) -> None:
        plan = ChatPlan(
            id=cid,
            created=created,
            model=model,
            system_fingerprint=fingerprint,
            choices=(ChoicePlan(0, ("a",), "stop"),),
            usage=Usage(1, 1),
            stream=True,
            service_tier=tier,
        )
        try:
            general = chat.general_prefix(plan)
        except TypeError:  # an int orjson refuses: so must the splice
            self.assertRaises(TypeError, chat.stream_prefix, plan)
            return
        self.assertEqual(chat.stream_prefix(plan), general)

    def test_what_percent_cannot_write_takes_the_general_prefix(self) -> None:
        for created, shown in ((True, b'"created":true,'), (1.5, b'"created":1.5,')):
            plan = dataclasses.replace(_plan(["a"]), created=cast(Any, created))
            self.assertEqual(chat.stream_prefix(plan), chat.general_prefix(plan))
            self.assertIn(shown, chat.stream_prefix(plan))

    def test_an_ordinary_prefix_is_spliced(self) -> None:
        for model in ("gpt-4o", 'gpt-%s-%%-"q"', "\u4f60\u597d"):
            plan = _plan(["a"], model=model)
            self.assertEqual(chat.stream_prefix(plan), chat.general_prefix(plan))
            key = (model, plan.service_tier, plan.system_fingerprint)
            self.assertTrue(chat._PREFIXES[key])

    def test_the_kept_prefixes_are_bounded(self) -> None:
        for i in range(chat._MAX_PREFIXES + 10):
            chat.stream_prefix(_plan(["a"], model=f"m{i}"))
        self.assertLessEqual(len(chat._PREFIXES), chat._MAX_PREFIXES)


def _metrics() -> tuple[Hooks, Clock, metrics.Metrics]:
    hooks, clock = Hooks(), Clock()
    collected = metrics.Metrics(hooks, clock, Journal())
    collected.follow(parse_config({"access_token": "t"}, {}))
    return hooks, clock, collected


def _streaming(model: str, endpoint: str = "chat") -> Any:
    request = SimpleNamespace(
        path=b"/v1/chat/completions",
        api=True,
        endpoint=endpoint,
        model=model,
        reply=SimpleNamespace(model=model, usage=None, rule=None),
        responseHeaders=Headers({b"content-type": [b"text/event-stream"]}),
        started=0.0,
        code=200,
        fault=None,
        error=None,
    )
    request.stream = Stream(cast(Any, request), iter(()), 0.0)
    return request


def _chunk(hooks: Hooks, request: Any, size: int = 10) -> None:
    """One paced write of ``request``'s stream, counted as delivery counts
    it: the first tells ``first_chunk``'s listeners, the rest time a gap."""
    stream = request.stream
    stream.hooks = hooks
    first = not stream.events_written
    stream.events_written += 1
    stream.wrote(first, size)


class StreamMetricsTests(SynchronousTestCase):
    def test_open_streams_read_as_they_are(self) -> None:
        hooks, _clock, collected = _metrics()

        def open_now() -> float | None:
            return collected.registry.get_sample_value("mockai_streams_open")

        one, two = _streaming("gpt-4o"), _streaming("gpt-4o-mini")
        self.assertEqual(open_now(), 0.0)
        hooks.emit("first_byte", one, 200)
        self.assertEqual(open_now(), 1.0)
        hooks.emit("first_byte", two, 200)
        self.assertEqual(open_now(), 2.0)
        self.assertIn(b"mockai_streams_open 2.0", collected.exposition())
        hooks.emit("disconnected", one)
        self.assertEqual(open_now(), 1.0)
        hooks.emit("last_byte", two)
        self.assertEqual(open_now(), 0.0)
        # A body that is not SSE is not a stream, nor is one not under /v1.
        plain = _streaming("gpt-4o")
        plain.responseHeaders = Headers({b"content-type": [b"application/json"]})
        hooks.emit("first_byte", plain, 200)
        other = _streaming("gpt-4o")
        other.path, other.api = b"/health", False
        hooks.emit("first_byte", other, 200)
        self.assertEqual(open_now(), 0.0)
        # Metrics turned off with streams open: none counted after.
        hooks.emit("first_byte", _streaming("gpt-4o"), 200)
        collected.follow(
            parse_config({"access_token": "t", "metrics": {"enabled": False}}, {})
        )
        self.assertEqual(open_now(), 0.0)

    def test_first_chunks_by_endpoint_and_model(self) -> None:
        # Rows cleared on the way (a bound of 1): every amount still counts.
        self.patch(metrics, "MAX_CHILDREN", 1)
        hooks, clock, collected = _metrics()
        streams = [
            _streaming("gpt-4o"),
            _streaming("gpt-4o-mini"),
            _streaming("gpt-4o", "completions"),
            _streaming("gpt-4o"),
        ]
        clock.advance(0.02)
        for request in streams:
            hooks.emit("first_byte", request, 200)
            _chunk(hooks, request)
        # Past a batch of gaps: observed into their children on the way.
        gaps = metrics.OBSERVE_BATCH + 2
        for _ in range(gaps):
            clock.advance(0.03)
            for request in streams:
                _chunk(hooks, request)
        read = collected.registry.get_sample_value
        ttft = "mockai_time_to_first_token_seconds"
        itl = "mockai_inter_token_latency_seconds"
        for endpoint, model, count in (
            ("chat", "gpt-4o", 2),
            ("chat", "gpt-4o-mini", 1),
            ("completions", "gpt-4o", 1),
        ):
            labels = {"endpoint": endpoint, "model": model}
            self.assertEqual(read(f"{ttft}_count", labels), count)
            self.assertAlmostEqual(read(f"{ttft}_sum", labels) or 0, 0.02 * count)
            self.assertEqual(read(f"{ttft}_bucket", {"le": "0.025", **labels}), count)
            self.assertEqual(read(f"{itl}_count", labels), gaps * count)
            self.assertAlmostEqual(read(f"{itl}_sum", labels) or 0, 0.03 * gaps * count)
            self.assertEqual(read(f"{itl}_bucket", {"le": "0.02", **labels}), 0.0)

    def test_gaps_while_off_are_not_counted(self) -> None:
        # A stream opened while on keeps its Gaps after a reload turns
        # metrics off; what it times then is dropped, not folded in later.
        hooks, clock, collected = _metrics()
        request = _streaming("gpt-4o")
        hooks.emit("first_byte", request, 200)
        _chunk(hooks, request)
        for _ in range(3):
            clock.advance(0.03)
            _chunk(hooks, request)
        read = collected.registry.get_sample_value
        labels = {"endpoint": "chat", "model": "gpt-4o"}
        itl = "mockai_inter_token_latency_seconds_count"
        self.assertEqual(read(itl, labels), 3.0)
        on = parse_config({"access_token": "t"}, {})
        collected.follow(
            parse_config({"access_token": "t", "metrics": {"enabled": False}}, {})
        )
        for _ in range(metrics.OBSERVE_BATCH + 3):
            clock.advance(0.03)
            _chunk(hooks, request)
        collected.follow(on)
        self.assertEqual(read(itl, labels), 3.0)
        # On again: its next gaps count.
        clock.advance(0.03)
        _chunk(hooks, request)
        self.assertEqual(read(itl, labels), 4.0)

    def test_a_failing_fold_is_logged_and_the_stream_goes_on(self) -> None:
        hooks, clock, _collected = _metrics()
        request = _streaming("gpt-4o")
        hooks.emit("first_byte", request, 200)
        _chunk(hooks, request)
        stream = request.stream
        assert stream.gaps is not None

        def broken(amounts: list[float]) -> None:
            raise ValueError("broken")

        stream.gaps.fold = broken
        for _ in range(metrics.OBSERVE_BATCH):
            clock.advance(0.03)
            _chunk(hooks, request)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        # Dropped, not kept to fail again.
        self.assertEqual(stream.gaps.amounts, [])
        self.assertEqual(stream.events_written, metrics.OBSERVE_BATCH + 1)


REQUEST = (
    b'{"model":"gpt-4o-mini","stream":true,%s'
    b'"messages":[{"role":"user","content":"hi"}]}'
)
USAGE = b'"stream_options":{"include_usage":true},'


class _General(Stream):
    """A stream that keeps to the general pump."""

    __slots__ = ()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.taking = False


class WireTests(SynchronousTestCase):
    """The whole response, head and chunks, through the Site."""

    def _served(self, body: bytes) -> bytes:
        config = parse_config(
            {
                "access_token": "sk-t",
                "seed": 1,
                "replies": [" ".join(f"word{i}" for i in range(30))],
                "stream": {"interval_ms": 20, "chunking": "word"},
            },
            {},
        )
        clock = Clock()
        clock.advance(1732440000)
        site = MockServer(config, clock).site
        peer = IPv4Address("TCP", "127.0.0.1", 40000)
        protocol = site.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer sk-t\r\nContent-Length: %d\r\n\r\n%b"
            % (len(body), body)
        )
        # What had been written after each step of the clock.
        writes = [transport.value()]
        while b"\r\n0\r\n\r\n" not in transport.value():
            clock.advance(0.007)
            writes.append(transport.value())
        # Ids are drawn at random: the same length, so the chunk sizes agree.
        text = b"\x00".join(writes)
        text = re.sub(rb"req_[0-9a-f]+", b"req_", text)
        return re.sub(rb"chatcmpl-[A-Za-z0-9]+", b"chatcmpl-", text)

    def _two_streams(self, fast: bool) -> tuple[bytes, list[bytes]]:
        """Two streams back to back on one connection: the bytes, and each
        write the transport was given."""
        from mockai_tw.web.site import ApiRequest

        writes: list[bytes] = []

        class Counted(StringTransport):
            def write(self, data: bytes) -> None:
                writes.append(data)
                super().write(data)

        config = parse_config(
            {
                "access_token": "sk-t",
                "seed": 1,
                "replies": ["one two three"],
                "stream": {"interval_ms": 20, "chunking": "word"},
            },
            {},
        )
        clock = Clock()
        clock.advance(1732440000)
        site = MockServer(config, clock).site
        protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = Counted()
        protocol.makeConnection(transport)
        body = REQUEST % b""
        request = (
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer sk-t\r\nContent-Length: %d\r\n\r\n%b"
            % (len(body), body)
        )
        self.patch(ApiRequest, "fast_finish_with", fast)
        for _ in range(2):
            protocol.dataReceived(request)
            for _ in range(20):
                clock.advance(0.02)
        self.assertFalse(transport.disconnecting)
        text = re.sub(rb"req_[0-9a-f]+", b"req_", transport.value())
        return re.sub(rb"chatcmpl-[A-Za-z0-9]+", b"chatcmpl-", text), writes

    def test_the_last_events_and_the_end_are_one_write(self) -> None:
        fast, fast_writes = self._two_streams(True)
        slow, slow_writes = self._two_streams(False)
        self.assertEqual(fast, slow)
        self.assertEqual(fast.count(b"data: [DONE]\n\n\r\n0\r\n\r\n"), 2)
        # One write less per stream, and the connection served the second.
        self.assertEqual(len(fast_writes), len(slow_writes) - 2)
        ends = [w for w in fast_writes if w.endswith(b"\r\n0\r\n\r\n")]
        self.assertEqual(len(ends), 2)
        for end in ends:
            self.assertIn(b"data: [DONE]", end)

    def test_the_same_bytes_on_the_wire(self) -> None:
        bodies = [REQUEST % options for options in (b"", USAGE)]
        fast = [self._served(body) for body in bodies]
        self.patch(pipeline, "Stream", _General)
        general = [self._served(body) for body in bodies]
        self.assertEqual(fast, general)
        for served in fast:
            self.assertIn(b"data: [DONE]", served)
            self.assertIn(b"Content-Type: text/event-stream", served)


class NoCycleTests(SynchronousTestCase):
    """What a finished stream and a closed connection leave is freed by
    reference counting alone: a cycle waits for the collector, whose pass
    over a churn of streams' leftovers paused the reactor for 40-120 ms."""

    def setUp(self) -> None:
        gc.collect()
        gc.disable()
        self.addCleanup(gc.enable)

    def _cyclic(self) -> set[str]:
        """The kinds of object only the collector would have freed since
        ``setUp`` (kept for a look: ``DEBUG_SAVEALL``)."""
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            gc.collect()
            return {type(o).__qualname__ for o in gc.garbage}
        finally:
            gc.set_debug(0)
            gc.garbage.clear()

    def _connected(self) -> tuple[Any, Any, Clock]:
        config = parse_config(
            {
                "access_token": "sk-t",
                "replies": ["one two three"],
                "stream": {"interval_ms": 20, "chunking": "word"},
            },
            {},
        )
        clock = Clock()
        site = MockServer(config, clock).site
        protocol = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport, clock

    def test_a_finished_stream_and_its_request_are_freed(self) -> None:
        protocol, transport, clock = self._connected()
        body = REQUEST % b""
        for _ in range(3):
            protocol.dataReceived(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                b"Authorization: Bearer sk-t\r\nContent-Length: %d\r\n\r\n%b"
                % (len(body), body)
            )
            for _ in range(20):
                clock.advance(0.02)
        self.assertEqual(transport.value().count(b"\r\n0\r\n\r\n"), 3)
        self.assertEqual(protocol.requests, [])
        cyclic = self._cyclic()
        for kind in ("ApiRequest", "Stream", "TextStream", "Headers"):
            self.assertNotIn(kind, cyclic)

    def test_a_closed_connection_lets_go_of_its_wrapper(self) -> None:
        protocol, transport, _clock = self._connected()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertNotIn("connectionLost", vars(protocol))
        # (a real transport lets go of its protocol when the connection is
        # lost; this one does not)
        transport.protocol = None
        del protocol
        cyclic = self._cyclic()
        self.assertNotIn("_Untracked", cyclic)
        self.assertNotIn("GuardedChannel", cyclic)


class LostConnectionTests(SynchronousTestCase):
    """A client gone mid-stream closes its stream through the request (no
    Deferred per stream), even where the transport never stops the producer
    (an in-memory one: only a real TCP port calls ``stopProducing``)."""

    def test_the_stream_closes_and_nothing_more_is_written(self) -> None:

        config = parse_config(
            {
                "access_token": "sk-t",
                "replies": [" ".join(f"word{i}" for i in range(30))],
                "stream": {"interval_ms": 20, "chunking": "word"},
            },
            {},
        )
        clock = Clock()
        server = MockServer(config, clock)
        protocol = server.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
            b"Authorization: Bearer sk-t\r\nContent-Length: %d\r\n\r\n%b"
            % (len(REQUEST % b""), REQUEST % b"")
        )
        clock.advance(0.05)
        (request,) = protocol.requests
        stream = request.stream
        self.assertIsNotNone(stream)
        self.assertFalse(stream.closed)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertTrue(stream.closed)
        self.assertNotIn(stream, server.ticker.streams)
        written = transport.value()
        clock.advance(5)
        self.assertEqual(transport.value(), written)
