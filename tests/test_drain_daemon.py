"""The graceful stop in the real ``twistd``: SIGTERM drains, exits 0.

Each test waits on the process's own log lines and on its exit, never on a
sleep; a process still running at the end of a test is killed.
"""

from __future__ import annotations

import json
import os
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IProcessTransport
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool
from twisted.web.iweb import IResponse

from tests.support import events
from tests.test_daemon import AUTH, SEED_CONFIG, TWISTD, Twistd, environ

# Twelve characters, one a chunk, 250 ms apart: a stream of three seconds.
PACED = (
    SEED_CONFIG
    + """\
replies: ["abcdefghijkl"]
stream:
  interval_ms: 250
  chunking: char
"""
)
CHAT = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "hi"}],
    "stream": True,
}


class Logged(Twistd):
    """Also fires a Deferred when a given text has been logged."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: list[tuple[bytes, Deferred[None]]] = []

    def outReceived(self, data: bytes) -> None:
        super().outReceived(data)
        for entry in list(self._waiting):
            if entry[0] in self.out:
                self._waiting.remove(entry)
                entry[1].callback(None)

    def logged(self, text: str) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._waiting.append((text.encode(), d))
        self.outReceived(b"")
        return d

    def signal(self, name: str) -> None:
        transport = self.transport
        assert IProcessTransport.providedBy(transport)
        transport.signalProcess(name)


class Streaming:
    """A stream being read: ``first`` fires on its first bytes, ``done`` at
    its end with everything received."""

    def __init__(self, response: IResponse) -> None:
        self.chunks: list[bytes] = []
        self.first: Deferred[None] = Deferred()
        self.done: Deferred[Any] = treq.collect(response, self._got)

    def _got(self, data: bytes) -> None:
        self.chunks.append(data)
        if not self.first.called:
            self.first.callback(None)

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


class GracefulStopTests(TestCase):
    def setUp(self) -> None:
        self.workdir = os.path.abspath(self.mktemp())
        os.makedirs(self.workdir)
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)

    def spawn(self, config: str) -> Logged:
        path = os.path.join(self.workdir, "config.yaml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(config)
        protocol = Logged()
        args = [TWISTD, "-n", "--pidfile=", "mockai", f"--config={path}"]
        process = reactor.spawnProcess(
            protocol, TWISTD, args, env=environ(), path=self.workdir
        )

        def kill() -> Deferred[Any] | None:
            if protocol.ended.called:
                return None
            process.signalProcess("KILL")
            return protocol.ended

        self.addCleanup(kill)
        return protocol

    async def stream(self, port: int) -> Streaming:
        response = await treq.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json=CHAT,
            headers=AUTH,
            pool=self.pool,
            unbuffered=True,
        )
        self.assertEqual(response.code, 200)
        streaming = Streaming(response)
        await streaming.first
        return streaming

    async def ready(self, port: int) -> tuple[int, Any]:
        response = await treq.get(f"http://127.0.0.1:{port}/ready", pool=self.pool)
        return response.code, json.loads(await treq.content(response))

    async def test_sigterm_lets_a_stream_finish_and_exits_0(self) -> None:
        protocol = self.spawn(
            PACED + "shutdown:\n  ready_grace_s: 1.5\n  drain_timeout_s: 30\n"
        )
        port = await protocol.port
        code, body = await self.ready(port)
        self.assertEqual((code, body["status"]), (200, "ready"))
        streaming = await self.stream(port)

        protocol.signal("TERM")
        await protocol.logged("mockai: stopping:")
        # Not ready at once, while the listener still accepts (the grace).
        code, body = await self.ready(port)
        self.assertEqual(code, 503)
        self.assertEqual(body["error"]["code"], "server_draining")

        await streaming.done
        received = events(streaming.body)
        self.assertEqual(received[-1], b"[DONE]")
        text = "".join(
            json.loads(e)["choices"][0]["delta"].get("content") or ""
            for e in received[:-1]
        )
        self.assertEqual(text, "abcdefghijkl")
        self.assertEqual(await protocol.ended, 0)
        out = protocol.out.decode()
        order = [
            out.index(line)
            for line in (
                "SIGTERM received: stopping gracefully",
                "mockai: stopping: /ready answers 503",
                "mockai: no longer accepting connections",
                "mockai: drained: every request in flight finished",
            )
        ]
        self.assertEqual(order, sorted(order))
        self.assertNotIn(b"Traceback", protocol.out + protocol.err)

    async def test_drain_timeout_cuts_the_stream_and_exits_0(self) -> None:
        protocol = self.spawn(PACED + "shutdown:\n  drain_timeout_s: 0.5\n")
        port = await protocol.port
        streaming = await self.stream(port)

        protocol.signal("TERM")
        await streaming.done
        last = json.loads(events(streaming.body)[-1])
        self.assertEqual(last["error"]["code"], "server_shutting_down")
        self.assertNotIn(b"[DONE]", streaming.body)
        self.assertEqual(await protocol.ended, 0)
        self.assertIn(b"mockai: drain timeout (0.5s): cutting 1 streams", protocol.out)
        self.assertNotIn(b"Traceback", protocol.out + protocol.err)

    async def test_a_second_sigterm_stops_at_once(self) -> None:
        protocol = self.spawn(
            PACED + "shutdown:\n  ready_grace_s: 60\n  drain_timeout_s: 60\n"
        )
        port = await protocol.port
        streaming = await self.stream(port)

        protocol.signal("TERM")
        await protocol.logged("mockai: stopping:")
        second = reactor.seconds()
        protocol.signal("TERM")
        self.assertEqual(await protocol.ended, 0)
        # Without the second signal it would have taken a minute or two.
        self.assertLess(reactor.seconds() - second, 10)
        self.assertIn(b"SIGTERM again: stopping at once", protocol.out)
        await streaming.done
        self.assertIn(b"server_shutting_down", streaming.body)
        self.assertNotIn(b"Traceback", protocol.out + protocol.err)
