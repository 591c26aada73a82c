"""The running server's state and the service that listens for it.

``MockServer`` holds what requests read at request time (config, engine,
ticker), so a reload swaps one object and in-flight streams keep their plan.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort, IReactorCore, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from mockai_tw import __version__
from mockai_tw.config import Config, ConfigError
from mockai_tw.delivery import Ticker
from mockai_tw.drain import Drain, Readiness
from mockai_tw.engine import tokenizer
from mockai_tw.engine.capacity import Capacity
from mockai_tw.engine.chat import Engine
from mockai_tw.engine.faults import FaultInjector
from mockai_tw.engine.ratelimit import RateLimiter
from mockai_tw.engine.responses import ResponseStore
from mockai_tw.engine.rules import Rule, RuleBook, parse_rule
from mockai_tw.files_store import FileStore, Uploads
from mockai_tw.hooks import Hooks
from mockai_tw.journal import Journal
from mockai_tw.logs import AccessLog
from mockai_tw.metrics import Metrics
from mockai_tw.state.types import StoreError
from mockai_tw.web import endpoints
from mockai_tw.web.anthropic import Messages
from mockai_tw.web.azure import azure_tree
from mockai_tw.web.background import Jobs
from mockai_tw.web.batches import Batches, BatchesRoot
from mockai_tw.web.connections import SharedPort, listen
from mockai_tw.web.control import control_tree
from mockai_tw.web.conversations import Conversations, append_response
from mockai_tw.web.files import Files, UploadsRoot, spool_limit
from mockai_tw.web.gemini import divert, gemini_tree
from mockai_tw.web.kept import Kept
from mockai_tw.web.models import Models
from mockai_tw.web.peers import Peers
from mockai_tw.web.pipeline import EndpointResource
from mockai_tw.web.proxy import recorder_for
from mockai_tw.web.resources import (
    V1,
    ApiResource,
    Branch,
    Health,
    MetricsPage,
    Ready,
)
from mockai_tw.web.responses import Responses
from mockai_tw.web.site import MockSite
from mockai_tw.web.stored import ChatCompletions

if TYPE_CHECKING:
    from mockai_tw.web.shared import Shared

log = Logger()


def _hook_failed(event: str, failure: BaseException, request: Any) -> None:
    log.failure(
        "mockai: a {event} listener failed (request {request_id})",
        Failure(failure),
        event=event,
        request_id=getattr(request, "request_id", None),
    )


class MockServer:
    def __init__(
        self,
        config: Config,
        clock: IReactorTime,
        loader: Callable[[], Config] | None = None,
        config_path: str | None = None,
        worker: int | None = None,
    ) -> None:
        self.clock = clock
        # This worker's index among several on one port (workers.py); None
        # for a single process, which sends no x-mockai-worker header.
        self.worker = worker
        self.version = __version__
        self.started = clock.seconds()
        self.ticker = Ticker(clock, config.stream.tick_ms / 1000.0)
        self.hooks = Hooks(on_failure=_hook_failed)
        # Subscribed to the hooks only while http.access_log is on (apply()).
        self.access_log = AccessLog(self.hooks, clock)
        # How to read the config again (SIGHUP, POST /_mock/reload).
        self.loader = loader
        self.config_path = config_path
        # Rules added at run time and the journal outlive a reload.
        self.rules = RuleBook()
        self.journal = Journal()  # sized by apply()
        # Its own registry; subscribed while metrics.enabled is on (apply()).
        self.metrics = Metrics(self.hooks, clock, self.journal)
        # Set by the daemon when it is one of several workers (web/peers.py).
        self.peers: Peers | None = None
        # One state for every process (state.backend: redis), else None.
        self.shared: Shared | None = None
        if config.state.backend == "redis":
            from mockai_tw.web.shared import Shared

            self.shared = Shared(config.state, self.parse_rule, clock)
            self.journal.share = self._share_record
        # Kept responses (previous_response_id); resized by apply().
        self.responses = ResponseStore(config.responses.store_size)
        self.conversations = Kept(
            "conversations",
            lambda: self.config.conversations.store_size,
            lambda: self.shared,
        )
        self.completions = Kept(
            "chat_completions",
            lambda: self.config.chat_completions.store_size,
            lambda: self.shared,
        )
        self.background = Jobs(self, done=append_response)
        self.apply(config)
        # Files, Uploads and batches: this process's own, on its clock.
        self.files = FileStore(config.files, lambda: self.clock.seconds())
        self.uploads = Uploads(self.files)
        self.batches = Batches(self)
        self.hooks.on("first_byte", self.journal.heard)
        self.site = MockSite(
            self.resource(),
            clock,
            max_body_bytes=lambda: self.config.http.max_body_bytes,
            limits=lambda: self.config.http,
        )
        self.site.hooks = self.hooks
        # File uploads spool to disk, up to files.max_bytes (web/files.py).
        self.site.spooled = spool_limit(lambda: self.files.config)
        self.site.spool_dir = lambda: self.files.dir
        # /ready, and the graceful stop a listener's stopService runs.
        self.readiness = Readiness()
        self.drain = Drain(
            clock, self.site, self.ticker, self.readiness, lambda: self.config.shutdown
        )
        if worker is not None:
            self.site.worker_header = b"%d" % worker

    def use_clock(self, clock: IReactorTime) -> None:
        """Move the service's time to ``clock`` (the test helper's virtual
        time): what requests, rules, budgets, batches and streams read.
        Connections keep the reactor's own timers."""
        self.clock = clock
        self.ticker.clock = clock

    def close(self) -> None:
        """At stop: batches' timers cancelled, a files directory this
        server made removed."""
        self.batches.stop()
        self.files.close()

    def parse_rule(self, raw: Mapping[str, Any]) -> Rule:
        """A run-time rule as the control API reads one (files beside the
        config file)."""
        path = self.config_path
        base = os.path.dirname(os.path.abspath(path)) if path else None
        return parse_rule(dict(raw), "rule", base)

    def apply(self, config: Config) -> None:
        """Make ``config`` the one new requests see."""
        self.config = config
        self.token_bytes = tuple(t.encode() for t in config.tokens)
        self.access_log.follow(config.http.log_requests)
        self.metrics.follow(config)
        if config.rules is not getattr(self, "file_rules", None):
            self.file_rules = config.rules
            self.rules.load(config.rules, self.clock.seconds())
        self.journal.configure(
            config.journal.size, config.journal.enabled, config.journal.max_bytes
        )
        self.engine = Engine(config, rules=self.rules)
        # Record and replay: kept across a reload that leaves it alone.
        old = getattr(self, "recorder", None)
        self.recorder = recorder_for(config, self.clock, old)
        if self.responses.size != config.responses.store_size:
            self.responses.resize(config.responses.store_size)
        self.ticker.tick_s = config.stream.tick_ms / 1000.0
        # Budgets and fault counts survive a reload that leaves them alone.
        limiter = getattr(self, "limiter", None)
        if limiter is None or limiter.config != config.rate_limits:
            self.limiter = RateLimiter(config.rate_limits)
        # Kept: requests running and waiting hold tickets of its pools, and
        # new limits apply to them at once (a larger max_running starts waiters).
        capacity = getattr(self, "capacity", None)
        if capacity is None:
            self.capacity = Capacity(config.capacity, self.clock.seconds())
        elif capacity.config != config.capacity:
            capacity.configure(config.capacity, self.clock.seconds())
        faults = getattr(self, "faults", None)
        if faults is None or faults.config != config.faults:
            self.faults = FaultInjector(config.faults)
            if faults is not None:
                self.faults.counts = faults.counts

    def resource(self) -> ApiResource:
        """The tree: one pipeline resource per endpoint description."""
        root = Branch(self)
        root.putChild(b"health", Health(self))
        root.putChild(b"ready", Ready(self))
        root.putChild(b"metrics", MetricsPage(self))
        v1 = V1(self)
        root.putChild(b"v1", v1)
        chat = Branch(self)
        v1.putChild(b"chat", chat)
        chat.putChild(b"completions", ChatCompletions(self, endpoints.CHAT))
        v1.putChild(b"conversations", Conversations(self))
        v1.putChild(b"completions", EndpointResource(self, endpoints.COMPLETIONS))
        v1.putChild(b"embeddings", EndpointResource(self, endpoints.EMBEDDINGS))
        v1.putChild(b"moderations", EndpointResource(self, endpoints.MODERATIONS))
        v1.putChild(b"responses", Responses(self))
        v1.putChild(b"messages", Messages(self))
        v1.putChild(b"models", Models(self))
        v1.putChild(b"files", Files(self))
        v1.putChild(b"uploads", UploadsRoot(self))
        v1.putChild(b"batches", BatchesRoot(self))
        root.putChild(b"openai", azure_tree(self))
        gemini = gemini_tree(self)
        root.putChild(b"v1beta", gemini)
        v1.diverts.append(divert(gemini))
        root.putChild(b"_mock", control_tree(self))
        return root

    def reload(self) -> Config:
        """Read the config again and apply it; a bad file raises ConfigError
        (logged with its key path) and the old config stays."""
        if self.loader is None:
            raise ConfigError("", "this server has no config file to reload")
        try:
            config = self.loader()
        except Exception as error:
            # The loader turns every bad file into a ConfigError; anything
            # else is a bug behind it -- still one line, still the old config.
            refused = (
                error
                if isinstance(error, ConfigError)
                else ConfigError(
                    self.config_path or "",
                    "cannot load: "
                    + " ".join(f"{type(error).__name__}: {error}".split()),
                )
            )
            log.error(
                "mockai: config not reloaded, old config kept: {error}", error=refused
            )
            self.metrics.reloaded("refused")
            raise refused from None
        # The rest applies now; where the server listens changes at a restart.
        running = self.config.http
        if config.http.endpoint != running.endpoint:
            log.warn(
                "mockai: a new listening address (http.host, http.port,"
                " http.listen, http.backlog) needs a restart;"
                " still listening on {endpoint}",
                endpoint=running.endpoint,
            )
        if config.state != self.config.state:
            log.warn(
                "mockai: a new shared state (state.*) needs a restart;"
                " still using {backend}",
                backend=self.config.state.backend,
            )
            config = dataclasses.replace(config, state=self.config.state)
        config = config.listening_as(running)
        self.apply(config)
        self.metrics.reloaded("ok")
        log.info(
            "mockai: config reloaded from {path} ({rules} rules)",
            path=self.config_path,
            rules=len(config.rules),
        )
        return config

    def _share_record(self, packed: bytes) -> None:
        """Give the fleet's store a packed journal record too."""
        shared, journal = self.shared, self.journal
        if shared is not None and shared.connected:
            shared.journal(packed, journal.size, journal.max_bytes)


def _exit_failed() -> None:
    """Exit 1 once the reactor has stopped (its log written out)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(1)


class ListenService(Service):
    """Listens on one endpoint description; ``listening`` fires with the port."""

    def __init__(
        self,
        server: MockServer,
        endpoint: str,
        reactor: Any,
        shared: SharedPort | None = None,
    ) -> None:
        self.server = server
        self.endpoint = endpoint
        self.reactor = reactor
        # A worker's share of its parent's port (workers.py), else None.
        self.shared = shared
        self.port: IListeningPort | None = None
        self.listening: defer.Deferred[IListeningPort] = defer.Deferred()

    def startService(self) -> None:
        super().startService()
        # Before listening: the first request must not pay for loading them.
        tokenizer.warm(self.server.config.models)
        store = self.server.shared
        if store is None:
            self._listen()
            return
        # Redis down at start: the daemon does not start (one line, state.url
        # redacted).
        waited = store.store.wait_connected(store.config.connect_timeout_s)
        waited.addCallbacks(lambda _: self._listen(), self._failed)

    def _listen(self) -> None:
        d = listen(self.reactor, self.endpoint, self.server.site, self.shared)
        d.addCallbacks(self._listening, self._failed)

    def _listening(self, port: IListeningPort) -> None:
        self.port = port
        address = port.getHost()
        where = f"{getattr(address, 'host', address)}:{getattr(address, 'port', '')}"
        scheme = "https" if self.endpoint.lower().startswith("ssl:") else "http"
        log.info(
            "mockai {version} listening on {where} (base URL {scheme}://{where}/v1)",
            version=self.server.version,
            where=where,
            scheme=scheme,
        )
        self.server.readiness.serving()
        self.listening.callback(port)

    def _failed(self, failure: Any) -> None:
        if failure.check(StoreError):
            log.error("mockai cannot start: {why}", why=failure.getErrorMessage())
        else:
            log.error(
                "mockai cannot listen on {endpoint}: {why}",
                endpoint=self.endpoint,
                why=failure.getErrorMessage(),
            )
        self.listening.errback(failure)
        self.listening.addErrback(lambda _: None)
        if not IReactorCore.providedBy(self.reactor):
            return
        # twistd exits 0 whenever the reactor stops: a supervisor that
        # restarts on failure (systemd, Swarm on-failure) must see one.
        self.reactor.addSystemEventTrigger("after", "shutdown", _exit_failed)
        # At start the reactor is not running yet: stop it once it is, or the
        # daemon would sit there serving nothing.
        if self.reactor.running:
            self.reactor.stop()
        else:
            self.reactor.callWhenRunning(self.reactor.stop)

    def stopService(self) -> defer.Deferred[None]:
        """The graceful stop (drain.py): readiness off, this port closed after
        ``shutdown.ready_grace_s``, what is in flight finished or cut; the
        Deferred fires when it is over."""
        super().stopService()
        # Background responses stop with their process (their timers are here).
        self.server.background.stop_all()
        port, self.port = self.port, None
        drained = self.server.drain.start(
            port.stopListening if port is not None else None
        )

        def closed(result: object) -> object:
            self.server.close()
            return result

        drained.addBoth(closed)
        shared = self.server.shared
        if shared is not None:
            # After the drain: a stream running to its end still journals.
            drained.addCallback(lambda _: shared.store.close())
        return drained


class ReloadOnHangup(Service):
    """``SIGHUP`` re-reads the config file, as daemons do.

    The handler only hands the work to the reactor thread; it is installed
    when the service starts (in the main thread only: Python allows no other)
    and the previous handler is put back when it stops.
    """

    def __init__(self, server: MockServer, reactor: Any) -> None:
        self.server = server
        self.reactor = reactor
        self.previous: Any = None
        self.installed = False

    def startService(self) -> None:
        super().startService()
        if not hasattr(signal, "SIGHUP"):
            return
        if threading.current_thread() is not threading.main_thread():
            return
        self.previous = signal.signal(signal.SIGHUP, self._hangup)
        self.installed = True

    def _hangup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self._reload)

    def _reload(self) -> None:
        # A bad file is logged by reload(); the old config keeps serving.
        with contextlib.suppress(ConfigError):
            self.server.reload()

    def stopService(self) -> None:
        super().stopService()
        if self.installed:
            signal.signal(signal.SIGHUP, self.previous)
            self.installed = False
