"""The cheap stream paths send exactly what the general ones send.

A one-choice text stream is an index over shared templates (wire/chat.py
``TextStream``), not a generator: its bytes and times must be those of the
general renderer, for every option that changes them.  The speed and memory
figures themselves live in benchmarks/, not here.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from mockai_tw.delivery import Stream, Ticker
from mockai_tw.engine.plan import ChatPlan, ChoicePlan, Pacing, Usage
from mockai_tw.engine.timing import Override, TimingModel
from mockai_tw.errors import ApiError
from mockai_tw.wire import chat
from tests.test_delivery import FakeRequest
from tests.test_timing import config


def _plan(
    pieces: tuple[str, ...],
    include_usage: bool,
    content_filter: bool,
    pacing: Pacing,
    finish_reason: str = "stop",
    index: int = 0,
) -> ChatPlan:
    return ChatPlan(
        id="chatcmpl-x1",
        created=1732440000,
        model="gpt-4o-mini",
        system_fingerprint="fp_1a2b3c",
        choices=(ChoicePlan(index, pieces, finish_reason),),
        usage=Usage(7, len(pieces)),
        stream=True,
        include_usage=include_usage,
        content_filter=content_filter,
        pacing=pacing,
    )


PACINGS = (
    Pacing(),
    Pacing(0.25, 0.02),
    Pacing.from_gaps(0.1, [0.01, 0.3, 0.002]),
)
PIECES = ((), ("Hel",), ("Hel", "lo", ' "there"\n', "\u4f60\u597d"))


class TextStreamTests(TestCase):
    def test_same_events_as_the_general_renderer(self) -> None:
        for pieces, usage, filtered, pacing, finish in itertools.product(
            PIECES, (False, True), (False, True), PACINGS, ("stop", "length")
        ):
            plan = _plan(pieces, usage, filtered, pacing, finish)
            fast = chat.chat_stream(plan)
            self.assertIsInstance(fast, chat.TextStream)
            self.assertEqual(list(fast), list(chat._chat_stream(plan)))

    def test_a_second_index(self) -> None:
        plan = _plan(("a", "b"), True, False, Pacing(0, 0.1), index=1)
        self.assertEqual(list(chat.chat_stream(plan)), list(chat._chat_stream(plan)))

    def test_ends_and_stays_ended(self) -> None:
        stream = chat.chat_stream(_plan(("a",), False, False, Pacing()))
        events = list(stream)
        self.assertEqual(events[-1][1], b"data: [DONE]\n\n")
        self.assertIsNone(next(stream, None))

    def test_holds_no_rendered_chunks(self) -> None:
        """Per stream: a head and a cursor; the templates are shared."""
        one = chat.chat_stream(_plan(("a", "b"), False, False, Pacing()))
        two = chat.chat_stream(_plan(("a", "b"), False, False, Pacing()))
        assert isinstance(one, chat.TextStream) and isinstance(two, chat.TextStream)
        self.assertFalse(hasattr(one, "__dict__"))
        self.assertIs(one._template, two._template)

    def test_tells_each_due_time_unrendered(self) -> None:
        for pieces, usage, pacing in itertools.product(PIECES, (False, True), PACINGS):
            stream = chat.chat_stream(_plan(pieces, usage, False, pacing))
            assert isinstance(stream, chat.TextStream)
            dues = []
            while (due := stream.due_next()) is not None:
                dues.append(due)
                next(stream)
            self.assertIsNone(next(stream, None))
            plan = _plan(pieces, usage, False, pacing)
            self.assertEqual(dues, [d for d, _ in chat._chat_stream(plan)])

    def test_an_idle_stream_holds_no_chunk(self) -> None:
        """Delivered, it sends what the general renderer sends, when it
        does; between two chunks it holds none rendered."""
        clock = Clock()
        ticker = Ticker(clock, 0.005)
        plan = _plan(("Hel", "lo", "!"), True, False, Pacing(0.25, 0.1))
        lazy, general = FakeRequest(clock), FakeRequest(clock)
        one = Stream(lazy, chat.chat_stream(plan), 0.0)
        two = Stream(general, chat._chat_stream(plan), 0.0)
        ticker.add(one)
        ticker.add(two)
        clock.advance(0.3)
        self.assertIsNone(one.pending)
        clock.pump([0.005] * 100)
        self.assertEqual(lazy.writes, general.writes)
        self.assertTrue(lazy.finished)

    def test_other_shapes_keep_the_general_renderer(self) -> None:
        plan = _plan(("a",), False, False, Pacing())
        two = ChatPlan(
            **{
                **{f: getattr(plan, f) for f in plan.__dataclass_fields__},
                "choices": (
                    ChoicePlan(0, ("a",), "stop"),
                    ChoicePlan(1, ("b",), "stop"),
                ),
            }
        )
        self.assertNotIsInstance(chat.chat_stream(two), chat.TextStream)


class SharedPacingTests(TestCase):
    def test_a_fixed_pacing_is_one_value_for_every_request(self) -> None:
        model = TimingModel(config({"ttft": {"ms": 100}, "itl": {"ms": 20}}))
        one, two = model.pacing("gpt-4o", 30), model.pacing("gpt-4o", 5)
        self.assertIs(one, two)
        self.assertEqual(one, Pacing(0.1, 0.02))
        # A request's own timing gets its own value, shared in turn.
        asked = model.pacing("gpt-4o", 30, Override(itl_ms=5))
        self.assertEqual(asked, Pacing(0.1, 0.005))
        self.assertIs(asked, model.pacing("gpt-4o", 3, Override(itl_ms=5)))

    def test_drawn_pacings_stay_per_request(self) -> None:
        timing = {"seed": 3, "itl": {"dist": "uniform", "min_ms": 1, "max_ms": 9}}
        model = TimingModel(config(timing))
        self.assertNotEqual(model.pacing("m", 10), model.pacing("m", 10))


class SharedErrorEventTests(TestCase):
    """A stream is given its provider's error event, not closures of its own."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.ticker = Ticker(self.clock, 0.005)

    def error_event(self, error: ApiError, sent: int) -> bytes:
        return b"error %d %s after %d;" % (error.status, error.type.encode(), sent)

    def test_failed_events_end_with_the_error_event(self) -> None:
        def failing() -> Iterator[tuple[float, bytes]]:
            yield 0.0, b"a;"
            yield 0.01, b"b;"
            raise ValueError("a renderer broke")

        request = FakeRequest(self.clock)
        stream = Stream(request, failing(), 0.0, error_event=self.error_event)
        self.ticker.add(stream)
        self.clock.pump([0.005] * 4)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(
            [d for _, d in request.writes],
            [b"a;", b"b;", b"error 500 server_error after 2;"],
        )
        self.assertTrue(request.finished)
        self.assertEqual(stream.close_reason, "failed")

    def test_ended_early_says_why(self) -> None:
        request = FakeRequest(self.clock)
        events = iter([(0.0, b"a;"), (1.0, b"b;")])
        stream = Stream(request, events, 0.0, error_event=self.error_event)
        self.ticker.add(stream)
        stream.end(ApiError(503, "draining", type="server_error"))
        self.assertEqual(
            [d for _, d in request.writes],
            [b"a;", b"error 503 server_error after 1;"],
        )
        self.assertTrue(request.finished)
        self.assertEqual(stream.close_reason, "cut")

    def test_without_one_a_plain_body_is_cut(self) -> None:
        request = FakeRequest(self.clock)
        stream = Stream(request, iter([(0.0, b"a"), (1.0, b"b")]), 0.0)
        self.ticker.add(stream)
        stream.end(ApiError(503, "draining", type="server_error"))
        self.assertEqual([d for _, d in request.writes], [b"a"])
        self.assertFalse(request.finished)
        self.assertEqual(stream.close_reason, "cut")

    def test_a_stream_has_no_dict(self) -> None:
        stream = Stream(FakeRequest(self.clock), iter([]), 0.0)
        self.assertFalse(hasattr(stream, "__dict__"))
