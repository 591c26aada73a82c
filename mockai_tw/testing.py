"""Run mockai inside a test process: for trial, for pytest, or plain code.

The service is the daemon's own (``makeService``: same resource tree, engine,
rules and journal), listening on an ephemeral port of 127.0.0.1, built from a
config dict or file.  A ``MockAI`` gives the SDK what it needs (``base_url``,
``api_key``) and lets the test script the mock (``add_rule``) and read what
the application sent (``requests``) through the functions behind the
``/_mock/`` control API, so no admin token is needed.

Two ways to run it:

* on a running reactor (trial): ``mock = await start(config)``, then
  ``await mock.stop()`` (``MockAITestCase`` or ``start_for(case)`` register
  that as a cleanup);
* from a thread that is not the reactor's (pytest, scripts):
  ``with serving(config) as mock: ...`` runs the reactor in a daemon thread
  and makes every method of ``mock`` a blocking call into it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, cast

from twisted.internet import defer
from twisted.internet.threads import blockingCallFromThread

from mockai_tw.config import Config
from mockai_tw.config_load import load_config, parse_config
from mockai_tw.server import MockServer
from mockai_tw.tap import makeService
from mockai_tw.vclock import DrivenClock
from mockai_tw.web import control

T = TypeVar("T")

#: The API key and admin token a config dict gets unless it names its own.
API_KEY = "sk-mockai-test"
ADMIN_TOKEN = "mockai-admin-test"
LISTEN = "tcp:0:interface=127.0.0.1"
# Defaults for a config dict: keys, and instant streams (tests want speed).
DEFAULTS: Mapping[str, Any] = {
    "access_token": API_KEY,
    "admin_token": ADMIN_TOKEN,
    "stream": {"interval_ms": 0},
}
# How long stop() waits for clients to hang up before cutting them off.
QUIET_TIMEOUT_S = 5.0


def merged(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, mappings merged key by key."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def _config(
    config: Mapping[str, Any] | None,
    config_file: str | None,
    base_dir: str | None,
    environ: Mapping[str, str],
) -> tuple[Config, Callable[[], Config], str | None]:
    """The config, how to read it again, and the file it came from."""
    listen = {"http": {"listen": LISTEN}}
    if config_file is not None:
        if config is not None:
            raise TypeError("give a config dict or a config file, not both")

        def from_file() -> Config:
            loaded = load_config(config_file, environ)
            http = dataclasses.replace(loaded.http, listen=LISTEN)
            return dataclasses.replace(loaded, http=http)

        return from_file(), from_file, config_file
    raw = merged(merged(DEFAULTS, config or {}), listen)

    def from_dict() -> Config:
        return parse_config(raw, environ, base_dir=base_dir)

    return from_dict(), from_dict, None


class MockAI:
    """A started mock: where it listens, and how a test scripts and reads it."""

    def __init__(
        self,
        service: Any,
        port: int,
        call: Callable[..., Any],
        clock: DrivenClock | None = None,
    ) -> None:
        self.service = service
        self.server: MockServer = service.server
        self.port = port
        self._call = call
        self.clients: list[Any] = []
        # With ``virtual_time=True``: the clock ``advance`` moves.
        self.clock = clock

    @property
    def root(self) -> str:
        """``http://127.0.0.1:PORT`` (Azure's ``azure_endpoint``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        """The ``base_url`` for ``openai.OpenAI``."""
        return self.root + "/v1"

    @property
    def api_key(self) -> str:
        config = self.server.config
        return config.tokens[0] if config.tokens else API_KEY

    @property
    def admin_token(self) -> str | None:
        return self.server.config.admin_token

    def client(self, **kw: Any) -> Any:
        """An ``openai.OpenAI`` for this server (no retries), closed at stop."""
        import openai

        kw.setdefault("api_key", self.api_key)
        kw.setdefault("max_retries", 0)
        client = openai.OpenAI(base_url=self.base_url, **kw)
        self.clients.append(client)
        return client

    # --- scripting and reading, through the control API's own functions ---

    def add_rule(
        self,
        rule: Mapping[str, Any] | None = None,
        *,
        position: str = "last",
        **fields: Any,
    ) -> str:
        """Add a rule (a mapping as in the config, or its keys as keywords:
        ``match=``, ``answer=``, ``times=``, ``ttl_s=``, ``name=``); its id."""
        body = {**(rule or {}), **fields, "position": position}
        view = self._call(control.add_rule, self.server, body)
        return str(view["id"])

    def replace_rule(self, rule_id: str, rule: Mapping[str, Any]) -> None:
        self._call(control.replace_rule, self.server, rule_id, rule)

    def delete_rule(self, rule_id: str) -> None:
        self._call(control.delete_rule, self.server, rule_id)

    def reset_rules(self) -> None:
        """Back to the config's rules, counters fresh."""
        self._call(control.reset_rules, self.server)

    def rules(self) -> list[dict[str, Any]]:
        rules: list[dict[str, Any]] = self._call(control.list_rules, self.server)[
            "rules"
        ]
        return rules

    def requests(
        self,
        path: str | None = None,
        model: str | None = None,
        rule: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The journal, newest last (see ``GET /_mock/requests``)."""
        found: list[dict[str, Any]] = self._call(
            control.read_journal, self.server, path, model, rule, since, limit
        )["requests"]
        return found

    def clear_requests(self) -> None:
        self._call(control.clear_journal, self.server)

    def advance(self, seconds: float) -> None:
        """Move the mock's clock ``seconds`` forward at once (started with
        ``virtual_time=True``): batch stages, rule ``ttl_s``, rate-limit
        windows and file expiry fall due without sleeping."""
        if self.clock is None:
            raise RuntimeError("advance() needs a mock started with virtual_time=True")
        self._call(self.clock.advance, seconds)

    def reload(self) -> None:
        """Read the config again (the file, or the dict it was given)."""
        self._call(control.reload_config, self.server)

    # --- stopping ---

    async def _stop(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()
        if self.clock is not None:
            self.clock.stop()
        site = self.server.site
        quiet = site.quiet()
        if not quiet.called:
            timer = _global_reactor().callLater(QUIET_TIMEOUT_S, _hang_up, site)
            await quiet
            if timer.active():
                timer.cancel()
        await defer.maybeDeferred(self.service.stopService)

    def stop(self) -> defer.Deferred[None]:
        """Close SDK clients, wait for connections to end (cutting off any
        left after a few seconds), stop the service."""
        return defer.ensureDeferred(self._stop())


def _global_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _hang_up(site: Any) -> None:
    for channel in list(site.channels):
        # Site wraps each HTTPChannel (for HTTP/2 negotiation); the wrapper
        # has no transport of its own.
        inner = getattr(channel, "_channel", channel)
        transport = getattr(inner, "transport", None)
        if transport is not None:
            transport.abortConnection()


def _direct(f: Callable[..., T], *args: Any) -> T:
    return f(*args)


async def _start(
    config: Mapping[str, Any] | None,
    config_file: str | None,
    base_dir: str | None,
    environ: Mapping[str, str],
    reactor: Any,
    call: Callable[..., Any],
    virtual_time: bool = False,
) -> MockAI:
    loaded, loader, path = _config(config, config_file, base_dir, environ)
    options = {"loaded": loaded, "loader": loader, "config_path": path}
    service: Any = makeService(options, reactor, environ)
    clock = None
    if virtual_time:
        clock = DrivenClock(reactor)
        service.server.use_clock(clock)
    service.startService()
    try:
        port = await service.listener.listening
    except Exception:
        await defer.maybeDeferred(service.stopService)
        if clock is not None:
            clock.stop()
        raise
    return MockAI(service, port.getHost().port, call, clock)


def start(
    config: Mapping[str, Any] | None = None,
    *,
    config_file: str | None = None,
    base_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    reactor: Any = None,
    virtual_time: bool = False,
) -> defer.Deferred[MockAI]:
    """Start a mock on the running reactor (call from the reactor thread).

    ``config`` is merged over ``DEFAULTS`` (a key, an admin token, instant
    streams); ``config_file`` is used as it is, listening address aside.
    ``base_dir`` is where a dict's ``file:`` fixtures live (default: cwd).
    ``MOCKAI_*`` variables are ignored unless ``environ`` is given.
    ``virtual_time``: the service's clock runs with real time and
    ``mock.advance(seconds)`` moves it forward at once.
    """
    if reactor is None:
        reactor = _global_reactor()
    return defer.ensureDeferred(
        _start(
            config, config_file, base_dir, environ or {}, reactor, _direct, virtual_time
        )
    )


async def start_for(
    case: Any, config: Mapping[str, Any] | None = None, **kw: Any
) -> MockAI:
    """A started mock for a trial ``TestCase``, stopped at its cleanup."""
    mock = await start(config, **kw)
    case.addCleanup(mock.stop)
    return mock


class MockAITestCase:
    """A trial ``TestCase`` mixin: ``mock = await self.start_mockai({...})``."""

    async def start_mockai(
        self, config: Mapping[str, Any] | None = None, **kw: Any
    ) -> MockAI:
        return await start_for(self, config, **kw)


# --- from outside the reactor thread (pytest, scripts) ------------------------

_lock = threading.Lock()
_thread: threading.Thread | None = None


def reactor_thread() -> Any:
    """The global reactor, running in a daemon thread (started once)."""
    global _thread
    reactor = _global_reactor()
    with _lock:
        if _thread is None:
            if reactor.running:
                raise RuntimeError(
                    "the reactor already runs in this process; use start() on it"
                )
            _thread = threading.Thread(
                target=reactor.run,
                kwargs={"installSignalHandlers": False},
                name="mockai-reactor",
                daemon=True,
            )
            _thread.start()
    return reactor


def start_in_thread(
    config: Mapping[str, Any] | None = None,
    *,
    config_file: str | None = None,
    base_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    virtual_time: bool = False,
) -> MockAI:
    """Start a mock on the reactor thread; its methods block until done there."""
    reactor = reactor_thread()

    def call(f: Callable[..., T], *args: Any) -> T:
        result: T = blockingCallFromThread(reactor, f, *args)
        return result

    def begin() -> defer.Deferred[MockAI]:
        return defer.ensureDeferred(
            _start(
                config,
                config_file,
                base_dir,
                environ or {},
                reactor,
                call,
                virtual_time,
            )
        )

    mock: MockAI = blockingCallFromThread(reactor, cast(Any, begin))
    return mock


def stop_in_thread(mock: MockAI) -> None:
    blockingCallFromThread(_global_reactor(), cast(Any, mock.stop))


@contextlib.contextmanager
def serving(
    config: Mapping[str, Any] | None = None,
    *,
    config_file: str | None = None,
    base_dir: str | None = None,
    environ: Mapping[str, str] | None = None,
    virtual_time: bool = False,
) -> Iterator[MockAI]:
    """``with serving({...}) as mock:`` -- a mock for code off the reactor."""
    mock = start_in_thread(
        config,
        config_file=config_file,
        base_dir=base_dir,
        environ=environ,
        virtual_time=virtual_time,
    )
    try:
        yield mock
    finally:
        stop_in_thread(mock)
