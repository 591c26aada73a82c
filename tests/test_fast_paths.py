"""The hot path's shortcuts answer exactly as the long way round does.

The common chat body is read in one pass and planned from what its canned
reply's plan keeps, its body spliced from bytes encoded once, its prompt
counted the short way; the ``Date`` header is formatted
once per second of the site's clock, a connection's addresses are asked
for once, a response's head and body leave in one write (sent at once on a
plain socket), and response headers are set without re-encoding their
names: each is checked here against what it stands in for.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http
from twisted.web.http_headers import Headers, InvalidHeaderName
from twisted.web.resource import Resource

from mockai_tw.checks import Problem
from mockai_tw.config import Config
from mockai_tw.config_load import parse_config
from mockai_tw.engine import tokenizer
from mockai_tw.engine.chat import Engine
from mockai_tw.engine.plan import ChatPlan, Usage
from mockai_tw.engine.timing import Override
from mockai_tw.errors import ApiError
from mockai_tw.hooks import Hooks
from mockai_tw.request.chat import ChatRequest, _parse, _plain, parse_chat_request
from mockai_tw.request.common import as_api_error, parse_body
from mockai_tw.web.site import _TWISTED_SLOTS, ApiRequest, MockSite, put
from mockai_tw.wire.chat import chat_completion, general_completion

TEXT = st.text(max_size=20)
ROLE = st.sampled_from(["system", "user", "developer", "assistant", "tool", "bot"])
VALUE: st.SearchStrategy[Any] = st.one_of(
    st.none(), st.booleans(), st.integers(), TEXT, st.just([])
)
MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": ROLE, "content": TEXT}),
    st.fixed_dictionaries({"role": st.one_of(ROLE, VALUE), "content": VALUE}),
    st.fixed_dictionaries({"role": ROLE}),
    st.fixed_dictionaries({"role": ROLE, "content": TEXT, "name": VALUE}),
    VALUE,
)
BODY = st.fixed_dictionaries(
    {"model": st.one_of(st.just("gpt-4o"), VALUE)},
    optional={
        "messages": st.one_of(st.lists(MESSAGE, max_size=3), VALUE),
        "stream": VALUE,
    },
)


def _slow(data: bytes) -> Any:
    """The full parse alone, worded as the entry point words it."""
    try:
        return _parse(parse_body(data), data)
    except Problem as problem:
        raise as_api_error(problem) from None


def _outcome(parse: Any, data: bytes) -> Any:
    try:
        return parse(data)
    except ApiError as error:
        return (error.status, error.message, error.param, error.code)


class PlainChatBodyTests(SynchronousTestCase):
    @settings(max_examples=400, deadline=None)
    @given(BODY)
    def test_the_one_pass_read_agrees_with_the_full_parse(
        self, body: dict[str, Any]
    ) -> None:
        data = json.dumps(body).encode()
        self.assertEqual(
            _outcome(parse_chat_request, data), _outcome(_slow, data), body
        )

    @settings(max_examples=200, deadline=None)
    @given(BODY)
    def test_a_body_read_before_reads_the_same(self, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        first = _outcome(parse_chat_request, data)
        # A fresh copy of the bytes: the table is keyed by value.
        again = _outcome(parse_chat_request, bytes(bytearray(data)))
        self.assertEqual(first, again, body)
        self.assertEqual(again, _outcome(_slow, data), body)

    def test_the_bodies_read_are_bounded_and_keyed_by_default_model(self) -> None:
        from mockai_tw.request import chat

        data = b'{"messages":[{"role":"user","content":"hi"}]}'
        self.assertEqual(parse_chat_request(data, "a").model, "a")
        self.assertEqual(parse_chat_request(data, "b").model, "b")
        for k in range(600):
            parse_chat_request(
                b'{"model":"m","messages":[{"role":"user","content":"%d"}]}' % k
            )
        self.assertLessEqual(len(chat._READ), chat._MAX_READ)
        long = json.dumps(
            {"model": "m", "messages": [{"role": "user", "content": "x" * 3000}]}
        ).encode()
        parse_chat_request(long)
        self.assertNotIn((long, None), chat._READ)

    def test_the_common_body_takes_the_one_pass_read(self) -> None:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        self.assertIsNotNone(_plain(body))
        self.assertIsNone(_plain({**body, "n": 2}))


class DateHeaderTests(SynchronousTestCase):
    def test_formatted_once_per_second_of_the_sites_clock(self) -> None:
        clock = Clock()
        clock.advance(1_700_000_000)
        site = MockSite(Resource(), clock, lambda: 1 << 20)
        first = site.date_header(clock.seconds())
        self.assertEqual(first, http.datetimeToString(1_700_000_000))
        clock.advance(0.9)
        self.assertIs(site.date_header(clock.seconds()), first)
        clock.advance(0.1)
        self.assertEqual(
            site.date_header(clock.seconds()), http.datetimeToString(1_700_000_001)
        )


class ChannelAddressTests(SynchronousTestCase):
    def test_asked_for_once_per_connection(self) -> None:
        clock = Clock()
        site = MockSite(Resource(), clock, lambda: 1 << 20)
        channel = site.buildProtocol(None)
        transport = StringTransport()
        asked: list[str] = []
        host, peer = transport.getHost, transport.getPeer

        def get_host() -> Any:
            asked.append("host")
            return host()

        def get_peer() -> Any:
            asked.append("peer")
            return peer()

        transport.getHost = get_host  # type: ignore[method-assign]
        transport.getPeer = get_peer  # type: ignore[method-assign]
        channel.makeConnection(transport)
        for _ in range(3):
            self.assertEqual(channel.getHost(), host())
            self.assertEqual(channel.getPeer(), peer())
        self.assertEqual(asked, ["host", "peer"])
        channel.connectionLost(Exception("done"))


class Counting(StringTransport):
    """A transport that counts the writes it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)

    def writeSequence(self, seq: Any) -> None:
        self.writes += 1
        super().writeSequence(seq)


class Leaf(Resource):
    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return b'{"ok": true}'


def _channel() -> tuple[Any, Counting]:
    site = MockSite(Leaf(), Clock(), lambda: 1 << 20)
    channel = site.buildProtocol(None)
    transport = Counting()
    channel.makeConnection(transport)
    return channel, transport


class OneWriteTests(SynchronousTestCase):
    """A whole response's head and body go to the transport in one write."""

    def test_head_and_body_in_one_write(self) -> None:
        channel, transport = _channel()
        channel.dataReceived(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(transport.writes, 1)
        head, _, body = transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertIn(b"Content-Length: 12", head.split(b"\r\n"))
        self.assertIn(b"X-Request-Id: req_", head)
        self.assertEqual(body, b'{"ok": true}')
        channel.connectionLost(Exception("done"))

    def test_a_head_request_gets_its_head_alone(self) -> None:
        channel, transport = _channel()
        channel.dataReceived(b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(transport.writes, 1)
        self.assertTrue(transport.value().endswith(b"\r\n\r\n"))
        self.assertNotIn(b'{"ok"', transport.value())
        channel.connectionLost(Exception("done"))

    def test_pipelined_responses_stay_in_order(self) -> None:
        channel, transport = _channel()
        channel.dataReceived(
            b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nHEAD /b HTTP/1.1\r\nHost: a\r\n\r\n"
            b"GET /c HTTP/1.1\r\nHost: a\r\n\r\n"
        )
        value = transport.value()
        self.assertEqual(value.count(b"HTTP/1.1 200 OK"), 3)
        self.assertEqual(value.count(b'{"ok": true}'), 2)
        self.assertTrue(value.endswith(b'{"ok": true}'))
        channel.connectionLost(Exception("done"))


class PutHeaderTests(SynchronousTestCase):
    def test_put_agrees_with_set_raw_headers(self) -> None:
        names = [b"x-request-id", b"Content-Type", b"etag", b"www-authenticate"]
        values = [b"a", b"b c", b"x\r\ny", b"\nz"]
        for name in names:
            for value in values:
                ours, theirs = Headers(), Headers()
                put(ours, name, value)
                theirs.setRawHeaders(name, [value])
                # The same names and values (``put`` keeps a tuple of them).
                self.assertEqual(
                    [(n, list(v)) for n, v in ours.getAllRawHeaders()],
                    list(theirs.getAllRawHeaders()),
                )

    def test_a_bad_name_is_refused_as_twisted_refuses_it(self) -> None:
        with self.assertRaises(InvalidHeaderName):
            put(Headers(), b"bad name", b"v")


class HookTupleTests(SynchronousTestCase):
    def test_emit_calls_the_listeners_there_are_now(self) -> None:
        hooks = Hooks()
        heard: list[str] = []

        def first(request: Any) -> None:
            heard.append("first")

        def second(request: Any) -> None:
            heard.append("second")

        hooks.on("admitted", first)
        hooks.on("admitted", second)
        hooks.emit("admitted", None)
        hooks.off("admitted", first)
        hooks.emit("admitted", None)
        self.assertEqual(heard, ["first", "second", "second"])
        self.assertEqual(hooks.listeners["admitted"], [second])
        self.assertTrue(hooks.heard("admitted"))
        hooks.off("admitted", second)
        self.assertFalse(hooks.heard("admitted"))


class RequestSlotsTests(SynchronousTestCase):
    """ApiRequest keeps what every request sets in slots (memory per open
    stream): a slot hides its name's class default, so each is set anew."""

    def test_twisted_defaults_hold(self) -> None:
        from twisted.web import server
        from twisted.web.test.requesthelper import DummyChannel

        request = ApiRequest(DummyChannel())
        for name in _TWISTED_SLOTS:
            if hasattr(server.Request, name):
                self.assertEqual(
                    getattr(request, name), getattr(server.Request, name), name
                )
        self.assertEqual(vars(request), {})

    def test_a_stream_lets_its_read_body_go(self) -> None:
        from twisted.web.test.requesthelper import DummyChannel

        from mockai_tw.web.site import BoundedBody

        request = ApiRequest(DummyChannel())
        request.content = BoundedBody(100, 2)
        request.content.write(b"{}")
        self.assertEqual(request.body(), b"{}")
        request.registerProducer(object(), True)
        self.assertIsNone(request.content)
        self.assertEqual(request.body(), b"{}")


# --- planning and rendering a plain chat completion --------------------------

LATENCY = st.one_of(
    st.just({"dist": "fixed", "ms": 5}),
    st.just({"tokens_per_second": 50}),
    st.just({"dist": "uniform", "min_ms": 1, "max_ms": 9}),
    st.just({"dist": "lognormal", "median_ms": 10, "p99_ms": 40}),
)
CONFIG = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 3),
        "replies": st.lists(
            st.sampled_from(["Hello there!", "word0 word1 word2", "a", "100% % done"]),
            min_size=1,
            max_size=3,
        ),
        "stream": st.fixed_dictionaries(
            {
                "chunking": st.sampled_from(["char", "word", "token"]),
                "content_filter_results": st.booleans(),
            }
        ),
        "timing": st.fixed_dictionaries(
            {"enabled": st.booleans(), "non_stream": st.booleans(), "seed": st.just(7)},
            optional={"ttft": LATENCY, "itl": LATENCY},
        ),
    }
)
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
    },
}
CHAT_BODY = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["gpt-4o-mini", "gpt-4", 'm%d"x']),
        "messages": st.lists(
            st.one_of(
                st.fixed_dictionaries(
                    {"role": st.sampled_from(["user", "system"]), "content": TEXT}
                ),
                st.fixed_dictionaries(
                    {"role": st.just("user"), "content": TEXT, "name": st.just("ann")}
                ),
                st.fixed_dictionaries(
                    {
                        "role": st.just("user"),
                        "content": st.lists(
                            st.fixed_dictionaries(
                                {"type": st.just("text"), "text": TEXT}
                            ),
                            max_size=2,
                        ),
                    }
                ),
            ),
            min_size=1,
            max_size=3,
        ),
    },
    optional={
        "stream": st.booleans(),
        "seed": st.integers(-5, 5),
        "stop": st.sampled_from(["word1", ["o", "!"], "zzz"]),
        "max_tokens": st.integers(1, 6),
        "n": st.integers(1, 3),
        "logprobs": st.booleans(),
        "tools": st.just([TOOL]),
        "response_format": st.just({"type": "json_object"}),
    },
)
TIMING = st.one_of(
    st.none(),
    st.builds(
        Override,
        st.one_of(st.none(), st.floats(0, 50)),
        st.one_of(st.none(), st.floats(0, 50)),
    ),
)


def _config(raw: dict[str, Any]) -> Config:
    return parse_config({"access_token": "t", **raw}, {})


def _request(body: dict[str, Any]) -> ChatRequest:
    if body.get("stream"):
        body = {**body, "stream_options": {"include_usage": True}}
    return parse_chat_request(json.dumps(body).encode())


def _same_id(plan: ChatPlan) -> ChatPlan:
    """``plan`` with its ids (random, not drawn from the engine's state) fixed."""
    choices = tuple(
        dataclasses.replace(
            choice,
            tool_calls=tuple(
                dataclasses.replace(call, id="call_same") for call in choice.tool_calls
            ),
        )
        if choice.tool_calls
        else choice
        for choice in plan.choices
    )
    return dataclasses.replace(plan, id="chatcmpl-same", choices=choices)


class PlainChatPlanTests(SynchronousTestCase):
    """A plain request's plan is the general plan, draw for draw."""

    @settings(max_examples=150, deadline=None)
    @given(CONFIG, st.lists(st.tuples(CHAT_BODY, TIMING), min_size=1, max_size=6))
    def test_the_plain_plan_is_the_general_plan(
        self, raw: dict[str, Any], asked: list[tuple[dict[str, Any], Override | None]]
    ) -> None:
        config = _config(raw)
        fast, slow = Engine(config), Engine(config)
        for now, (body, timing) in enumerate(asked * 2):
            request = _request(body)
            plan = _same_id(fast.chat(request, 1e9 + now, timing, hit=None))
            general = _same_id(slow._planned(request, 1e9 + now, timing, None, None))
            self.assertEqual(plan, general, body)
            self.assertEqual(chat_completion(plan), general_completion(general))
            # The same draws: the next pick and pacing are the same too.
            self.assertEqual(fast.rng.getstate(), slow.rng.getstate())
            self.assertEqual(fast.timing.rng.getstate(), slow.timing.rng.getstate())

    def test_the_common_request_takes_the_plain_plan(self) -> None:
        engine = Engine(_config({"replies": ["Hi."]}))
        messages = [{"role": "user", "content": "x"}]
        request = _request({"model": "m", "messages": messages})
        first = engine.chat(request, 1, hit=None)
        second = engine.chat(request, 2, hit=None)
        self.assertIs(first.choices[0], second.choices[0])
        self.assertIs(first.pacing, second.pacing)
        self.assertNotEqual(first.id, second.id)
        self.assertEqual((first.created, second.created), (1, 2))
        self.assertEqual(len(engine._plain), 1)
        # Two choices, tools, a rule's hit: the general plan, nothing kept.
        engine.chat(_request({"model": "m", "n": 2, "messages": messages}), 3, hit=None)
        tools = _request({"model": "m", "tools": [TOOL], "messages": messages})
        engine.chat(tools, 3, hit=None)
        self.assertEqual(len(engine._plain), 1)

    def test_a_plain_plan_shares_its_keys_as_a_built_one(self) -> None:
        engine = Engine(_config({"replies": ["Hi."]}))
        request = _request(
            {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        )
        plan = engine.chat(request, 1, hit=None)
        general = engine._planned(request, 1, None, None, None)
        self.assertEqual(sys.getsizeof(vars(plan)), sys.getsizeof(vars(general)))
        self.assertEqual(
            sys.getsizeof(vars(plan.usage)), sys.getsizeof(vars(general.usage))
        )


ODD_TEXT = st.text(alphabet=st.sampled_from('ab%"\\\x00é\u2028{}:,'), max_size=8)


class CompletionBodyTests(SynchronousTestCase):
    """The spliced ``chat.completion`` body is the general one, byte for byte."""

    @settings(max_examples=150, deadline=None)
    @given(CONFIG, CHAT_BODY, ODD_TEXT, ODD_TEXT, ODD_TEXT, st.integers(0, 2**40))
    def test_the_spliced_body_is_the_general_body(
        self,
        raw: dict[str, Any],
        body: dict[str, Any],
        model: str,
        tier: str,
        fingerprint: str,
        created: int,
    ) -> None:
        plan = Engine(_config(raw))._planned(_request(body), 0, None, None, None)
        plan = dataclasses.replace(
            plan,
            id=model + "-id",
            created=created,
            model=model,
            service_tier=tier,
            system_fingerprint=fingerprint,
        )
        for _ in range(2):
            self.assertEqual(chat_completion(plan), general_completion(plan))
        filtered = dataclasses.replace(plan, content_filter=not plan.content_filter)
        self.assertEqual(chat_completion(filtered), general_completion(filtered))

    def test_a_value_that_is_not_an_int_takes_the_general_body(self) -> None:
        engine = Engine(_config({"replies": ["Hi."]}))
        request = _request(
            {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        )
        plan = engine.chat(request, 1, hit=None)
        odd = dataclasses.replace(plan, usage=Usage(True, 2))
        self.assertEqual(chat_completion(odd), general_completion(odd))
        self.assertIn(b'"prompt_tokens":true', chat_completion(odd))


ANY_VALUE: st.SearchStrategy[Any] = st.one_of(
    VALUE, st.just([{"type": "text", "text": "a b"}])
)


class PromptTokenTests(SynchronousTestCase):
    """The plain message's short count is the per-message accounting's."""

    @settings(max_examples=300, deadline=None)
    @given(
        st.dictionaries(
            st.sampled_from(["role", "content", "name", "tool_calls"]),
            st.one_of(TEXT, ANY_VALUE),
            max_size=3,
        ),
        st.sampled_from(["gpt-4o", "gpt-4"]),
    )
    def test_the_short_count_agrees(self, message: dict[str, Any], model: str) -> None:
        tok = tokenizer.for_model(model)
        self.assertEqual(
            tokenizer.count_messages([message], model=model),
            tokenizer.REPLY_PRIMING + tokenizer._message_tokens(message, tok),
        )

    @settings(max_examples=200, deadline=None)
    @given(st.one_of(st.text(max_size=30), st.text(min_size=2040, max_size=2060)))
    def test_a_kept_count_is_the_count(self, text: str) -> None:
        tok = tokenizer.Tokenizer("o200k_base")
        for _ in range(2):
            self.assertEqual(tok.count(text), sum(tok.weighted(text)[1]))

    def test_a_request_seen_before_keeps_its_count(self) -> None:
        from mockai_tw.engine import chat

        data = b'{"model":"gpt-4o","messages":[{"role":"user","content":"hi there"}]}'
        request = parse_chat_request(data)
        self.assertIs(parse_chat_request(data), request)
        self.assertEqual(chat._counted(request), chat.prompt_tokens(request))
        self.assertEqual(chat._counted(request), chat.prompt_tokens(request))
        other = _request(
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}
        )
        self.assertEqual(chat._counted(other), chat.prompt_tokens(other))
        for k in range(chat._MAX_COUNTED + 10):
            chat._counted(
                _request(
                    {"model": "m", "messages": [{"role": "user", "content": f"{k}"}]}
                )
            )
        self.assertLessEqual(len(chat._COUNTED), chat._MAX_COUNTED)

    def test_the_kept_counts_are_bounded(self) -> None:
        tok = tokenizer.Tokenizer("o200k_base")
        for i in range(tokenizer.CACHED_COUNTS + 10):
            tok.count(f"w{i}")
        self.assertLessEqual(len(tok._counts), tokenizer.CACHED_COUNTS)


class SteadyPacingTests(SynchronousTestCase):
    """A steady pacing is what ``pacing`` gives, without a draw."""

    @settings(max_examples=100, deadline=None)
    @given(CONFIG, TIMING, st.integers(0, 20))
    def test_steady_is_pacing(
        self, raw: dict[str, Any], override: Override | None, steps: int
    ) -> None:
        timing = Engine(_config(raw)).timing
        before = timing.rng.getstate()
        steady = timing.steady("gpt-4o", override)
        self.assertEqual(timing.rng.getstate(), before)
        if steady is not None:
            self.assertEqual(steady, timing.pacing("gpt-4o", steps, override))
            self.assertEqual(timing.rng.getstate(), before)
        else:
            timing.pacing("gpt-4o", steps, override)


def _bearer_the_long_way(header: bytes | None) -> bytes:
    if not header:
        return b""
    scheme, _, rest = header.strip().partition(b" ")
    return rest.strip() if scheme.lower() == b"bearer" else b""


class BearerTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(
        st.one_of(
            st.sampled_from(
                [
                    b"Bearer sk-x",
                    b"Bearer  sk-x ",
                    b"bearer sk-x",
                    b"BEARER\tsk-x",
                    b"Bearer ",
                    b"Bearer",
                    b"Basic abc",
                    b"",
                    b" Bearer sk-x",
                ]
            ),
            st.binary(max_size=12).map(lambda tail: b"Bearer " + tail),
            st.binary(max_size=12),
        )
    )
    def test_the_token_read_as_the_long_way_reads_it(self, header: bytes) -> None:
        from twisted.web.test.requesthelper import DummyChannel

        from mockai_tw.web.resources import bearer

        request = ApiRequest(DummyChannel())
        request.requestHeaders.setRawHeaders(b"authorization", [header])
        stored = request.getHeader(b"authorization")
        self.assertEqual(bearer(request), _bearer_the_long_way(stored), header)
        self.assertEqual(bearer(ApiRequest(DummyChannel())), b"")
