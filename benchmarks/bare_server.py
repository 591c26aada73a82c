"""The ceiling for this stack: bare twisted.web answering a fixed chat.completion.

bench.py runs it beside mockai, pinned the same way, so mockai's requests/s
can be read as a fraction of what twisted.web itself manages on this machine
today.  It does the minimum a fast Twisted server should: no form parsing
(``parsePOSTFormSubmission=False``), no access log, a pre-encoded body.

With ``--stream-body`` (mockai's own SSE body) a POST asking for
``"stream":true`` gets those events, paced as mockai paces them (the role
chunk and the first content chunk at once, then one content chunk each
``--interval-ms``, the finish chunk and ``[DONE]`` with the last): the plain
twisted.web way, one ``callLater`` per stream and pre-encoded bytes.
``GET /health`` says how many streams are open, as mockai's does.

    python benchmarks/bare_server.py [--port 0] [--body FILE]
        [--stream-body FILE --chunks 50 --interval-ms 20]

Prints ``bare listening on 127.0.0.1:PORT`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.resource import Resource

clock = cast(IReactorTime, reactor)

# Same shape and size class as mockai's answer; bench.py passes mockai's own
# body with --body so both send the same bytes.
DEFAULT_BODY = (
    b'{"id":"chatcmpl-bare","object":"chat.completion","created":1700000000,'
    b'"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"Hello there.","refusal":null,"annotations":[]},"logprobs":null,'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":3,'
    b'"total_tokens":11},"service_tier":"default","system_fingerprint":"fp_bare"}'
)


Schedule = Sequence[tuple[float, bytes]]


def schedule(sse: bytes, chunks: int, interval_s: float) -> Schedule:
    """mockai's pacing of its own stream: (seconds from start, bytes due then)."""
    events = [e + b"\n\n" for e in sse.split(b"\n\n") if e]
    due: dict[float, bytes] = {}
    for k, event in enumerate(events):
        at = max(0, min(k, chunks) - 1) * interval_s
        due[at] = due.get(at, b"") + event
    return sorted(due.items())


class Paced:
    """One open stream: the next write is one callLater away."""

    def __init__(self, request: server.Request, plan: Schedule, open_: set[Any]):
        self.request = request
        self.plan = plan
        self.next = 0
        self.start = clock.seconds()
        self.call: IDelayedCall | None = None
        self.open = open_
        open_.add(self)
        request.notifyFinish().addErrback(self.gone)
        self.write()

    def write(self) -> None:
        self.call = None
        self.request.write(self.plan[self.next][1])
        self.next += 1
        if self.next == len(self.plan):
            self.open.discard(self)
            self.request.finish()
            return
        wait = self.start + self.plan[self.next][0] - clock.seconds()
        self.call = clock.callLater(max(0.0, wait), self.write)

    def gone(self, _: Failure) -> None:
        self.open.discard(self)
        if self.call is not None and self.call.active():
            self.call.cancel()


class FixedChat(Resource):
    """Every POST gets the same JSON body (or the same paced stream)."""

    isLeaf = True

    def __init__(self, body: bytes, plan: Schedule = ()) -> None:
        super().__init__()
        self.body = body
        self.plan = plan
        self.streams: set[Paced] = set()

    def render_POST(self, request: server.Request) -> bytes | int:
        content = request.content
        if self.plan and content is not None and b'"stream":true' in content.read():
            request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
            request.setHeader(b"cache-control", b"no-cache")
            request.setHeader(b"x-accel-buffering", b"no")
            Paced(request, self.plan, self.streams)
            return server.NOT_DONE_YET
        request.setHeader(b"content-type", b"application/json")
        return self.body

    def render_GET(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return json.dumps({"open_streams": len(self.streams)}).encode()


class QuietSite(server.Site):
    """No access log: the log alone costs ~22% of throughput (DESIGN.md)."""

    def log(self, request: http.Request) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--body", help="file holding the JSON body to send")
    parser.add_argument("--stream-body", help="file holding the SSE body to stream")
    parser.add_argument("--chunks", type=int, default=50)
    parser.add_argument("--interval-ms", type=float, default=20.0)
    args = parser.parse_args(argv)
    body = DEFAULT_BODY
    if args.body:
        with open(args.body, "rb") as f:
            body = f.read()
    plan: Schedule = ()
    if args.stream_body:
        with open(args.stream_body, "rb") as f:
            plan = schedule(f.read(), args.chunks, args.interval_ms / 1000)
    site = QuietSite(FixedChat(body, plan), parsePOSTFormSubmission=False)
    # listenTCP raises at once if the port is taken, before the reactor runs.
    port = reactor.listenTCP(
        args.port, cast(ServerFactory, site), interface="127.0.0.1", backlog=4096
    )
    address = cast(IPv4Address, port.getHost())
    print(f"bare listening on 127.0.0.1:{address.port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
