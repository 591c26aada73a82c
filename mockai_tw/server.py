"""The running server's state and the service that listens for it.

``MockServer`` holds what requests read at request time (config, engine,
ticker), so a reload swaps one object and in-flight streams keep their plan.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort, IReactorCore, IReactorTime
from twisted.logger import Logger

from mockai_tw import __version__
from mockai_tw.config import Config
from mockai_tw.delivery import Event, Stream, Ticker
from mockai_tw.engine.chat import Engine
from mockai_tw.engine.faults import FaultInjector
from mockai_tw.engine.ratelimit import RateLimiter
from mockai_tw.web.azure import azure_tree
from mockai_tw.web.chat import ChatCompletions
from mockai_tw.web.completions import Completions
from mockai_tw.web.embeddings import Embeddings
from mockai_tw.web.models import Models
from mockai_tw.web.moderations import Moderations
from mockai_tw.web.resources import V1, ApiResource, Branch, Health
from mockai_tw.web.responses import Responses
from mockai_tw.web.site import ApiRequest, MockSite

log = Logger()


class MockServer:
    def __init__(self, config: Config, clock: IReactorTime) -> None:
        self.clock = clock
        self.version = __version__
        self.started = clock.seconds()
        self.ticker = Ticker(clock, config.stream.tick_ms / 1000.0)
        self.apply(config)
        self.site = MockSite(
            self.resource(),
            clock,
            max_body_bytes=lambda: self.config.http.max_body_bytes,
            log_requests=lambda: self.config.http.log_requests,
        )

    def apply(self, config: Config) -> None:
        """Make ``config`` the one new requests see."""
        self.config = config
        self.token_bytes = tuple(t.encode() for t in config.tokens)
        self.engine = Engine(config)
        self.ticker.tick_s = config.stream.tick_ms / 1000.0
        # Budgets and fault counts survive a reload that leaves them alone.
        limiter = getattr(self, "limiter", None)
        if limiter is None or limiter.config != config.rate_limits:
            self.limiter = RateLimiter(config.rate_limits)
        faults = getattr(self, "faults", None)
        if faults is None or faults.config != config.faults:
            self.faults = FaultInjector(config.faults)
            if faults is not None:
                self.faults.counts = faults.counts

    def resource(self) -> ApiResource:
        root = Branch(self)
        root.putChild(b"health", Health(self))
        v1 = V1(self)
        root.putChild(b"v1", v1)
        chat = Branch(self)
        v1.putChild(b"chat", chat)
        chat.putChild(b"completions", ChatCompletions(self))
        v1.putChild(b"models", Models(self))
        v1.putChild(b"embeddings", Embeddings(self))
        v1.putChild(b"moderations", Moderations(self))
        v1.putChild(b"completions", Completions(self))
        v1.putChild(b"responses", Responses(self))
        root.putChild(b"openai", azure_tree(self))
        return root

    def stream(
        self,
        request: ApiRequest,
        events: Iterator[Event],
        content_type: bytes | None = b"text/event-stream; charset=utf-8",
    ) -> None:
        """Start a paced response (SSE unless told otherwise); delivery takes it."""
        request.setResponseCode(200)
        if content_type is not None:
            request.setHeader(b"content-type", content_type)
        if content_type is not None and content_type.startswith(b"text/event-stream"):
            request.setHeader(b"cache-control", b"no-cache")
            request.setHeader(b"x-accel-buffering", b"no")
        request.setHeader(b"openai-processing-ms", request.processing_ms())
        stream = Stream(request, events, self.clock.seconds(), request.transport)
        request.registerProducer(stream, True)
        request.notifyFinish().addErrback(stream.connectionLost)
        self.ticker.add(stream)


class ListenService(Service):
    """Listens on one endpoint description; ``listening`` fires with the port."""

    def __init__(self, server: MockServer, endpoint: str, reactor: Any) -> None:
        self.server = server
        self.endpoint = endpoint
        self.reactor = reactor
        self.port: IListeningPort | None = None
        self.listening: defer.Deferred[IListeningPort] = defer.Deferred()

    def startService(self) -> None:
        super().startService()
        d = serverFromString(self.reactor, self.endpoint).listen(self.server.site)
        d.addCallbacks(self._listening, self._failed)

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        address = port.getHost()
        where = f"{getattr(address, 'host', address)}:{getattr(address, 'port', '')}"
        log.info(
            "mockai {version} listening on {where} (base URL http://{where}/v1)",
            version=self.server.version,
            where=where,
        )
        self.listening.callback(port)

    def _failed(self, failure: Any) -> None:
        log.error(
            "mockai cannot listen on {endpoint}: {why}",
            endpoint=self.endpoint,
            why=failure.getErrorMessage(),
        )
        self.listening.errback(failure)
        self.listening.addErrback(lambda _: None)
        if IReactorCore.providedBy(self.reactor) and self.reactor.running:
            self.reactor.stop()

    def stopService(self) -> defer.Deferred[None] | None:
        super().stopService()
        self.server.ticker.stop()
        if self.port is not None:
            port, self.port = self.port, None
            stopped: defer.Deferred[None] | None = port.stopListening()
            return stopped
        return None
