"""The one-pass head reader (web/heads.py) against twisted.web's line parser.

Every input is fed to two guarded channels, one reading whole heads in one
pass and one with that off, each over an in-memory transport to a Site that
echoes what it received; what each writes back (less the Date header) and
whether it closes must be the same. Inputs are drawn from plain heads and
from the kinds of damage a hostile client sends.
"""

from __future__ import annotations

import json
import re

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import resource, server

from mockai_tw.web.connections import GuardedChannel, default_limits
from mockai_tw.web.heads import read_head


class Echo(resource.Resource):
    """What the request held, as JSON: the parse both ways must agree."""

    isLeaf = True

    def render(self, request: server.Request) -> bytes:
        content = request.content
        body = content.read() if content is not None else b""
        return json.dumps(
            {
                "method": request.method.decode("latin-1"),
                "uri": request.uri.decode("latin-1"),
                "version": request.clientproto.decode("latin-1"),
                "headers": [
                    [name.decode("latin-1"), [v.decode("latin-1") for v in values]]
                    for name, values in request.requestHeaders.getAllRawHeaders()
                ],
                "body": body.decode("latin-1"),
                "args": sorted(
                    [k.decode("latin-1"), [v.decode("latin-1") for v in vs]]
                    for k, vs in (request.args or {}).items()
                ),
                "cookies": sorted(
                    [k.decode("latin-1"), v.decode("latin-1")]
                    for k, v in request.received_cookies.items()
                ),
            }
        ).encode()


class _Site(server.Site):
    def log(self, request: object) -> None:
        pass


_MASKED = re.compile(rb"\r\n(Date|X-Request-Id): [^\r]*")


def _connected(site: server.Site) -> tuple[GuardedChannel, StringTransport]:
    """A guarded channel of ``site``'s over an in-memory transport."""
    channel = GuardedChannel(default_limits, task.Clock())
    channel.factory = site
    channel.site = site  # type: ignore[attr-defined]  # as Site.buildProtocol sets it
    channel.requestFactory = site.requestFactory
    transport = StringTransport(
        hostAddress=IPv4Address("TCP", "127.0.0.1", 8082),
        peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
    )
    channel.makeConnection(transport)
    return channel, transport


def _api_site(root: resource.Resource) -> server.Site:
    """A bare site whose requests are ApiRequests (what process() reads of a
    MockSite set on it)."""
    from mockai_tw.web.site import ApiRequest

    site = _Site(root)
    site.requestFactory = ApiRequest
    site.worker_header = None  # type: ignore[attr-defined]
    site.clock = task.Clock()  # type: ignore[attr-defined]
    site.date_header = lambda now: b"now"  # type: ignore[attr-defined]
    return site


def _exchange(
    data: bytes, fast: bool, chunks: int = 1, api: bool = False
) -> tuple[bytes, bool]:
    from mockai_tw.web.site import ApiRequest

    site = _api_site(Echo()) if api else _Site(Echo())
    channel, transport = _connected(site)
    channel.fast_heads = channel.fast_bodies = fast
    ApiRequest.fast_receive = fast
    try:
        step = max(1, len(data) // chunks)
        for k in range(0, len(data), step):
            channel.dataReceived(data[k : k + step])
    finally:
        ApiRequest.fast_receive = True
    return _MASKED.sub(b"", transport.value()), transport.disconnecting


def _same(test: SynchronousTestCase, data: bytes, chunks: int = 1) -> bytes:
    """Fast and slow paths alike, with twisted.web's Request and with ours."""
    fast = _exchange(data, True, chunks)
    test.assertEqual(fast, _exchange(data, False, chunks), data)
    api = _exchange(data, True, chunks, api=True)
    test.assertEqual(api, _exchange(data, False, chunks, api=True), data)
    return fast[0]


_PLAIN = (
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\n"
    b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
)

_GOOD_METHODS = [b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH"]
_methods = st.sampled_from([*_GOOD_METHODS, b"get", b"BREW", b"P OST", b"", b"\x00"])
_targets = st.one_of(
    st.sampled_from([b"/v1/chat/completions", b"/health", b"*", b"/a?b=c", b""]),
    st.binary(min_size=0, max_size=12),
)
_versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"http/1.1", b""])
_names = st.one_of(
    st.sampled_from(
        [
            b"Host",
            b"content-type",
            b"X-Custom",
            b"Connection",
            b"Expect",
            b"Cookie",
            b"Transfer-Encoding",
            b"Content-Length",
            b"Bad Name",
            b"",
            b" Leading",
            b"Name\x00",
            b"Te",
        ]
    ),
    st.binary(min_size=0, max_size=6),
)
_values = st.one_of(
    st.sampled_from(
        [b"x", b" padded \t", b"close", b"100-continue", b"chunked", b"2", b"a=b"]
    ),
    st.sampled_from([b"1x", b"", b"a\x00b", b"a\nb", b"a\rb", b"\xff\xfe"]),
    st.binary(min_size=0, max_size=8),
)
_header_lines = st.one_of(
    st.tuples(_names, _values).map(lambda nv: nv[0] + b": " + nv[1]),
    st.sampled_from([b" continued", b"\tcontinued", b"no colon", b"A:b"]),
)


@st.composite
def _requests(draw: st.DrawFn) -> bytes:
    # Mostly a good request line, so the headers after it are what is tried.
    if draw(st.sampled_from([True, True, True, False])):
        line = b" ".join((draw(_methods.filter(bytes.isalpha)), b"/v1/x", b"HTTP/1.1"))
    else:
        line = b" ".join((draw(_methods), draw(_targets), draw(_versions)))
    headers = draw(st.lists(_header_lines, max_size=6))
    body = draw(st.binary(max_size=6))
    if draw(st.booleans()):
        headers.append(b"Content-Length: %d" % len(body))
    head = b"\r\n".join([line, *headers]) + b"\r\n\r\n"
    tail = draw(st.sampled_from([b"", _PLAIN, b"\r\n" + _PLAIN, b"GET / HTTP/1.1\r\n"]))
    return head + body + tail


class HeadsTests(SynchronousTestCase):
    def test_a_plain_head_is_read_in_one_pass(self) -> None:
        head = read_head(_PLAIN.split(b"\r\n\r\n")[0], 500, 16384)
        assert head is not None
        self.assertEqual(
            (head.command, head.path, head.version, head.length),
            (b"POST", b"/v1/chat/completions", b"HTTP/1.1", 2),
        )
        self.assertEqual(
            list(head.headers),
            [b"Host", b"Content-Type", b"Content-Length"],
        )

    def test_what_it_does_not_take_goes_to_twisted(self) -> None:
        for head in (
            b"BREW /pot HTTP/1.1\r\nHost: h",
            b"GET / HTTP/1.1\r\nX: a\r\n b",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1",
            b"GET / HTTP/1.1\r\nBad Name: x",
            b"GET / HTTP/1.1\r\nX: a\x00b",
            b"GET /\x7f HTTP/1.1",
        ):
            self.assertIsNone(read_head(head, 500, 16384), head)
        many = b"GET / HTTP/1.1" + b"\r\nX: y" * 3
        self.assertIsNone(read_head(many, 2, 16384))
        self.assertIsNone(read_head(b"GET /" + b"a" * 100 + b" HTTP/1.1", 500, 50))

    def test_lines_seen_before_are_read_alike_and_bounded(self) -> None:
        from mockai_tw.web import heads

        head = _PLAIN.split(b"\r\n\r\n")[0]
        first = read_head(head, 500, 16384)
        again = read_head(head, 500, 16384)
        assert first is not None and again is not None
        self.assertIn(b"Content-Length: 2", heads._LINES)
        self.assertEqual(
            (again.command, again.path, again.headers, again.length),
            (first.command, first.path, first.headers, first.length),
        )
        # A known line twice is still a duplicate Content-Length.
        twice = head + b"\r\nContent-Length: 2"
        self.assertIsNone(read_head(twice, 500, 16384))
        for k in range(3000):
            read_head(b"GET /%d HTTP/1.1\r\nX-N: %d" % (k, k), 500, 16384)
        self.assertLessEqual(len(heads._LINES), heads._MAX_LINES)
        self.assertLessEqual(len(heads._FIRST_LINES), heads._MAX_LINES)
        long = b"X-Long: " + b"a" * 300
        read_head(b"GET / HTTP/1.1\r\n" + long, 500, 16384)
        self.assertNotIn(long, heads._LINES)
        self.assertLessEqual(len(heads._HEADS), heads._MAX_HEADS)
        big = b"GET / HTTP/1.1" + b"\r\nX-A: b" * 200
        self.assertIsNotNone(read_head(big, 500, 16384))
        self.assertNotIn(big, heads._HEADS)
        # A head seen before still meets the limits of the channel reading it.
        self.assertIsNone(read_head(head, 2, 16384))
        self.assertIsNone(read_head(head, 500, 20))

    def test_a_request_holds_its_own_copy_of_a_head_seen_before(self) -> None:
        first, _ = _connected(_Site(Echo()))
        first.dataReceived(_PLAIN[:-2])  # the head read, the body to come
        second, transport = _connected(_Site(Echo()))
        first.requests[0].requestHeaders.setRawHeaders(b"X-Added", [b"1"])
        second.dataReceived(_PLAIN)
        self.assertNotIn(b"X-Added", transport.value())
        self.assertIn(b'"body": "{}"', transport.value())

    def test_plain_and_pipelined_requests_answer_alike(self) -> None:
        out = _same(self, _PLAIN)
        self.assertIn(b'"body": "{}"', out)
        out = _same(self, _PLAIN + _PLAIN + b"GET /x HTTP/1.1\r\n\r\n")
        self.assertEqual(out.count(b"HTTP/1.1 200 OK"), 3)
        _same(self, b"\r\n" + _PLAIN)
        _same(self, _PLAIN.replace(b"HTTP/1.1", b"HTTP/1.0"))
        _same(self, _PLAIN.replace(b"Host: h", b"Connection: close") + _PLAIN)
        _same(self, _PLAIN.replace(b"Host: h", b"Expect: 100-continue"))

    def test_a_body_that_came_with_its_head_skips_the_decoder(self) -> None:
        channel, transport = _connected(_Site(Echo()))
        raw: list[bytes] = []
        channel.rawDataReceived = raw.append  # type: ignore[method-assign,assignment]
        channel.dataReceived(_PLAIN)
        self.assertEqual(raw, [])
        self.assertIn(b'"body": "{}"', transport.value())
        # A body still to come goes through twisted.web's decoder.
        channel, transport = _connected(_Site(Echo()))
        channel.dataReceived(_PLAIN[:-1])
        self.assertIsNotNone(channel._transferDecoder)
        channel.dataReceived(_PLAIN[-1:])
        self.assertIn(b'"body": "{}"', transport.value())

    def test_a_close_asked_for_is_said_by_both_requests(self) -> None:
        data = _PLAIN.replace(b"Host: h", b"Connection: close")
        for api in (False, True):
            out, closed = _exchange(data, True, api=api)
            self.assertIn(b"\r\nConnection: close\r\n", out)
            self.assertTrue(closed)

    def test_persistence_is_decided_as_twisted_decides_it(self) -> None:
        from twisted.web import http
        from twisted.web.test.requesthelper import DummyChannel

        channel, _ = _connected(_Site(Echo()))
        for version in (b"HTTP/1.1", b"HTTP/1.0", b"HTTP/0.9"):
            for value in (None, b"close", b"keep-alive", b"Keep-Alive, close", b""):
                ours, theirs = (
                    server.Request(DummyChannel()),
                    server.Request(DummyChannel()),
                )
                if value is not None:
                    for request in (ours, theirs):
                        request.requestHeaders.setRawHeaders(b"connection", [value])
                self.assertEqual(
                    channel.checkPersistence(ours, version),
                    http.HTTPChannel.checkPersistence(channel, theirs, version),
                    (version, value),
                )
                self.assertEqual(
                    list(ours.responseHeaders.getAllRawHeaders()),
                    list(theirs.responseHeaders.getAllRawHeaders()),
                )

    def test_query_and_cookies_are_read_alike(self) -> None:
        out = _same(
            self,
            _PLAIN.replace(b"completions", b"completions?a=1&b=2&a=3").replace(
                b"Host: h", b"Cookie: k=v; j=w"
            ),
        )
        self.assertIn(b'"args": [["a", ["1", "3"]], ["b", ["2"]]]', out)
        self.assertIn(b'"cookies": [["j", "w"], ["k", "v"]]', out)

    def test_heads_split_across_reads_answer_alike(self) -> None:
        for chunks in (2, 3, 7, len(_PLAIN)):
            out = _same(self, _PLAIN + _PLAIN, chunks)
            self.assertEqual(out.count(b"HTTP/1.1 200 OK"), 2)

    @settings(max_examples=400, deadline=None)
    @given(_requests())
    def test_generated_and_damaged_heads_answer_alike(self, data: bytes) -> None:
        _same(self, data)


class Shaped(resource.Resource):
    """A response shaped by the query: status, length or not, type or not,
    body written in pieces (``?code=201&length=1&type=1&parts=3``)."""

    isLeaf = True

    def render(self, request: server.Request) -> bytes | int:
        args = request.args or {}

        def arg(name: bytes) -> int:
            return int((args.get(name) or [b"0"])[0])

        request.setResponseCode(arg(b"code") or 200)
        parts = [b"piece%d;" % k for k in range(arg(b"parts") or 1)]
        if arg(b"length"):
            request.setHeader(b"content-length", b"%d" % sum(map(len, parts)))
        if arg(b"type"):
            request.setHeader(b"content-type", b"text/plain")
        for part in parts:
            request.write(part)
        request.finish()
        return server.NOT_DONE_YET


def _respond(data: bytes, fast: bool) -> tuple[bytes, bool]:
    from mockai_tw.web.site import ApiRequest

    channel, transport = _connected(_api_site(Shaped()))
    ApiRequest.fast_first_write = fast
    try:
        channel.dataReceived(data)
    finally:
        ApiRequest.fast_first_write = True
    return _MASKED.sub(b"", transport.value()), transport.disconnecting


class FirstWriteTests(SynchronousTestCase):
    """ApiRequest's one-step first write sends what twisted.web's would."""

    def test_every_shape_of_response_is_sent_alike(self) -> None:
        shapes = [
            b"code=%d&length=%d&type=%d&parts=%d" % (code, length, kind, parts)
            for code in (200, 201, 404, 500, 204, 304)
            for length in (0, 1)
            for kind in (0, 1)
            for parts in (1, 3)
        ]
        for query in shapes:
            for version in (b"HTTP/1.1", b"HTTP/1.0"):
                for method in (b"GET", b"HEAD"):
                    data = b"%s /x?%s %s\r\nHost: h\r\n\r\n" % (method, query, version)
                    fast = _respond(data, True)
                    self.assertEqual(fast, _respond(data, False), data)
                    self.assertTrue(fast[0].startswith(b"HTTP/1."), fast)

    def test_a_plain_response_is_one_write(self) -> None:
        out, _ = _respond(b"GET /x?parts=1 HTTP/1.1\r\nHost: h\r\n\r\n", True)
        self.assertIn(b"Transfer-Encoding: chunked", out)
        self.assertTrue(out.endswith(b"7\r\npiece0;\r\n0\r\n\r\n"), out)
