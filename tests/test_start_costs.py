"""A stream's start takes short cuts; each answers as the long way does.

- ``serve`` admits a request in one step (``pipeline.fast_admit``) when no
  rule is in the book and admission could charge, hold, deal or draw
  nothing: the same bytes, journal and hooks as every admission step, and
  every other request still takes those steps.
- ``FaultInjector.unprompted`` says False only where ``decide`` can deal
  nothing unasked.
- ``open_stream`` sets an SSE response's headers in one step
  (``pipeline.fast_headers``): the head ``setHeader`` makes.
- ``/v1`` walks plain branches below it itself (``V1.fast_routes``): the
  resource, ``prepath`` and ``postpath`` twisted.web's walk gives.
- A text stream's head is spliced with its opening from bytes kept per model
  and choice (``chat.fast_heads``): ``stream_prefix``'s bytes.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from mockai_tw.config import FaultConfig, ModelFaults
from mockai_tw.config_load import parse_config
from mockai_tw.engine import ids
from mockai_tw.engine.faults import FaultInjector
from mockai_tw.engine.plan import ChatPlan, ChoicePlan, Pacing, Usage
from mockai_tw.server import MockServer
from mockai_tw.web import pipeline
from mockai_tw.web.resources import V1, Branch
from mockai_tw.wire import chat

REPLY = " ".join(f"word{i}" for i in range(12))
CHAT = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]%b}'


def _config(extra: dict[str, Any]) -> Any:
    raw: dict[str, Any] = {
        "access_token": "sk-t",
        "seed": 1,
        "replies": [REPLY, "one two"],
        "stream": {"interval_ms": 20, "chunking": "word"},
    }
    raw.update(extra)
    return parse_config(raw, {})


def _request(
    body: bytes, headers: bytes = b"", path: bytes = b"/v1/chat/completions"
) -> bytes:
    return (
        b"POST %b HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-t\r\n%b"
        b"Content-Length: %d\r\n\r\n%b" % (path, headers, len(body), body)
    )


def _served(extra: dict[str, Any], requests: list[bytes]) -> tuple[Any, ...]:
    """What a fresh server shows for ``requests``, one connection each, run
    to their ends: the bytes (random ids masked), the journal, the hooks
    heard and the rule counters."""
    # Ids drawn alike each time (they are random draws otherwise).
    ids._RNG.seed(7)
    ids._CHARS.text = ids._HEX.text = ""
    ids._CHARS.at = ids._HEX.at = 0
    clock = Clock()
    clock.advance(1732440000)
    server = MockServer(_config(extra), clock)
    heard: list[tuple[str, Any]] = []
    for event in ("queued", "admitted", "first_byte", "last_byte", "error"):
        server.hooks.on(event, lambda r, *a, e=event: heard.append((e, r.request_id)))
    wire = []
    for data in requests:
        protocol = server.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        transport = StringTransport()
        protocol.makeConnection(transport)
        protocol.dataReceived(data)
        for _ in range(100):
            if transport.disconnecting or b"\r\n0\r\n\r\n" in transport.value():
                break
            clock.advance(0.02)
        wire.append(transport.value())
        protocol.connectionLost(None)
    records = [
        {k: v for k, v in r.items() if k not in ("id", "request_id", "time")}
        for r in server.journal.query()
    ]
    counted = [(e.rule.name, e.hits) for e in server.rules.file]
    return wire, repr(records), heard, counted, dict(server.faults.counts)


STREAM = CHAT % b',"stream":true'
PLAIN = CHAT % b""
USAGE = CHAT % b',"stream":true,"stream_options":{"include_usage":true}'
REQUESTS = [
    _request(STREAM),
    _request(PLAIN),
    _request(USAGE),
    _request(STREAM, b"x-mock-fault: cut_close\r\n"),
    _request(STREAM, b"x-mock-ttft-ms: 5\r\nx-mock-itl-ms: 1\r\n"),
    _request(b'{"model":"nope","stream":true,"messages":[]}'),
    _request(CHAT % b',"stream":true,"n":2'),
    _request(
        b'{"model":"gpt-4o-mini","prompt":"hi","stream":true}', path=b"/v1/completions"
    ),
    _request(
        b'{"model":"gpt-4o-mini","input":"hi","stream":true}', path=b"/v1/responses"
    ),
]
CONFIGS: list[dict[str, Any]] = [
    {},
    {"strict_models": True, "models": ["gpt-4o-mini"]},
    {"rate_limits": {"enabled": True, "requests_per_minute": 3}},
    {"capacity": {"enabled": True, "max_running": 1, "max_waiting": 1}},
    {"faults": {"header": True}},
    {"faults": {"probability": 0.5, "seed": 3}},
    {
        "faults": {
            "models": {"gpt-4o-mini": {"probability": 1.0}},
            "kinds": {"cut_close": 1},
        }
    },
    {"timing": {"header_overrides": True}},
    {
        "rules": [
            {"name": "r", "match": {"content": "hi"}, "times": 2, "answer": "ruled"}
        ]
    },
]


class FastAdmitTests(SynchronousTestCase):
    def _both(self, extra: dict[str, Any]) -> None:
        fast = _served(extra, REQUESTS)
        self.patch(pipeline, "fast_admit", False)
        slow = _served(extra, REQUESTS)
        self.assertEqual(fast, slow)

    def test_the_same_answers_under_every_config(self) -> None:
        for extra in CONFIGS:
            with self.subTest(config=extra):
                self._both(extra)
                self.patch(pipeline, "fast_admit", True)

    def test_the_plain_request_takes_the_one_step(self) -> None:
        steps: list[str] = []
        self.patch(pipeline, "_proceed", lambda *a, **k: steps.append("proceed"))

        def admitted(*args: Any) -> bytes:
            steps.append("admitted")
            return b""

        self.patch(pipeline, "_admitted", admitted)
        for extra, taken in (
            ({}, "admitted"),
            ({"faults": {"probability": 0.0}}, "admitted"),
            ({"rate_limits": {"enabled": True, "requests_per_minute": 3}}, "proceed"),
            ({"capacity": {"enabled": True, "max_running": 1}}, "proceed"),
            ({"faults": {"header": True}}, "proceed"),
            ({"faults": {"probability": 0.1}}, "proceed"),
            (
                {"rules": [{"name": "r", "match": {"content": "x"}, "answer": "y"}]},
                "proceed",
            ),
        ):
            del steps[:]
            _served(extra, [_request(STREAM)])
            self.assertEqual(steps, [taken], extra)


class UnpromptedTests(SynchronousTestCase):
    def test_false_only_where_no_odds_are_above_zero(self) -> None:
        for config, odds in (
            (FaultConfig(), False),
            (FaultConfig(probability=0.2), True),
            (FaultConfig(models={"a*": ModelFaults(probability=0.0)}), False),
            (FaultConfig(models={"a*": ModelFaults(kinds={"stall": 1})}), False),
            (FaultConfig(models={"a*": ModelFaults(probability=0.3)}), True),
        ):
            self.assertEqual(FaultInjector(config).unprompted(), odds, config)

    def test_nothing_unprompted_is_dealt_and_nothing_drawn(self) -> None:
        for config in (
            FaultConfig(models={"a*": ModelFaults(probability=0.0)}),
            FaultConfig(kinds={"stall": 1.0}),
        ):
            faults = FaultInjector(config)
            self.assertFalse(faults.unprompted())
            state = faults.rng.getstate()
            for model in ("a1", "b", "gpt-4o"):
                self.assertIsNone(faults.decide(model))
            self.assertEqual(faults.rng.getstate(), state)

    def test_asked_again_for_a_new_config(self) -> None:
        faults = FaultInjector(FaultConfig())
        self.assertFalse(faults.unprompted())
        faults.config = FaultConfig(probability=1.0)
        self.assertTrue(faults.unprompted())


class StreamHeaderTests(SynchronousTestCase):
    def test_the_same_head_as_set_header_makes(self) -> None:
        gemini = (
            b'{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}',
            b"/v1beta/models/gemini-2.0-flash:streamGenerateContent",
        )
        requests = [
            _request(STREAM),
            _request(USAGE),
            _request(gemini[0], b"x-goog-api-key: sk-t\r\n", path=gemini[1]),
            _request(
                gemini[0], b"x-goog-api-key: sk-t\r\n", path=gemini[1] + b"?alt=sse"
            ),
            _request(
                b'{"model":"claude-3-5-haiku","max_tokens":5,"stream":true,'
                b'"messages":[{"role":"user","content":"hi"}]}',
                b"x-api-key: sk-t\r\nanthropic-version: 2023-06-01\r\n",
                path=b"/v1/messages",
            ),
        ]
        for extra in ({}, {"faults": {"header": True}}):
            fast = _served(extra, requests)
            self.patch(pipeline, "fast_headers", False)
            slow = _served(extra, requests)
            self.patch(pipeline, "fast_headers", True)
            self.assertEqual(fast, slow)
            self.assertIn(b"Cache-Control: no-cache", fast[0][0])


PATHS = [
    b"/v1/chat/completions",
    b"/v1/chat/completions/",
    b"/v1/chat/completions/abc",
    b"/v1/chat/completions/abc/messages",
    b"/v1/chat",
    b"/v1/chat/",
    b"/v1/chat/nope",
    b"/v1//chat/completions",
    b"/v1/models",
    b"/v1/models/gpt-4o-mini",
    b"/v1/models/gemini-2.0-flash:generateContent",
    b"/v1/files/file-1/content",
    b"/v1/responses/resp_1/input_items",
    b"/v1/messages",
    b"/v1/messages/count_tokens",
    b"/v1/nope/deeper",
    b"/v1",
    b"/v1/",
    b"/v1/leafy/x/y",
    b"/v1/custom/x/y",
]


class _Custom(Resource):
    def getChildWithDefault(self, path: bytes, request: Any) -> Any:
        return self if path == b"x" else super().getChildWithDefault(path, request)


class RouteTests(SynchronousTestCase):
    def _walk(self, path: bytes) -> tuple[Any, ...]:
        from twisted.web.resource import getChildForRequest

        clock = Clock()
        server = MockServer(_config({}), clock)
        # Branches the walk must leave to twisted.web: a leaf that has
        # children, and one that finds its children its own way.
        v1 = server.site.resource.children[b"v1"]
        leafy, custom = Branch(server), _Custom()
        leafy.isLeaf = True
        for name, branch in ((b"leafy", leafy), (b"custom", custom)):
            branch.putChild(b"x", Branch(server))
            v1.putChild(name, branch)
        segments = path[1:].split(b"/")
        request = DummyRequest(segments)
        request.path = path  # type: ignore[attr-defined]
        request.method = b"POST"
        request.requestHeaders.setRawHeaders(b"authorization", [b"Bearer sk-t"])
        resource = getChildForRequest(server.site.resource, request)
        kind = type(resource).__name__
        error = getattr(resource, "error", None)
        return kind, getattr(error, "message", None), request.prepath, request.postpath

    def test_the_walk_twisted_web_makes(self) -> None:
        for path in PATHS:
            fast = self._walk(path)
            self.patch(V1, "fast_routes", False)
            slow = self._walk(path)
            self.patch(V1, "fast_routes", True)
            self.assertEqual(fast, slow, path)

    def test_the_same_answers_through_the_site(self) -> None:
        requests = [_request(PLAIN, path=p) for p in PATHS] + [_request(STREAM)]
        fast = _served({}, requests)
        self.patch(V1, "fast_routes", False)
        self.assertEqual(fast, _served({}, requests))


TEXT = st.text(max_size=8)
ODD = st.one_of(TEXT, st.sampled_from(["%", "%d", "%%s", "\x00", '"', "\\"]))


def _plan(
    model: str,
    tier: str,
    fingerprint: str,
    ident: str,
    created: Any,
    index: int,
    include_usage: bool,
    content_filter: bool,
    finish: str,
) -> ChatPlan:
    return ChatPlan(
        id=ident,
        created=created,
        model=model,
        system_fingerprint=fingerprint,
        service_tier=tier,
        choices=(ChoicePlan(index, ("a", "b"), finish),),
        usage=Usage(3, 2),
        stream=True,
        include_usage=include_usage,
        content_filter=content_filter,
        pacing=Pacing(),
    )


def _events(plan: ChatPlan) -> list[tuple[float, bytes]]:
    stream = chat.chat_stream(plan)
    assert isinstance(stream, chat.TextStream)
    return list(stream)


class StreamHeadTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(
        st.tuples(
            ODD,
            ODD,
            ODD,
            ODD,
            st.one_of(
                st.integers(min_value=-(2**64), max_value=2**65),
                st.just(True),
                st.just(1.5),
            ),
            st.integers(min_value=0, max_value=3),
            st.booleans(),
            st.booleans(),
            st.sampled_from(["stop", "length", "content_filter"]),
        )
    )
    def test_the_same_events_as_stream_prefix_gives(
        self, values: tuple[Any, ...]
    ) -> None:
        plan = _plan(*values)
        try:
            fast: Any = _events(plan)
        except (TypeError, ValueError) as error:
            fast = type(error)
        self.patch(chat, "fast_heads", False)
        try:
            slow: Any = _events(plan)
        except (TypeError, ValueError) as error:
            slow = type(error)
        self.patch(chat, "fast_heads", True)
        self.assertEqual(fast, slow)

    def test_an_ordinary_head_is_kept_and_the_table_bounded(self) -> None:
        plan = _plan(
            "gpt-4o", "default", "fp_1", "chatcmpl-1", 1, 0, False, False, "stop"
        )
        _events(plan)
        key = ("gpt-4o", "default", "fp_1", 0, False, False, "stop")
        self.assertTrue(chat._HEADS[key][0])
        for i in range(chat._MAX_PREFIXES + 10):
            _events(_plan(f"m{i}", "default", "fp_1", "c", 1, 0, False, False, "stop"))
        self.assertLessEqual(len(chat._HEADS), chat._MAX_PREFIXES)
