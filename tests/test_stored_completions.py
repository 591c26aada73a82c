"""Stored chat completions: ``store: true`` keeps one (streamed too); the
SDK lists, filters, retrieves, updates and deletes them, and pages their
messages; the store is bounded and shared with ``state.backend: redis``."""

from __future__ import annotations

from typing import Any

import openai

from twisted.trial.unittest import TestCase

from tests.redisserver import RedisServer
from tests.support import Live, start
from tests.test_responses import validate

PATH = "/v1/chat/completions"


def asked(content: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


async def complete(live: Live, body: dict[str, Any]) -> dict[str, Any]:
    response, payload = await live.json("POST", PATH, body)
    assert response.code == 200, payload
    return dict(payload)


async def listed(live: Live, query: str = "") -> Any:
    response, payload = await live.json("GET", PATH + query)
    assert response.code == 200, payload
    validate(payload, "ChatCompletionList")
    return payload


def message_list_schema_form(payload: Any) -> Any:
    """The description's message list says ``role: assistant`` only, while the
    API lists the request's messages with their own roles: checked as if
    each were the assistant's, every other key as the schema says."""
    return {
        **payload,
        "data": [{**m, "role": "assistant"} for m in payload["data"]],
    }


class StoredTests(TestCase):
    async def test_sdk_list_retrieve_update_delete(self) -> None:
        live = await start(self)
        client = live.sdk()
        kept = [
            await complete(live, asked("one", store=True, metadata={"run": "a"})),
            await complete(live, asked("two", store=True, metadata={"run": "b"})),
            await complete(
                live,
                {**asked("three", store=True), "model": "gpt-4o"},
            ),
        ]
        await complete(live, asked("not kept"))
        everything = await listed(live)
        self.assertEqual([c["id"] for c in everything["data"]], [c["id"] for c in kept])
        self.assertEqual(everything["data"][0]["metadata"], {"run": "a"})
        sdk_ids = await live.in_thread(
            lambda: [c.id for c in client.chat.completions.list(limit=1)]
        )
        self.assertEqual(sdk_ids, [c["id"] for c in kept])
        newest = await listed(live, "?order=desc&limit=2")
        self.assertEqual(
            [c["id"] for c in newest["data"]], [kept[2]["id"], kept[1]["id"]]
        )
        self.assertTrue(newest["has_more"])
        by_model = await listed(live, "?model=gpt-4o")
        self.assertEqual([c["id"] for c in by_model["data"]], [kept[2]["id"]])
        by_metadata = await live.in_thread(
            lambda: [c.id for c in client.chat.completions.list(metadata={"run": "b"})]
        )
        self.assertEqual(by_metadata, [kept[1]["id"]])

        one = await live.in_thread(
            lambda: client.chat.completions.retrieve(kept[0]["id"])
        )
        self.assertEqual(
            one.choices[0].message.content, kept[0]["choices"][0]["message"]["content"]
        )
        _, raw = await live.json("GET", f"{PATH}/{kept[0]['id']}")
        validate(raw, "CreateChatCompletionResponse")
        updated = await live.in_thread(
            lambda: client.chat.completions.update(kept[0]["id"], metadata={"run": "z"})
        )
        self.assertEqual(updated.metadata, {"run": "z"})
        self.assertEqual(
            (await listed(live, "?metadata[run]=z"))["data"][0]["id"], kept[0]["id"]
        )
        deleted = await live.in_thread(
            lambda: client.chat.completions.delete(kept[0]["id"])
        )
        self.assertTrue(deleted.deleted)
        _, raw_deleted = await live.json("DELETE", f"{PATH}/{kept[1]['id']}")
        validate(raw_deleted, "ChatCompletionDeleted")
        with self.assertRaises(openai.NotFoundError):
            await live.in_thread(
                lambda: client.chat.completions.retrieve(kept[0]["id"])
            )
        left = await listed(live)
        self.assertEqual([c["id"] for c in left["data"]], [kept[2]["id"]])

    async def test_messages_paginate(self) -> None:
        live = await start(self)
        client = live.sdk()
        body = {
            "model": "gpt-4o-mini",
            "store": True,
            "messages": [
                {"role": "system", "content": "Be terse."},
                {"role": "user", "content": "one"},
                {"role": "assistant", "content": "two"},
                {"role": "user", "content": [{"type": "text", "text": "three"}]},
            ],
        }
        made = await complete(live, body)
        contents = await live.in_thread(
            lambda: [
                m.content
                for m in client.chat.completions.messages.list(made["id"], limit=3)
            ]
        )
        self.assertEqual(contents, ["Be terse.", "one", "two", "three"])
        response, page = await live.json("GET", f"{PATH}/{made['id']}/messages?limit=2")
        self.assertEqual(response.code, 200)
        validate(message_list_schema_form(page), "ChatCompletionMessageList")
        self.assertTrue(page["has_more"])
        self.assertEqual([m["role"] for m in page["data"]], ["system", "user"])
        _, rest = await live.json(
            "GET", f"{PATH}/{made['id']}/messages?after={page['last_id']}"
        )
        self.assertEqual([m["content"] for m in rest["data"]], ["two", "three"])
        self.assertEqual(
            rest["data"][1]["content_parts"], [{"type": "text", "text": "three"}]
        )

    async def test_a_streamed_completion_is_stored_too(self) -> None:
        live = await start(self)
        client = live.sdk()

        def consume() -> list[Any]:
            return list(
                client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[{"role": "user", "content": "hi"}],
                    stream=True,
                    store=True,
                )
            )

        chunks = await live.in_thread(consume)
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        stored = await live.in_thread(
            lambda: client.chat.completions.retrieve(chunks[0].id)
        )
        self.assertEqual(stored.choices[0].message.content, text)
        self.assertEqual(stored.choices[0].finish_reason, "stop")

    async def test_bounded_and_errors(self) -> None:
        live = await start(self, {"chat_completions": {"store_size": 2}})
        ids = [
            (await complete(live, asked(str(i), store=True)))["id"] for i in range(3)
        ]
        everything = await listed(live)
        # The least recently used went first.
        self.assertEqual([c["id"] for c in everything["data"]], ids[1:])
        cases = [
            ("GET", f"{PATH}/{ids[0]}", None, 404),
            ("GET", f"{PATH}/{ids[0]}/messages", None, 404),
            ("DELETE", f"{PATH}/{ids[0]}", None, 404),
            ("POST", f"{PATH}/{ids[1]}", {}, 400),
            ("POST", f"{PATH}/{ids[1]}", {"metadata": {"k": 3}}, 400),
            ("GET", f"{PATH}?limit=101", None, 400),
            ("GET", f"{PATH}?order=sideways", None, 400),
        ]
        params = []
        for method, path, body, status in cases:
            response, payload = await live.json(method, path, body)
            self.assertEqual(response.code, status, (path, payload))
            validate(payload, "ErrorResponse")
            params.append(payload["error"]["param"])
        self.assertEqual(params[3:], ["metadata", "metadata.k", "limit", "order"])


class SharedStoredTests(TestCase):
    async def test_stored_on_one_is_listed_and_deleted_on_the_other(self) -> None:
        redis = await RedisServer.start(self)
        config = {"state": {"backend": "redis", "url": redis.url}}
        a = await start(self, config)
        b = await start(self, config)
        for live in (a, b):
            assert live.server.shared is not None
            await live.server.shared.store.wait_connected()
        made = await complete(a, asked("shared", store=True))
        # The write after the answer is not waited on: listing waits for it.
        for _ in range(50):
            seen = await listed(b)
            if seen["data"]:
                break
        self.assertEqual([c["id"] for c in seen["data"]], [made["id"]])
        response, payload = await b.json("DELETE", f"{PATH}/{made['id']}")
        self.assertEqual(response.code, 200, payload)
        response, _ = await a.json("GET", f"{PATH}/{made['id']}")
        self.assertEqual(response.code, 404)
