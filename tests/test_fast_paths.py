"""The hot path's shortcuts answer exactly as the long way round does.

The common chat body is read in one pass, the ``Date`` header is formatted
once per second of the site's clock, a connection's addresses are asked
for once, a response's head and body leave in one write (sent at once on a
plain socket), and response headers are set without re-encoding their
names: each is checked here against what it stands in for.
"""

from __future__ import annotations

import json
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
from mockai_tw.errors import ApiError
from mockai_tw.hooks import Hooks
from mockai_tw.request.chat import _parse, _plain, parse_chat_request
from mockai_tw.request.common import as_api_error, parse_body
from mockai_tw.web.site import _TWISTED_SLOTS, ApiRequest, MockSite, put

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
                self.assertEqual(
                    list(ours.getAllRawHeaders()), list(theirs.getAllRawHeaders())
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
