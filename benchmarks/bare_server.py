"""The ceiling for this stack: bare twisted.web answering a fixed chat.completion.

bench.py runs it beside mockai, pinned the same way, so mockai's requests/s
can be read as a fraction of what twisted.web itself manages on this machine
today.  It does the minimum a fast Twisted server should: no form parsing
(``parsePOSTFormSubmission=False``), no access log, a pre-encoded body.

    python benchmarks/bare_server.py [--port 0] [--body FILE]

Prints ``bare listening on 127.0.0.1:PORT`` once it accepts connections.
"""

from __future__ import annotations

import argparse
from typing import cast

from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import ServerFactory
from twisted.web import http, server
from twisted.web.resource import Resource

# Same shape and size class as mockai's answer; bench.py passes mockai's own
# body with --body so both send the same bytes.
DEFAULT_BODY = (
    b'{"id":"chatcmpl-bare","object":"chat.completion","created":1700000000,'
    b'"model":"gpt-4o-mini","choices":[{"index":0,"message":{"role":"assistant",'
    b'"content":"Hello there.","refusal":null,"annotations":[]},"logprobs":null,'
    b'"finish_reason":"stop"}],"usage":{"prompt_tokens":8,"completion_tokens":3,'
    b'"total_tokens":11},"service_tier":"default","system_fingerprint":"fp_bare"}'
)


class FixedChat(Resource):
    """Every POST gets the same JSON body."""

    isLeaf = True

    def __init__(self, body: bytes) -> None:
        super().__init__()
        self.body = body

    def render_POST(self, request: server.Request) -> bytes:
        request.setHeader(b"content-type", b"application/json")
        return self.body


class QuietSite(server.Site):
    """No access log: the log alone costs ~22% of throughput (DESIGN.md)."""

    def log(self, request: http.Request) -> None:
        pass


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--body", help="file holding the JSON body to send")
    args = parser.parse_args(argv)
    body = DEFAULT_BODY
    if args.body:
        with open(args.body, "rb") as f:
            body = f.read()
    site = QuietSite(FixedChat(body), parsePOSTFormSubmission=False)
    # listenTCP raises at once if the port is taken, before the reactor runs.
    port = reactor.listenTCP(
        args.port, cast(ServerFactory, site), interface="127.0.0.1"
    )
    address = cast(IPv4Address, port.getHost())
    print(f"bare listening on 127.0.0.1:{address.port}", flush=True)
    reactor.run()


if __name__ == "__main__":
    main()
