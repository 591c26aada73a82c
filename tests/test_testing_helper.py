"""``mockai_tw.testing`` under trial: the mixin, ``start_for`` and ``stop``."""

from __future__ import annotations

import json
import os
import socket
from typing import Any

import openai
import yaml

from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from mockai_tw.config import ORIGINAL_REPLIES
from mockai_tw.testing import (
    ADMIN_TOKEN,
    API_KEY,
    MockAI,
    MockAITestCase,
    reactor_thread,
    start,
    start_for,
)


async def ask(mock: MockAI, text: str = "hello") -> Any:
    client = mock.client()
    return await deferToThread(
        lambda: client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": text}]
        )
    )


class MixinTests(MockAITestCase, TestCase):
    async def test_defaults_rules_and_journal(self) -> None:
        mock = await self.start_mockai()
        self.assertEqual((mock.api_key, mock.admin_token), (API_KEY, ADMIN_TOKEN))
        self.assertEqual(mock.base_url, f"http://127.0.0.1:{mock.port}/v1")
        self.assertIn((await ask(mock)).choices[0].message.content, ORIGINAL_REPLIES)
        rule = mock.add_rule(match={"content": "hello"}, answer="Hi {{model}}.")
        self.assertEqual(rule, "added-1")
        self.assertEqual((await ask(mock)).choices[0].message.content, "Hi gpt-4o.")
        self.assertEqual([r["id"] for r in mock.rules()], [rule])
        mock.replace_rule(rule, {"answer": "Replaced."})
        self.assertEqual((await ask(mock)).choices[0].message.content, "Replaced.")
        sent = mock.requests(rule=rule)
        self.assertEqual(
            [r["reply"]["text"] for r in sent], ["Hi gpt-4o.", "Replaced."]
        )
        self.assertEqual(len(mock.requests()), 3)
        mock.clear_requests()
        self.assertEqual(mock.requests(), [])
        mock.delete_rule(rule)
        self.assertEqual(mock.rules(), [])

    async def test_two_servers_side_by_side(self) -> None:
        first = await self.start_mockai({"rules": [{"answer": "first"}]})
        second = await self.start_mockai({"rules": [{"answer": "second"}]})
        self.assertNotEqual(first.port, second.port)
        self.assertEqual((await ask(first)).choices[0].message.content, "first")
        self.assertEqual((await ask(second)).choices[0].message.content, "second")

    async def test_bad_rule_from_add_rule(self) -> None:
        mock = await self.start_mockai()
        with self.assertRaises(Exception) as caught:
            mock.add_rule(answer={"nope": 1})
        self.assertIn("rule.answer.nope", str(caught.exception))


class StartTests(TestCase):
    async def test_from_a_file_with_fixtures_and_reload(self) -> None:
        base = self.mktemp()
        os.makedirs(base)
        with open(os.path.join(base, "reply.txt"), "w", encoding="utf-8") as f:
            f.write("From reply.txt")
        path = os.path.join(base, "mockai.yaml")
        with open(path, "w") as f:
            yaml.safe_dump(
                {
                    "access_token": "sk-file-123",
                    "http": {"port": 1},  # ignored: the helper picks a free port
                    "rules": [{"answer": {"file": "reply.txt"}}],
                },
                f,
            )
        mock = await start_for(self, config_file=path)
        self.assertEqual(mock.api_key, "sk-file-123")
        self.assertIsNone(mock.admin_token)
        self.assertEqual((await ask(mock)).choices[0].message.content, "From reply.txt")
        with open(os.path.join(base, "reply.txt"), "w", encoding="utf-8") as f:
            f.write("Changed")
        mock.reload()
        self.assertEqual((await ask(mock)).choices[0].message.content, "Changed")

    async def test_dict_fixtures_relative_to_base_dir(self) -> None:
        base = self.mktemp()
        os.makedirs(base)
        with open(os.path.join(base, "data.json"), "w") as f:
            json.dump({"ok": True}, f)
        mock = await start_for(
            self, {"rules": [{"answer": {"file": "data.json"}}]}, base_dir=base
        )
        reply = await ask(mock)
        self.assertEqual(json.loads(reply.choices[0].message.content), {"ok": True})

    async def test_bad_config_fails_to_start(self) -> None:
        from mockai_tw.config import ConfigError

        with self.assertRaises(ConfigError) as caught:
            await start({"rules": [{"match": {"content": {"regex": "("}}}]})
        self.assertIn("rules[0]", str(caught.exception))

    async def test_stop_cuts_off_a_client_that_stays(self) -> None:
        from mockai_tw import testing

        mock = await start()
        self.patch(testing, "QUIET_TIMEOUT_S", 0.2)
        # A raw keep-alive connection the test forgets to close.
        sock = socket.create_connection(("127.0.0.1", mock.port))
        self.addCleanup(sock.close)
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        await deferToThread(sock.recv, 4096)
        self.assertEqual(len(mock.server.site.channels), 1)
        await mock.stop()
        self.assertEqual(len(mock.server.site.channels), 0)

    async def test_the_sdk_client_helper(self) -> None:
        mock = await start_for(self)
        client = mock.client()
        self.assertIsInstance(client, openai.OpenAI)
        self.assertEqual(str(client.base_url), mock.base_url + "/")

    def test_threaded_mode_refuses_a_running_reactor(self) -> None:
        if not reactor.running:
            return
        with self.assertRaises(RuntimeError):
            reactor_thread()
