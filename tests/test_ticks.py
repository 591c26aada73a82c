"""A running stream's chunks take short cuts; each does what the long way does.

- A text stream's ``take_due`` takes its steady step (one content piece due,
  the next one not, fixed gaps) without the general loop: the same events,
  the same due times, the same cursor as ``_take_due``.
- The ticker pumps a stream ``_take`` serves without ``_pump``/``pump``, and
  queues entries pushed in order in a run beside its heap: many streams on
  one ticker make the same writes, in the same order across streams, as the
  ticker's long way (``LongTicker``: the loop before, one heap), through
  equal start times, mixed paces, pauses, disconnects and a renderer that
  fails.
- A batch of inter-chunk gaps is folded into its histogram another way
  (``metrics.observe_gaps``): the counts and the sum ``observe_all`` makes.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mockai_tw import metrics
from mockai_tw.delivery import Stream, Ticker
from mockai_tw.engine.plan import Pacing
from mockai_tw.wire import chat
from mockai_tw.wire.errors import error_event
from tests.test_delivery import FakeRequest
from tests.test_stream_start import (
    PACING,
    PIECE,
    START,
    _chunk,
    _metrics,
    _plan,
    _streaming,
)

STEADY_PACING = st.builds(
    Pacing,
    st.sampled_from([0.0, 0.01, 0.25]),
    st.sampled_from([0.0, 0.005, 0.02, 0.1]),
)


class SteadyStepTests(SynchronousTestCase):
    """``take_due``'s steady step against its general loop, on twins."""

    @settings(max_examples=400, deadline=None)
    @given(
        st.lists(PIECE, max_size=10),
        st.booleans(),
        st.one_of(STEADY_PACING, PACING),
        START,
        st.lists(st.floats(0, 2), max_size=30),
        st.sampled_from([1, 30, 200, 64 * 1024, 0, -1]),
        st.sampled_from([1, 2, 3]),
    )
    def test_the_same_as_the_general_loop(
        self,
        pieces: list[str],
        include_usage: bool,
        pacing: Pacing,
        start: float,
        nows: list[float],
        limit: int,
        stride: int,
    ) -> None:
        plan = _plan(pieces, include_usage, False, pacing)
        fast = chat.TextStream(plan, plan.choices[0])
        general = chat.TextStream(plan, plan.choices[0])
        # Nows both ways: at due times, one or more intervals apart (the
        # steady case, and a now that is exactly the next piece's due time),
        # then at random.
        steps = [start + pacing.due(i) for i in range(0, len(pieces) + 2, stride)]
        for now in [*steps, *sorted(start + n for n in nows)]:
            got: list[bytes] = []
            want: list[bytes] = []
            due = fast.take_due(start, now, got, limit)
            self.assertEqual(due, general._take_due(start, now, want, limit))
            self.assertEqual(got, want)
            self.assertEqual(fast._at, general._at)

    def _general_calls(self) -> list[int]:
        """Where each call of the general loop found the stream's cursor."""
        general: list[int] = []
        take_due = chat.TextStream._take_due

        def counted(
            self: chat.TextStream,
            start: float,
            now: float,
            out: list[bytes],
            limit: int,
        ) -> float | None:
            general.append(self._at)
            return take_due(self, start, now, out, limit)

        self.patch(chat.TextStream, "_take_due", counted)
        return general

    def test_a_running_stream_takes_the_steady_step(self) -> None:
        """Between its first and its last chunk, ticked once per interval, a
        stream never needs the general loop (the short cut is used)."""
        plan = _plan([f" w{i}" for i in range(10)], pacing=Pacing(0.0, 0.02))
        stream = chat.TextStream(plan, plan.choices[0])
        general = self._general_calls()
        start = 1795524932.2511227
        now = start
        while stream.take_due(start, now, [], 1 << 16) is not None:
            now = start + stream._due(stream._at)  # type: ignore[operator]
        # The role chunk with the first piece, and the end after the last piece.
        self.assertEqual(general, [0, 11])

    def test_a_late_stream_takes_its_pieces_without_the_general_loop(self) -> None:
        """Ticked two intervals apart (a tick a whole interval late), a stream
        owes two pieces at a time: rendered together, as the general loop
        would, and not by it."""
        pieces = [f" w{i}" for i in range(10)]
        plan = _plan(pieces, pacing=Pacing(0.0, 0.02))
        stream = chat.TextStream(plan, plan.choices[0])
        general = self._general_calls()
        start = 1795524932.2511227
        writes: list[list[bytes]] = []
        now = start
        while True:
            out: list[bytes] = []
            due = stream.take_due(start, now, out, 1 << 16)
            writes.append(out)
            if due is None:
                break
            now = start + due + 0.02
        self.assertEqual(general, [0, 11])
        # Two pieces a write between the first (role, first piece) and the
        # last (the finish chunk and [DONE] after the last piece).
        self.assertEqual([len(w) for w in writes], [2, 2, 2, 2, 2, 3])
        for n, w in enumerate(writes[1:5]):
            self.assertIn(b'" w%d"' % (2 * n + 1), w[0])
            self.assertIn(b'" w%d"' % (2 * n + 2), w[1])

    def test_drawn_gaps_take_the_general_loop(self) -> None:
        plan = _plan(["a", "b", "c"], pacing=Pacing.from_gaps(0.0, [0.01, 0.01]))
        self.assertIsNone(chat.TextStream(plan, plan.choices[0])._interval_s)

    def test_a_piece_that_cannot_render_is_passed_alike(self) -> None:
        plan = _plan(["a", "\ud800", "c"], pacing=Pacing(0.0, 0.01))
        fast = chat.TextStream(plan, plan.choices[0])
        fast.take_due(0.0, 0.0, [], 1 << 16)
        with self.assertRaises(TypeError):
            fast.take_due(0.0, 0.01, [], 1 << 16)
        # Past it, as the general loop and ``__next__`` leave it.
        self.assertEqual(fast._at, 3)
        out: list[bytes] = []
        fast.take_due(0.0, 0.02, out, 1 << 16)
        # The last piece, the finish chunk and [DONE].
        self.assertEqual(len(out), 3)
        self.assertIn(b'"c"', out[0])


class LongTicker(Ticker):
    """The ticker's loop before its short cuts: every stream through
    ``_pump`` (and ``pump``), every entry in one heap."""

    def _push(self, due: float, stream: Stream) -> None:
        stream.queued = True
        heapq.heappush(self._heap, (due, next(self._order), stream))
        if self._loop is None:
            self._start()

    def _tick(self) -> None:
        now = self.clock.seconds()
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, stream = heapq.heappop(heap)
            stream.queued = False
            if stream.closed or stream.paused:
                continue
            due = self._pump(stream, now)
            if due is not None and not stream.paused:
                stream.queued = True
                heapq.heappush(heap, (due, next(self._order), stream))
        if not self.streams:
            self._stop()


class Logged(FakeRequest):
    """Writes into one log shared by every stream (their order across
    streams shows), pausing after every ``every``-th write."""

    def __init__(self, clock: Clock, log: list[Any], name: int, every: int) -> None:
        super().__init__(clock)
        self.log = log
        self.name = name
        self.every = every

    def write(self, data: bytes) -> None:
        super().write(data)
        self.log.append((self.clock.seconds(), self.name, data))
        if self.every and len(self.writes) % self.every == 0 and self.producer:
            self.producer.pauseProducing()

    def finish(self) -> None:
        super().finish()
        self.log.append((self.clock.seconds(), self.name, "finished"))


Spec = tuple[list[str], Pacing, int, int, int]


def _run(ticker_type: type[Ticker], specs: Sequence[Spec], taking: bool) -> Any:
    """Open each stream at its step of the clock; pause, resume and drop
    them as told; what every request saw, in order."""
    clock = Clock()
    clock.advance(1795524932.2511227)
    ticker = ticker_type(clock, 0.005)
    log: list[Any] = []
    streams: list[Stream] = []
    for step in range(60):
        for name, (pieces, pacing, opens, every, drop) in enumerate(specs):
            if opens == step:
                request = Logged(clock, log, name, every)
                events = chat.chat_stream(_plan(pieces, pacing=pacing))
                stream = Stream(
                    request, events, clock.seconds(), error_event=error_event
                )
                stream.taking = taking
                streams.append(stream)
                request.registerProducer(stream, True)
                ticker.add(stream)
            elif drop and opens + drop == step and name < len(streams):
                streams[name].connectionLost(None)  # type: ignore[arg-type]
        for stream in streams:
            if stream.paused and len(log) % 3 == 0:
                stream.resumeProducing()
        clock.advance(0.007 if step % 5 else 0.031)
    for _ in range(400):
        for stream in streams:
            stream.resumeProducing()
        clock.advance(0.005)
    ends = [(s.closed, s.close_reason, s.events_written) for s in streams]
    return log, ends, len(ticker.streams), ticker.running


class TickerShortCutTests(SynchronousTestCase):
    """Many streams on one ticker, its short cut against its long way."""

    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.lists(PIECE, max_size=8),
                st.one_of(STEADY_PACING, PACING),
                st.sampled_from([0, 0, 1, 3, 7]),
                st.sampled_from([0, 0, 2, 5]),
                st.sampled_from([0, 0, 0, 4, 9]),
            ),
            min_size=1,
            max_size=6,
        )
    )
    def test_the_same_writes_in_the_same_order(self, specs: list[Spec]) -> None:
        want = _run(LongTicker, specs, taking=False)
        self.assertEqual(_run(LongTicker, specs, taking=True), want)
        self.assertEqual(_run(Ticker, specs, taking=True), want)

    def test_streams_of_one_pace_queue_in_the_run(self) -> None:
        """Back to back at one pace, every entry goes in order (the run);
        another pace's or a resumed stream's entries go to the heap, and the
        order is still one heap's."""
        clock = Clock()
        ticker = Ticker(clock, 0.005)
        for _ in range(5):
            events = chat.chat_stream(_plan(["a"] * 20, pacing=Pacing(0.0, 0.02)))
            ticker.add(Stream(FakeRequest(clock), events, clock.seconds()))
            clock.advance(0.003)
        clock.pump([0.005] * 10)
        self.assertEqual((len(ticker._run), len(ticker._heap)), (5, 0))
        events = chat.chat_stream(_plan(["a"] * 20, pacing=Pacing(0.0, 0.05)))
        ticker.add(Stream(FakeRequest(clock), events, clock.seconds()))
        # Its entry, 50 ms on, ends the run: the others' go to the heap.
        clock.pump([0.005] * 4)
        self.assertGreater(len(ticker._heap), 0)
        specs: list[Spec] = [
            (["a"] * 12, Pacing(0.0, 0.02), 0, 0, 0),
            (["b"] * 12, Pacing(0.0, 0.02), 0, 3, 0),
            (["c"] * 5, Pacing(0.0, 0.05), 1, 0, 0),
            (["d"] * 12, Pacing(0.0, 0.02), 1, 0, 6),
            (["e"] * 9, Pacing.from_gaps(0.0, [0.03, 0.0, 0.01] * 3), 3, 2, 0),
        ]
        self.assertEqual(
            _run(Ticker, specs, taking=True), _run(LongTicker, specs, taking=False)
        )

    def test_a_failing_stream_fails_alone_alike(self) -> None:
        specs: list[Spec] = [
            (["a", "b", "\ud800", "c"], Pacing(0.0, 0.01), 0, 0, 0),
            (["x", "y", "z"], Pacing(0.0, 0.01), 0, 0, 0),
        ]
        want = _run(LongTicker, specs, taking=False)
        got = _run(Ticker, specs, taking=True)
        self.assertEqual(got, want)
        self.assertEqual([reason for _, reason, _ in got[1]], ["failed", "finished"])
        self.flushLoggedErrors(TypeError)


BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.1, 1.0, math.inf)
AMOUNT = st.one_of(
    st.sampled_from([*BUCKETS, 0.0, -0.0, 0.02 + 1e-17, -1.0, -math.inf, math.nan]),
    st.floats(-1, 10, allow_nan=False),
    st.floats(0.015, 0.025),
)


def _histogram() -> Any:
    return Histogram(
        "gaps", "", ["m"], buckets=BUCKETS, registry=CollectorRegistry()
    ).labels("x")


def _state(child: Any) -> tuple[Any, ...]:
    total = child._sum.get()
    return (
        "nan" if total != total else total,
        [value.get() for value in child._buckets],
    )


class ObserveGapsTests(SynchronousTestCase):
    @settings(max_examples=400, deadline=None)
    @given(
        st.lists(st.lists(AMOUNT, max_size=70), max_size=3),
        st.floats(-1, 100, allow_nan=False),
    )
    def test_the_counts_and_sum_of_observe_all(
        self, batches: list[list[float]], already: float
    ) -> None:
        fast, general = _histogram(), _histogram()
        fast.observe(already)
        general.observe(already)
        for batch in batches:
            metrics.observe_gaps(fast, batch)
            metrics.observe_all(general, batch)
            self.assertEqual(_state(fast), _state(general))

    def test_through_chunks(self) -> None:
        """``Metrics.chunk`` folds its full batches with it: the histogram
        reads as with ``observe_all``, scraped (flushed) or not."""

        def served(fold: Any) -> list[Any]:
            self.patch(metrics, "observe_gaps", fold)
            hooks, clock, seen = _metrics()
            clock.advance(1795524932.2511227)
            request = _streaming("gpt-4o-mini")
            hooks.emit("first_byte", request, 200)
            child = seen._child(seen.itl, "chat", "gpt-4o-mini")
            states = []
            for i in range(300):
                clock.advance([0.02, 0.0199999, 0.021, 0.005, 0.04, 1e-9, 0.3][i % 7])
                _chunk(hooks, request)
                states.append(_state(child))
            seen.flush()
            return [*states, _state(child)]

        fast = served(metrics.observe_gaps)
        self.assertEqual(fast, served(metrics.observe_all))
        self.assertNotEqual(fast[0], fast[-1])
