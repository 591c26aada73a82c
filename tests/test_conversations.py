"""Conversations: CRUD and items with the API's pagination, responses that
read and grow a conversation, ``responses/compact`` and
``responses/input_tokens``; shared across two servers on one Redis."""

from __future__ import annotations

from typing import Any

import openai

import treq
from twisted.trial.unittest import TestCase

from tests.redisserver import RedisServer
from tests.support import Live, start
from tests.test_responses import validate

KNOCK = {
    "name": "knock",
    "match": {"content": {"contains": "knock"}},
    "answer": "who's there",
}


def user(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": text}


async def new_conversation(live: Live, **body: Any) -> dict[str, Any]:
    response, payload = await live.json("POST", "/v1/conversations", body)
    assert response.code == 200, payload
    validate(payload, "ConversationResource")
    return dict(payload)


async def items(live: Live, conversation_id: str, query: str = "") -> Any:
    path = f"/v1/conversations/{conversation_id}/items{query}"
    response, payload = await live.json("GET", path)
    assert response.code == 200, payload
    validate(payload, "ConversationItemList")
    return payload


async def error(live: Live, method: str, path: str, body: Any, status: int) -> Any:
    response, payload = await live.json(method, path, body)
    assert response.code == status, (response.code, payload)
    validate(payload, "ErrorResponse")
    return payload["error"]


class ConversationCrudTests(TestCase):
    async def test_sdk_create_retrieve_update_delete(self) -> None:
        live = await start(self)
        client = live.sdk()
        made = await live.in_thread(
            lambda: client.conversations.create(
                items=[user("hello"), user("again")], metadata={"topic": "demo"}
            )
        )
        self.assertTrue(made.id.startswith("conv_"))
        self.assertEqual(made.metadata, {"topic": "demo"})
        got = await live.in_thread(lambda: client.conversations.retrieve(made.id))
        self.assertEqual((got.id, got.created_at), (made.id, made.created_at))
        updated = await live.in_thread(
            lambda: client.conversations.update(made.id, metadata={"topic": "new"})
        )
        self.assertEqual(updated.metadata, {"topic": "new"})
        _, raw = await live.json("GET", f"/v1/conversations/{made.id}")
        validate(raw, "ConversationResource")
        self.assertEqual(raw["metadata"], {"topic": "new"})
        deleted = await live.in_thread(lambda: client.conversations.delete(made.id))
        self.assertEqual((deleted.id, deleted.deleted), (made.id, True))
        with self.assertRaises(openai.NotFoundError):
            await live.in_thread(lambda: client.conversations.retrieve(made.id))
        await error(live, "DELETE", f"/v1/conversations/{made.id}", None, 404)

    async def test_items_paginate_with_the_sdk(self) -> None:
        live = await start(self)
        client = live.sdk()
        made = await new_conversation(
            live, items=[user(f"message {i}") for i in range(5)]
        )
        listed = await live.in_thread(
            lambda: [
                i.id
                for i in client.conversations.items.list(
                    made["id"], limit=2, order="asc"
                )
            ]
        )
        first = await items(live, made["id"], "?limit=2&order=asc")
        self.assertEqual(len(first["data"]), 2)
        self.assertTrue(first["has_more"])
        self.assertEqual(first["first_id"], listed[0])
        self.assertEqual(first["last_id"], listed[1])
        everything = await items(live, made["id"], "?limit=100&order=asc")
        self.assertEqual([i["id"] for i in everything["data"]], listed)
        self.assertEqual(len(listed), 5)
        texts = [i["content"][0]["text"] for i in everything["data"]]
        self.assertEqual(texts, [f"message {i}" for i in range(5)])
        newest = await items(live, made["id"])
        self.assertEqual([i["id"] for i in newest["data"]], listed[::-1])
        self.assertFalse(newest["has_more"])
        after = await items(live, made["id"], f"?order=asc&after={listed[2]}")
        self.assertEqual([i["id"] for i in after["data"]], listed[3:])

    async def test_add_retrieve_and_delete_items(self) -> None:
        live = await start(self)
        client = live.sdk()
        made = await new_conversation(live)
        added = await live.in_thread(
            lambda: client.conversations.items.create(
                made["id"], items=[user("one"), user("two")]
            )
        )
        ids = [i.id for i in added.data]
        self.assertEqual(len(ids), 2)
        _, raw = await live.json(
            "POST", f"/v1/conversations/{made['id']}/items", {"items": [user("x")]}
        )
        validate(raw, "ConversationItemList")
        one = await live.in_thread(
            lambda: client.conversations.items.retrieve(
                ids[0], conversation_id=made["id"]
            )
        )
        self.assertEqual(one.id, ids[0])
        path = f"/v1/conversations/{made['id']}/items/{ids[0]}"
        _, item = await live.json("GET", path)
        validate(item, "ConversationItem")
        after = await live.in_thread(
            lambda: client.conversations.items.delete(
                ids[0], conversation_id=made["id"]
            )
        )
        self.assertEqual(after.id, made["id"])
        left = await items(live, made["id"], "?order=asc")
        self.assertEqual(len(left["data"]), 2)
        self.assertNotIn(ids[0], [i["id"] for i in left["data"]])
        await error(live, "GET", path, None, 404)
        await error(live, "DELETE", path, None, 404)

    async def test_bad_input_names_its_param(self) -> None:
        live = await start(self, {"conversations": {"max_items": 3}})
        made = await new_conversation(live)
        cid = made["id"]
        cases = [
            ("POST", "/v1/conversations", {"items": [{"role": "nobody"}]}, 400),
            ("POST", "/v1/conversations", {"items": "hi"}, 400),
            ("POST", "/v1/conversations", {"metadata": {"k": 1}}, 400),
            ("POST", "/v1/conversations", {"items": [user("a")] * 4}, 400),
            ("POST", f"/v1/conversations/{cid}", {}, 400),
            ("POST", f"/v1/conversations/{cid}/items", {}, 400),
            (
                "POST",
                f"/v1/conversations/{cid}/items",
                {"items": [user("a")] * 21},
                400,
            ),
            ("GET", f"/v1/conversations/{cid}/items?limit=0", None, 400),
            ("GET", f"/v1/conversations/{cid}/items?order=up", None, 400),
            ("GET", f"/v1/conversations/{cid}/items?include=nothing", None, 400),
            ("GET", "/v1/conversations/conv_nope", None, 404),
            ("GET", "/v1/conversations/conv_nope/items", None, 404),
        ]
        params = []
        for method, path, body, status in cases:
            found = await error(live, method, path, body, status)
            params.append(found["param"])
        self.assertEqual(
            params[:8],
            [
                "items[0].role",
                "items",
                "metadata.k",
                "items",
                "metadata",
                "items",
                "items",
                "limit",
            ],
        )
        self.assertEqual(params[9], "include[0]")


class ResponsesInConversationTests(TestCase):
    async def test_a_response_reads_and_grows_its_conversation(self) -> None:
        live = await start(self, {"rules": [KNOCK]})
        client = live.sdk()
        made = await new_conversation(live, items=[user("knock knock")])
        # No input: the conversation's last message is what the rule sees.
        response, first = await live.json(
            "POST",
            "/v1/responses",
            {"model": "gpt-4o", "conversation": made["id"]},
        )
        self.assertEqual(response.code, 200, first)
        validate(first, "Response")
        self.assertEqual(first["conversation"], {"id": made["id"]})
        self.assertEqual(first["output"][0]["content"][0]["text"], "who's there")
        second = await live.in_thread(
            lambda: client.responses.create(
                model="gpt-4o",
                conversation={"id": made["id"]},
                input="Ada",
            )
        )
        listed = await items(live, made["id"], "?order=asc")
        kinds = [(i["type"], i["role"]) for i in listed["data"]]
        self.assertEqual(
            kinds,
            [
                ("message", "user"),
                ("message", "assistant"),
                ("message", "user"),
                ("message", "assistant"),
            ],
        )
        self.assertEqual(listed["data"][1]["id"], first["output"][0]["id"])
        self.assertEqual(listed["data"][3]["id"], second.output[0].id)
        # The whole conversation was the context: the same items sent
        # statelessly count the same input tokens.
        stateless = [
            user("knock knock"),
            {"role": "assistant", "content": "who's there"},
            user("Ada"),
        ]
        _, alone = await live.json(
            "POST", "/v1/responses", {"model": "gpt-4o", "input": stateless}
        )
        assert second.usage is not None
        self.assertEqual(second.usage.input_tokens, alone["usage"]["input_tokens"])

    async def test_a_tool_call_and_its_output_through_a_conversation(self) -> None:
        live = await start(self)
        made = await new_conversation(live, items=[user("weather in Paris?")])
        tool = {
            "type": "function",
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
        }
        _, called = await live.json(
            "POST",
            "/v1/responses",
            {
                "model": "gpt-4o",
                "conversation": made["id"],
                "tools": [tool],
                "tool_choice": "required",
            },
        )
        validate(called, "Response")
        call = called["output"][0]
        self.assertEqual(call["type"], "function_call")
        output = {
            "type": "function_call_output",
            "call_id": call["call_id"],
            "output": "sunny",
        }
        response, answered = await live.json(
            "POST",
            "/v1/responses",
            {"model": "gpt-4o", "conversation": made["id"], "input": [output]},
        )
        # The call's id is known from the conversation: no 400.
        self.assertEqual(response.code, 200, answered)
        listed = await items(live, made["id"], "?order=asc")
        self.assertEqual(
            [i["type"] for i in listed["data"]],
            ["message", "function_call", "function_call_output", "message"],
        )
        for item in listed["data"]:
            validate(item, "ConversationItem")

    async def test_errors(self) -> None:
        live = await start(self)
        made = await new_conversation(live)
        both = {
            "model": "gpt-4o",
            "input": "hi",
            "conversation": made["id"],
            "previous_response_id": "resp_1",
        }
        found = await error(live, "POST", "/v1/responses", both, 400)
        self.assertEqual(found["code"], "mutually_exclusive_parameters")
        unknown = {"model": "gpt-4o", "input": "hi", "conversation": "conv_nope"}
        found = await error(live, "POST", "/v1/responses", unknown, 404)
        self.assertEqual(found["param"], "conversation")
        empty = {"model": "gpt-4o", "conversation": made["id"]}
        found = await error(live, "POST", "/v1/responses", empty, 400)
        self.assertEqual(found["param"], "input")
        client = live.sdk()
        with self.assertRaises(openai.BadRequestError):
            await live.in_thread(
                lambda: client.responses.create(
                    model="gpt-4o",
                    input="hi",
                    conversation=made["id"],
                    previous_response_id="resp_1",
                )
            )


class CountingTests(TestCase):
    async def test_input_tokens_equal_the_usage_of_the_same_request(self) -> None:
        live = await start(self)
        client = live.sdk()
        sent: dict[str, Any] = {
            "model": "gpt-4o",
            "instructions": "Be terse.",
            "input": [user("What is the capital of France?")],
        }
        counted = await live.in_thread(
            lambda: client.responses.input_tokens.count(**sent)
        )
        _, raw = await live.json("POST", "/v1/responses/input_tokens", sent)
        validate(raw, "TokenCountsResource")
        _, answered = await live.json("POST", "/v1/responses", sent)
        self.assertEqual(counted.input_tokens, answered["usage"]["input_tokens"])
        self.assertEqual(raw["input_tokens"], counted.input_tokens)
        # Through a conversation and a chain, the context is counted too.
        made = await new_conversation(live, items=sent["input"])
        in_conversation = await live.in_thread(
            lambda: client.responses.input_tokens.count(
                model="gpt-4o", conversation=made["id"], input="and Spain?"
            )
        )
        chained = await live.in_thread(
            lambda: client.responses.input_tokens.count(
                model="gpt-4o", previous_response_id=answered["id"], input="and Spain?"
            )
        )
        alone = await live.in_thread(
            lambda: client.responses.input_tokens.count(
                model="gpt-4o", input="and Spain?"
            )
        )
        self.assertGreater(in_conversation.input_tokens, alone.input_tokens)
        self.assertGreater(chained.input_tokens, in_conversation.input_tokens)
        await error(
            live,
            "POST",
            "/v1/responses/input_tokens",
            {"previous_response_id": "resp_nope", "input": "x"},
            404,
        )

    async def test_compact_keeps_user_messages_and_one_compaction_item(self) -> None:
        live = await start(self)
        client = live.sdk()
        window = [
            user("first question"),
            {"role": "assistant", "content": "first answer"},
            user("second question"),
        ]
        compacted = await live.in_thread(
            lambda: client.responses.compact(model="gpt-4o", input=window)
        )
        _, raw = await live.json(
            "POST", "/v1/responses/compact", {"model": "gpt-4o", "input": window}
        )
        validate(raw, "CompactResource")
        self.assertEqual(raw["object"], "response.compaction")
        kinds = [o.type for o in compacted.output]
        self.assertEqual(kinds, ["message", "message", "compaction"])
        texts = [o.content[0].text for o in compacted.output[:2]]
        self.assertEqual(texts, ["first question", "second question"])
        self.assertGreater(compacted.usage.input_tokens, 0)
        # The compacted window is valid input for the next response.
        following = [o.model_dump(exclude_none=True) for o in compacted.output]
        answered = await live.in_thread(
            lambda: client.responses.create(
                model="gpt-4o", input=[*following, user("third question")]
            )
        )
        self.assertEqual(answered.status, "completed")
        await error(live, "POST", "/v1/responses/compact", {"input": window}, 400)


class SharedConversationTests(TestCase):
    async def test_two_servers_share_one_conversation(self) -> None:
        redis = await RedisServer.start(self)
        config = {
            "rules": [KNOCK],
            "state": {"backend": "redis", "url": redis.url},
        }
        a = await start(self, config)
        b = await start(self, config)
        for live in (a, b):
            assert live.server.shared is not None
            await live.server.shared.store.wait_connected()
        made = await new_conversation(a, items=[user("knock knock")])
        # Made on a, answered on b: b reads it from the store.
        response, answered = await b.json(
            "POST", "/v1/responses", {"model": "gpt-4o", "conversation": made["id"]}
        )
        self.assertEqual(response.code, 200, answered)
        self.assertEqual(answered["output"][0]["content"][0]["text"], "who's there")
        # b appended what it answered (not waited on by its answer); a lists it.
        for _ in range(50):
            listed = await items(a, made["id"], "?order=asc")
            if len(listed["data"]) == 2:
                break
        self.assertEqual(len(listed["data"]), 2)
        self.assertEqual(listed["data"][1]["id"], answered["output"][0]["id"])
        await b.json(
            "POST", f"/v1/conversations/{made['id']}", {"metadata": {"k": "v"}}
        )
        _, seen = await a.json("GET", f"/v1/conversations/{made['id']}")
        self.assertEqual(seen["metadata"], {"k": "v"})
        deleted = await a.request("DELETE", f"/v1/conversations/{made['id']}")
        self.assertEqual(deleted.code, 200)
        await treq.content(deleted)
        await error(b, "GET", f"/v1/conversations/{made['id']}", None, 404)


class PageTests(TestCase):
    def test_cursor_pages(self) -> None:
        from mockai_tw.engine.records import Records, page

        entries = [{"id": str(i)} for i in range(5)]
        first = page(entries, lambda e: e["id"], 2, "asc", None)
        self.assertEqual(
            ([e["id"] for e in first.data], first.has_more), (["0", "1"], True)
        )
        last = page(entries, lambda e: e["id"], 2, "desc", "1")
        self.assertEqual(([e["id"] for e in last.data], last.has_more), (["0"], False))
        self.assertEqual(page(entries, lambda e: e["id"], 2, "asc", "x").data, [])
        kept = Records(2)
        for e in entries[:3]:
            kept.put(e["id"], e)
        kept.get("1")
        kept.put("9", {"id": "9"})
        self.assertEqual([e["id"] for e in kept], ["1", "9"])
