"""Reload: SIGHUP and ``POST /_mock/reload`` re-read the config file.

New requests get the new config at once; a stream in flight finishes on the
plan it started with; a bad file is refused with its key path and the old
config keeps answering.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

import yaml

import treq
from twisted.internet import reactor, task
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.trial.unittest import SkipTest, TestCase
from twisted.web.client import HTTPConnectionPool
from zope.interface import provider

from mockai_tw.tap import makeService
from tests.support import TOKEN, Live, events, start, write_config

ADMIN = "adm-0123456789"
CHAT = "/v1/chat/completions"
OLD = "one two three four five six seven eight nine ten"


def config(answer: str, **extra: Any) -> dict[str, Any]:
    return {
        "access_token": TOKEN,
        "admin_token": ADMIN,
        "stream": {"interval_ms": 0},
        "rules": [
            {
                "name": "greeting",
                "match": {"content": "hello"},
                "answer": answer,
                "stream": {"chunking": "word", "interval_ms": 40},
            }
        ],
        **extra,
    }


def rewrite(live: Live, raw: Any) -> None:
    path = live.server.config_path
    assert path is not None
    with open(path, "w", encoding="utf-8") as f:
        if isinstance(raw, str):
            f.write(raw)
        else:
            yaml.safe_dump(raw, f)


async def text_of(live: Live, content: str = "hello") -> str:
    response, payload = await live.json(
        "POST",
        CHAT,
        {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]},
    )
    assert response.code == 200, payload
    return str(payload["choices"][0]["message"]["content"])


class Captured:
    """Log events, for asserting what a reload logged."""

    def __init__(self, case: TestCase) -> None:
        self.lines: list[str] = []

        @provider(ILogObserver)
        def observe(event: LogEvent) -> None:
            self.lines.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        case.addCleanup(globalLogPublisher.removeObserver, observe)


async def until(predicate: Any, timeout: float = 5.0) -> None:
    waited = 0.0
    while not predicate():
        if waited > timeout:
            raise AssertionError("timed out")
        await task.deferLater(reactor, 0.01, lambda: None)
        waited += 0.01


class ReloadTests(TestCase):
    async def test_sighup_under_a_running_stream(self) -> None:
        if not hasattr(signal, "SIGHUP"):
            raise SkipTest("no SIGHUP on this platform")
        live = await start(self, config(OLD))
        response = await live.request(
            "POST",
            CHAT,
            {
                "model": "gpt-4o",
                "stream": True,
                "messages": [{"role": "user", "content": "hello"}],
            },
        )
        body = treq.content(response)
        self.assertEqual(len(live.server.ticker.streams), 1)
        old_engine = live.server.engine
        rewrite(live, config("brand new answer"))
        os.kill(os.getpid(), signal.SIGHUP)
        await until(lambda: live.server.engine is not old_engine)
        # The stream is still going; new requests see the new rule already.
        self.assertEqual(len(live.server.ticker.streams), 1)
        self.assertEqual(await text_of(live), "brand new answer")
        chunks = [json.loads(p) for p in events(await body)[:-1]]
        streamed = "".join(
            c["choices"][0]["delta"].get("content") or "" for c in chunks
        )
        self.assertEqual(streamed, OLD)
        self.assertEqual(len({c["id"] for c in chunks}), 1)

    async def test_bad_file_keeps_the_old_config(self) -> None:
        live = await start(self, config("old rules"))
        log = Captured(self)
        bad = config("x")
        bad["rules"].insert(
            0, {"match": {"content": {"regex": "(oops"}}, "answer": "y"}
        )
        rewrite(live, bad)
        response, payload = await live.json("POST", "/_mock/reload", token=ADMIN)
        self.assertEqual(response.code, 400)
        self.assertEqual(payload["error"]["param"], "rules[0].match.content.regex")
        self.assertIn("invalid regex", payload["error"]["message"])
        self.assertEqual(await text_of(live), "old rules")
        # SIGHUP with the same bad file: logged with the key path, nothing changes.
        if hasattr(signal, "SIGHUP"):
            before = len(log.lines)
            os.kill(os.getpid(), signal.SIGHUP)
            await until(
                lambda: any("not reloaded" in line for line in log.lines[before:])
            )
            line = next(line for line in log.lines[before:] if "not reloaded" in line)
            self.assertIn("rules[0].match.content.regex", line)
        self.assertEqual(await text_of(live), "old rules")
        rewrite(live, "access_token: [unclosed\n")
        response, payload = await live.json("POST", "/_mock/reload", token=ADMIN)
        self.assertEqual(response.code, 400)
        self.assertIn("not valid YAML", payload["error"]["message"])
        self.assertEqual(await text_of(live), "old rules")

    async def test_control_reload_keeps_runtime_rules(self) -> None:
        live = await start(self, config("v1"))
        response, _ = await live.json(
            "POST",
            "/_mock/rules",
            {"match": {"content": "runtime"}, "answer": "added at run time"},
            token=ADMIN,
        )
        self.assertEqual(response.code, 201)
        rewrite(live, config("v2", replies=["Only reply."]))
        response, payload = await live.json("POST", "/_mock/reload", token=ADMIN)
        self.assertEqual(response.code, 200, payload)
        self.assertEqual(payload["rules"], 1)
        self.assertEqual(await text_of(live), "v2")
        self.assertEqual(await text_of(live, "runtime"), "added at run time")
        self.assertEqual(await text_of(live, "other"), "Only reply.")
        # Reset goes back to the (new) file's rules alone.
        await live.json("DELETE", "/_mock/rules", token=ADMIN)
        self.assertEqual(await text_of(live, "runtime"), "Only reply.")

    async def test_hangup_handler_is_removed_at_stop(self) -> None:
        if not hasattr(signal, "SIGHUP"):
            raise SkipTest("no SIGHUP on this platform")
        before = signal.getsignal(signal.SIGHUP)

        path = write_config(self, {"access_token": TOKEN})
        service: Any = makeService(
            {"config": path, "listen": "tcp:0:interface=127.0.0.1"}, reactor, {}
        )
        service.startService()
        await service.listener.listening
        self.assertIsNot(signal.getsignal(signal.SIGHUP), before)
        await service.stopService()
        self.assertIs(signal.getsignal(signal.SIGHUP), before)


DEEP = "access_token: t\nx: " + "[" * 5000 + "]" * 5000 + "\n"


async def settled(log: Captured, before: int) -> list[str]:
    """The lines logged since ``before``, once a reload's line is in (but
    not the test client's own: its connection pool logs its factories)."""
    await until(lambda: any("not reloaded" in line for line in log.lines[before:]))
    await task.deferLater(reactor, 0.05, lambda: None)
    client = ("Starting factory _HTTP11ClientFactory", "Stopping factory _HTTP11Cl")
    return [line for line in log.lines[before:] if not line.startswith(client)]


class RefusedReloadTests(TestCase):
    async def test_any_unreadable_file_is_one_line(self) -> None:
        live = await start(self, config("old rules"))
        log = Captured(self)
        path = live.server.config_path
        assert path is not None
        bad: list[tuple[str, str | bytes | None, str]] = [
            ("deep", DEEP, "nested deeper than 64 levels (line 2, column "),
            ("a list", "- 1\n", "the top level must be a mapping, got a list"),
            ("latin-1", b"access_token: caf\xe9\n", "is not UTF-8 text"),
            ("syntax", "access_token: [\n", "not valid YAML (line"),
            ("secret", "access_token: 98765432109876543210\n", "access_token:"),
            ("missing", None, "cannot read: No such file or directory"),
        ]
        for name, text, expected in bad:
            if text is None:
                os.remove(path)
            else:
                with open(path, "wb") as f:
                    f.write(text.encode() if isinstance(text, str) else text)
            before = len(log.lines)
            response, payload = await live.json("POST", "/_mock/reload", token=ADMIN)
            self.assertEqual(response.code, 400, (name, payload))
            self.assertEqual(payload["error"]["code"], "invalid_config", name)
            self.assertIn(expected, payload["error"]["message"], name)
            self.assertNotIn("98765432", payload["error"]["message"], name)
            lines = await settled(log, before)
            self.assertEqual(len(lines), 1, (name, lines[:3]))
            self.assertTrue(
                lines[0].startswith("mockai: config not reloaded, old config kept: "),
                lines[0],
            )
            self.assertEqual(await text_of(live), "old rules", name)
            if hasattr(signal, "SIGHUP"):
                before = len(log.lines)
                os.kill(os.getpid(), signal.SIGHUP)
                lines = await settled(log, before)
                self.assertEqual(len(lines), 1, (name, lines[:3]))
                self.assertIn(expected, lines[0], name)
                self.assertNotIn("98765432", lines[0], name)
                self.assertEqual(await text_of(live), "old rules", name)

    async def test_a_loader_bug_is_still_one_line(self) -> None:
        live = await start(self, config("old rules"))
        log = Captured(self)

        def broken() -> Any:
            raise RuntimeError("loader bug\nsecond line")

        live.server.loader = broken
        before = len(log.lines)
        response, payload = await live.json("POST", "/_mock/reload", token=ADMIN)
        self.assertEqual(response.code, 400, payload)
        self.assertIn("RuntimeError: loader bug", payload["error"]["message"])
        lines = await settled(log, before)
        self.assertEqual(len(lines), 1, lines)
        self.assertNotIn("\n", lines[0])
        self.assertEqual(await text_of(live), "old rules")


class AddressReloadTests(TestCase):
    async def test_address_change_needs_a_restart(self) -> None:
        first = {
            "access_token": TOKEN,
            "admin_token": ADMIN,
            "http": {"host": "127.0.0.1", "port": 0},
            "replies": ["old reply"],
        }
        path = write_config(self, first)
        service: Any = makeService({"config": path}, reactor, {})
        service.startService()
        self.addCleanup(service.stopService)
        port = await service.listener.listening
        pool = HTTPConnectionPool(reactor, persistent=False)
        live = Live(service.server, service.listener, port.getHost().port, pool)
        self.addCleanup(live.server.site.quiet)
        self.addCleanup(pool.closeCachedConnections)
        log = Captured(self)

        moved = {
            **first,
            "http": {
                "host": "0.0.0.0",
                "port": live.port + 1,
                "backlog": 7,
                "max_body_bytes": 4096,
            },
            "replies": ["new reply"],
        }
        rewrite(live, moved)
        before = len(log.lines)
        response, payload = await live.json("POST", "/_mock/reload", token=ADMIN)
        self.assertEqual(response.code, 200, payload)
        warnings = [line for line in log.lines[before:] if "restart" in line]
        self.assertEqual(
            warnings,
            [
                "mockai: a new listening address (http.host, http.port,"
                " http.listen, http.backlog) needs a restart; still listening on"
                " tcp:port=0:interface=127.0.0.1:backlog=1024"
            ],
        )
        # The rest is applied; the config shows where the server really listens.
        self.assertEqual(await text_of(live), "new reply")
        _, shown = await live.json("GET", "/_mock/config", token=ADMIN)
        http = shown["config"]["http"]
        self.assertEqual(
            (http["host"], http["port"], http["listen"], http["backlog"]),
            ("127.0.0.1", 0, None, 1024),
        )
        self.assertEqual(http["max_body_bytes"], 4096)
        self.assertEqual(
            live.server.config.http.endpoint,
            "tcp:port=0:interface=127.0.0.1:backlog=1024",
        )

        # A reload that leaves the address alone says nothing about it.
        rewrite(live, {**first, "replies": ["third reply"]})
        before = len(log.lines)
        response, payload = await live.json("POST", "/_mock/reload", token=ADMIN)
        self.assertEqual(response.code, 200, payload)
        self.assertFalse([line for line in log.lines[before:] if "restart" in line])
        self.assertEqual(await text_of(live), "third reply")
