"""The ``/_mock/`` control API: admin token only; rules, config, requests."""

from __future__ import annotations

from typing import Any

import openai

from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from mockai_tw.config import ORIGINAL_REPLIES
from tests.support import TOKEN, Live, start

ADMIN = "adm-0123456789"
FILE_RULES = [
    {"name": "file-hello", "match": {"content": "hello"}, "answer": "From the file."}
]


async def ask(live: Live, text: str = "hello", **kw: Any) -> Any:
    client = live.sdk()
    return await deferToThread(
        lambda: client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": text}], **kw
        )
    )


async def control(
    live: Live, method: str, path: str, body: Any = None, token: str | None = ADMIN
) -> tuple[int, Any]:
    response, payload = await live.json(method, "/_mock" + path, body, token=token)
    return response.code, payload


class AuthTests(TestCase):
    async def test_off_without_an_admin_token(self) -> None:
        live = await start(self)
        for token in (None, TOKEN, "anything"):
            code, payload = await control(live, "GET", "/rules", token=token)
            self.assertEqual(code, 404)
            self.assertEqual(
                payload["error"]["message"], "Invalid URL (GET /_mock/rules)"
            )

    async def test_admin_token_only(self) -> None:
        live = await start(self, {"admin_token": ADMIN})
        for token in (None, TOKEN, ADMIN + "x", "x"):
            for method, path in (
                ("GET", "/rules"),
                ("POST", "/rules"),
                ("GET", "/config"),
                ("GET", "/requests"),
                ("DELETE", "/requests"),
                ("POST", "/reload"),
                ("GET", ""),
            ):
                code, payload = await control(live, method, path, {}, token=token)
                self.assertEqual(code, 401, (token, method, path))
                self.assertEqual(payload["error"]["code"], "invalid_admin_token")
        code, payload = await control(live, "GET", "")
        self.assertEqual(code, 200)
        self.assertIn("POST /_mock/rules", payload["endpoints"])
        # The admin token is not an API key.
        response, _ = await live.json(
            "POST",
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]},
            token=ADMIN,
        )
        self.assertEqual(response.code, 401)


class RuleApiTests(TestCase):
    async def test_add_replace_delete_reset(self) -> None:
        live = await start(self, {"admin_token": ADMIN, "rules": FILE_RULES})
        code, listing = await control(live, "GET", "/rules")
        self.assertEqual(code, 200)
        self.assertEqual([r["id"] for r in listing["rules"]], ["file-hello"])
        self.assertEqual(listing["rules"][0]["origin"], "file")

        code, added = await control(
            live,
            "POST",
            "/rules",
            {"match": {"content": "hello"}, "answer": "First!", "position": "first"},
        )
        self.assertEqual(code, 201, added)
        self.assertEqual((added["id"], added["position"]), ("added-1", 0))
        self.assertEqual((await ask(live)).choices[0].message.content, "First!")

        code, _ = await control(
            live,
            "PUT",
            "/rules/added-1",
            {"match": {"content": "hello"}, "answer": "Replaced."},
        )
        self.assertEqual(code, 200)
        self.assertEqual((await ask(live)).choices[0].message.content, "Replaced.")

        code, last = await control(
            live,
            "POST",
            "/rules",
            {"name": "catch-all", "answer": "Last.", "position": "last"},
        )
        self.assertEqual((code, last["position"]), (201, 2))
        self.assertEqual((await ask(live, "other")).choices[0].message.content, "Last.")
        code, one = await control(live, "GET", "/rules/catch-all")
        self.assertEqual((code, one["rule"]["answer"]), (200, "Last."))

        code, _ = await control(live, "DELETE", "/rules/added-1")
        self.assertEqual(code, 200)
        self.assertEqual((await ask(live)).choices[0].message.content, "From the file.")
        code, payload = await control(live, "DELETE", "/rules/added-1")
        self.assertEqual((code, payload["error"]["code"]), (404, "rule_not_found"))

        code, reset = await control(live, "DELETE", "/rules")
        self.assertEqual([r["id"] for r in reset["rules"]], ["file-hello"])
        self.assertIn(
            (await ask(live, "other")).choices[0].message.content, ORIGINAL_REPLIES
        )

    async def test_times_and_ttl(self) -> None:
        live = await start(self, {"admin_token": ADMIN})
        await control(live, "POST", "/rules", {"answer": "Twice.", "times": 2})
        texts = [(await ask(live)).choices[0].message.content for _ in range(3)]
        self.assertEqual(texts[:2], ["Twice.", "Twice."])
        self.assertIn(texts[2], ORIGINAL_REPLIES)
        _code, listing = await control(live, "GET", "/rules")
        self.assertEqual(listing["rules"], [])
        _code, added = await control(
            live, "POST", "/rules", {"answer": "Soon gone.", "ttl_s": 3600}
        )
        self.assertGreater(added["expires_at"], 0)
        self.assertEqual((await ask(live)).choices[0].message.content, "Soon gone.")

    async def test_bad_rules_are_400_with_the_key(self) -> None:
        live = await start(self, {"admin_token": ADMIN})
        cases: list[tuple[Any, str]] = [
            (
                {"match": {"content": {"regex": "("}}, "answer": "x"},
                "rule.match.content.regex",
            ),
            ({"answer": {"nope": 1}}, "rule.answer.nope"),
            ({"answer": "x", "position": "middle"}, "position"),
            ({"answer": {"file": "../../etc/passwd"}}, "rule.answer.file"),
        ]
        for body, param in cases:
            code, payload = await control(live, "POST", "/rules", body)
            self.assertEqual(code, 400, body)
            self.assertEqual(payload["error"]["param"], param)
        code, payload = await control(live, "POST", "/rules", [1, 2])
        self.assertEqual(code, 400)
        await control(live, "POST", "/rules", {"name": "n", "answer": "x"})
        code, payload = await control(
            live, "POST", "/rules", {"name": "n", "answer": "y"}
        )
        self.assertEqual((code, payload["error"]["code"]), (409, "rule_exists"))

    async def test_error_rule_through_the_sdk(self) -> None:
        live = await start(self, {"admin_token": ADMIN})
        await control(
            live,
            "POST",
            "/rules",
            {
                "match": {"model": "gpt-4o"},
                "answer": {"error": {"status": 500}},
                "times": 1,
            },
        )
        with self.assertRaises(openai.InternalServerError):
            await ask(live)
        self.assertIn((await ask(live)).choices[0].message.content, ORIGINAL_REPLIES)


class ConfigViewTests(TestCase):
    async def test_config_is_redacted(self) -> None:
        live = await start(
            self,
            {
                "admin_token": ADMIN,
                "access_tokens": ["sk-second-0123456789"],
                "rules": FILE_RULES,
            },
        )
        code, payload = await control(live, "GET", "/config")
        self.assertEqual(code, 200)
        config = payload["config"]
        text = str(payload)
        for secret in (ADMIN, TOKEN, "sk-second-0123456789"):
            self.assertNotIn(secret, text)
        self.assertEqual(
            config["access_token"], "sk-" + "*" * (len(TOKEN) - 7) + TOKEN[-4:]
        )
        self.assertEqual(config["rules"], FILE_RULES)
        self.assertEqual(config["stream"]["interval_ms"], 0)
        self.assertTrue(payload["config_path"].endswith(".yaml"))
