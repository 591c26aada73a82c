"""The hot path's shortcuts answer exactly as the long way round does.

The common chat body is read in one pass, the ``Date`` header is formatted
once per second of the site's clock, and a connection's addresses are asked
for once: each is checked here against what it stands in for.
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
from twisted.web.resource import Resource

from mockai_tw.checks import Problem
from mockai_tw.errors import ApiError
from mockai_tw.request.chat import _parse, _plain, parse_chat_request
from mockai_tw.request.common import as_api_error, parse_body
from mockai_tw.web.site import MockSite

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
