"""Start the service the plugin builds on a live listener, and talk to it."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import openai  # at import: inside a test it blocks the reactor ~1 s
import yaml

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.iweb import IResponse

from mockai_tw.server import ListenService, MockServer
from mockai_tw.tap import makeService
from mockai_tw.testing import merged

TOKEN = "sk-test-0123456789"
T = TypeVar("T")


merge = merged


def write_config(case: TestCase, config: Mapping[str, Any]) -> str:
    path: str = case.mktemp() + ".yaml"
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(dict(config), f, allow_unicode=True)
    return path


@dataclass
class Live:
    """A running server and a client pool bound to one test."""

    server: MockServer
    listener: ListenService
    port: int
    pool: HTTPConnectionPool
    clients: list[Any] = field(default_factory=list)

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.root + "/v1"

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = TOKEN,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Deferred[IResponse]:
        sent: dict[bytes | str, list[bytes | str]] = {
            k: [v] for k, v in (headers or {}).items()
        }
        if token is not None:
            sent["Authorization"] = [f"Bearer {token}"]
        data = (
            raw
            if raw is not None
            else (None if body is None else json.dumps(body).encode())
        )
        if data is not None:
            sent.setdefault("Content-Type", ["application/json"])
        d: Deferred[IResponse] = treq.request(
            method, self.root + path, data=data, headers=sent, pool=self.pool
        )  # type: ignore[assignment]
        return d

    async def json(
        self, method: str, path: str, body: Any = None, **kw: Any
    ) -> tuple[IResponse, Any]:
        response = await self.request(method, path, body, **kw)
        content = await treq.content(response)
        return response, json.loads(content)

    def sdk(self, **kw: Any) -> Any:
        """An official ``openai.OpenAI`` client for this server, closed at cleanup."""
        kw.setdefault("api_key", TOKEN)
        kw.setdefault("max_retries", 0)
        client = openai.OpenAI(base_url=self.base_url, **kw)
        self.clients.append(client)
        return client

    def in_thread(self, f: Callable[[], T]) -> Deferred[T]:
        """Run a blocking SDK call off the reactor thread so the reactor serves it."""
        return deferToThread(f)


async def start(
    case: TestCase,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Live:
    """The service ``makeService`` builds, listening on an ephemeral port.

    Cleanups run last-in-first-out: clients close, then the test waits for the
    server to have no open connection, then the service stops.
    """
    config = merge(
        {"access_token": TOKEN, "stream": {"interval_ms": 0}}, overrides or {}
    )
    path = write_config(case, config)
    service: Any = makeService(
        {"config": path, "listen": "tcp:0:interface=127.0.0.1"}, reactor, environ or {}
    )
    service.startService()
    case.addCleanup(service.stopService)
    port = await service.listener.listening
    pool = HTTPConnectionPool(reactor, persistent=False)
    live = Live(service.server, service.listener, port.getHost().port, pool)
    case.addCleanup(live.server.site.quiet)
    case.addCleanup(pool.closeCachedConnections)
    case.addCleanup(lambda: [c.close() for c in live.clients])
    return live


def events(body: bytes) -> list[bytes]:
    """Split an SSE body into its ``data:`` payloads, checking the framing."""
    assert body.endswith(b"\n\n"), body[-40:]
    out = []
    for block in body[:-2].split(b"\n\n"):
        assert block.startswith(b"data: "), block[:40]
        assert b"\n" not in block, block[:80]
        out.append(block[len(b"data: ") :])
    return out
