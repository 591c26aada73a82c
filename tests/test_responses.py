"""The Responses API: create (plain and streamed), tools, chaining, store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import jsonschema
import openai
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

import treq
from twisted.trial.unittest import TestCase

from mockai_tw.config import ConfigError
from mockai_tw.config_load import parse_config
from mockai_tw.engine import tokenizer
from mockai_tw.engine.chat import Engine
from mockai_tw.engine.responses import CallOutput, ResponseStore, plan_response
from mockai_tw.request.responses import parse_responses_request
from mockai_tw.wire.responses import response_stream
from tests import openapi
from tests.support import TOKEN, Live, start

RESPONSES = "/v1/responses"
LONG = (
    "The quick brown fox jumps over the lazy dog while the patient hound"
    " watches from the porch and the farmer counts his sheep one by one."
)
WEATHER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": WEATHER,
        "strict": True,
    }
]


# --- validation -----------------------------------------------------------


def _flatten(document: dict[str, Any]) -> dict[str, Any]:
    """Merge ``allOf`` object schemas into one closed object.

    ``tests.openapi`` closes every object schema, so a schema used as an
    ``allOf`` part (``Response`` is ModelResponseProperties +
    ResponseProperties + its own keys) refuses the keys of the other parts.
    Merging the parts keeps the check strict and makes it pass for valid
    bodies.
    """
    schemas = document["components"]["schemas"]

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = schemas[node["$ref"].rsplit("/", 1)[1]]
        return node

    def merged(node: dict[str, Any]) -> dict[str, Any] | None:
        properties: dict[str, Any] = {}
        required: set[str] = set()
        for part in node["allOf"]:
            part = resolve(part)
            if "allOf" in part:
                found = merged(part)
                if found is None:
                    return None
                part = found
            if "properties" not in part:
                return None
            properties.update(part["properties"])
            required.update(part.get("required", ()))
        out = {k: v for k, v in node.items() if k != "allOf"}
        out.update(
            type="object",
            properties=walk(properties),
            required=sorted(required),
            additionalProperties=False,
        )
        return out

    def walk(node: Any) -> Any:
        if isinstance(node, list):
            return [walk(v) for v in node]
        if not isinstance(node, dict):
            return node
        node = {k: walk(v) for k, v in node.items()}
        if "allOf" in node:
            node = merged(node) or node
        return node

    out: dict[str, Any] = walk(document)
    # The real service sends ``store`` although the schema does not list it.
    out["components"]["schemas"]["Response"]["properties"]["store"] = {
        "type": "boolean"
    }
    return out


@cache
def _validator(name: str) -> Draft202012Validator:
    document = _flatten(openapi._registry().contents(openapi.URI))
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(openapi.URI, resource)
    schema = {"$ref": f"{openapi.URI}#/components/schemas/{name}"}
    return Draft202012Validator(schema, registry=registry)


def validate(instance: Any, name: str) -> None:
    _validator(name).validate(instance)


# --- helpers --------------------------------------------------------------


async def create(live: Live, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    response, payload = await live.json("POST", RESPONSES, {"model": "gpt-4o", **body})
    assert response.code == status, payload
    validate(payload, "Response" if status == 200 else "ErrorResponse")
    return dict(payload)


def named_events(body: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    """Split a Responses SSE body into (event name, payload), checking framing."""
    assert body.endswith(b"\n\n"), body[-40:]
    for block in body[:-2].split(b"\n\n"):
        head, _, data = block.partition(b"\n")
        assert head.startswith(b"event: "), block[:60]
        assert data.startswith(b"data: ") and b"\n" not in data, block[:80]
        yield head[len(b"event: ") :].decode(), json.loads(data[len(b"data: ") :])


async def stream(live: Live, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await live.request(
        "POST", RESPONSES, {"model": "gpt-4o", **body, "stream": True}
    )
    assert response.code == 200
    content_type = response.headers.getRawHeaders(b"content-type")
    assert content_type == [b"text/event-stream; charset=utf-8"], content_type
    raw = await treq.content(response)
    assert b"[DONE]" not in raw
    out = []
    for i, (name, payload) in enumerate(named_events(raw)):
        assert name == payload["type"], (name, payload)
        assert payload["sequence_number"] == i, payload
        validate(payload, "ResponseStreamEvent")
        out.append(payload)
    return out


def message_text(response: dict[str, Any]) -> str:
    return "".join(
        part["text"]
        for item in response["output"]
        if item["type"] == "message"
        for part in item["content"]
    )


class CreateTests(TestCase):
    async def test_plain(self) -> None:
        live = await start(self, {"replies": ["Hello there, friend."]})
        body = await create(
            live,
            {
                "input": "Say hello",
                "instructions": "Be terse.",
                "metadata": {"suite": "responses"},
                "temperature": 0.5,
            },
        )
        self.assertTrue(body["id"].startswith("resp_"))
        self.assertEqual(body["object"], "response")
        self.assertEqual(body["status"], "completed")
        self.assertEqual(body["model"], "gpt-4o")
        self.assertNotIn("output_text", body)
        [item] = body["output"]
        self.assertTrue(item["id"].startswith("msg_"))
        self.assertEqual((item["type"], item["role"]), ("message", "assistant"))
        self.assertEqual(item["status"], "completed")
        self.assertEqual(
            item["content"],
            [
                {
                    "type": "output_text",
                    "text": "Hello there, friend.",
                    "annotations": [],
                    "logprobs": [],
                }
            ],
        )
        self.assertEqual(body["instructions"], "Be terse.")
        self.assertEqual(body["metadata"], {"suite": "responses"})
        self.assertEqual(body["temperature"], 0.5)
        self.assertEqual(body["tool_choice"], "auto")
        self.assertEqual(body["tools"], [])
        self.assertEqual(body["text"]["format"], {"type": "text"})
        self.assertIsNone(body["error"])
        self.assertIsNone(body["incomplete_details"])
        self.assertIsNone(body["previous_response_id"])
        self.assertTrue(body["store"])
        usage = body["usage"]
        self.assertEqual(
            usage["output_tokens"], tokenizer.count("Hello there, friend.", "gpt-4o")
        )
        self.assertEqual(
            usage["total_tokens"], usage["input_tokens"] + usage["output_tokens"]
        )
        self.assertEqual(usage["input_tokens_details"]["cached_tokens"], 0)
        self.assertEqual(usage["output_tokens_details"]["reasoning_tokens"], 0)

    async def test_input_tokens_count_instructions_and_items(self) -> None:
        live = await start(self)
        bare = await create(live, {"input": "Say hello"})
        told = await create(
            live, {"input": "Say hello", "instructions": "Answer in one word."}
        )
        self.assertGreater(told["usage"]["input_tokens"], bare["usage"]["input_tokens"])
        items = await create(
            live,
            {
                "input": [
                    {"role": "developer", "content": "Be terse."},
                    {
                        "role": "user",
                        "content": [
                            {"type": "input_text", "text": "Say hello"},
                            {
                                "type": "input_image",
                                "image_url": "https://example.com/a.png",
                                "detail": "auto",
                            },
                        ],
                    },
                    {"role": "assistant", "content": "Hello."},
                    {"type": "message", "role": "user", "content": "Again"},
                ]
            },
        )
        self.assertGreater(
            items["usage"]["input_tokens"],
            bare["usage"]["input_tokens"] + tokenizer.TOKENS_PER_IMAGE,
        )

    async def test_seed_gives_the_same_reply(self) -> None:
        replies = [f"reply number {i}" for i in range(20)]
        live = await start(self, {"replies": replies})
        texts = {
            message_text(await create(live, {"input": "hi", "seed": 7}))
            for _ in range(3)
        }
        self.assertEqual(len(texts), 1)

    async def test_sdk_create(self) -> None:
        live = await start(self, {"replies": ["Hello from the mock."]})
        client = live.sdk()
        response = await live.in_thread(
            lambda: client.responses.create(
                model="gpt-4o-mini", input="hi", instructions="Be brief."
            )
        )
        self.assertEqual(response.output_text, "Hello from the mock.")
        self.assertEqual(response.status, "completed")
        assert response.usage is not None
        self.assertGreater(response.usage.input_tokens, 0)


class StreamTests(TestCase):
    async def test_wire(self) -> None:
        live = await start(self, {"replies": ["Hello there"]})
        events = await stream(live, {"input": "hi", "metadata": {"k": "v"}})
        kinds = [e["type"] for e in events]
        pieces = len("Hello there")
        self.assertEqual(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                *["response.output_text.delta"] * pieces,
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed",
            ],
        )
        created, final = events[0]["response"], events[-1]["response"]
        self.assertEqual(created["status"], "in_progress")
        self.assertEqual(created["output"], [])
        self.assertEqual(final["id"], created["id"])
        self.assertEqual(events[1]["response"]["id"], created["id"])
        self.assertEqual(final["status"], "completed")
        self.assertEqual(final["metadata"], {"k": "v"})
        item_id = events[2]["item"]["id"]
        self.assertEqual(events[2]["item"]["status"], "in_progress")
        for event in events[3:-2]:
            self.assertEqual(event["item_id"], item_id)
            self.assertEqual(event["output_index"], 0)
        text = "".join(e["delta"] for e in events if "delta" in e)
        self.assertEqual(text, "Hello there")
        self.assertEqual(events[-4]["text"], "Hello there")
        self.assertEqual(events[-2]["item"]["id"], item_id)
        self.assertEqual(message_text(final), "Hello there")
        self.assertGreater(final["usage"]["output_tokens"], 0)
        retrieved = await live.json("GET", f"{RESPONSES}/{final['id']}")
        self.assertEqual(retrieved[1]["output"], final["output"])

    async def test_sdk_stream(self) -> None:
        live = await start(self, {"replies": ["Streamed reply."]})
        client = live.sdk()

        def raw() -> list[Any]:
            return list(
                client.responses.create(model="gpt-4o", input="hi", stream=True)
            )

        events = await live.in_thread(raw)
        self.assertEqual(events[0].type, "response.created")
        self.assertEqual(events[-1].type, "response.completed")
        self.assertEqual(events[-1].response.output_text, "Streamed reply.")
        self.assertEqual([e.sequence_number for e in events], list(range(len(events))))

        def helper() -> tuple[str, Any]:
            with client.responses.stream(model="gpt-4o", input="hi") as s:
                text = "".join(
                    e.delta for e in s if e.type == "response.output_text.delta"
                )
                return text, s.get_final_response()

        text, final = await live.in_thread(helper)
        self.assertEqual(text, "Streamed reply.")
        self.assertEqual(final.output_text, "Streamed reply.")

    async def test_paced(self) -> None:
        live = await start(self, {"stream": {"interval_ms": 20, "chunking": "word"}})
        started = live.server.clock.seconds()
        events = await stream(live, {"input": "hi"})
        self.assertGreaterEqual(
            live.server.clock.seconds() - started,
            0.02 * (sum(e["type"].endswith(".delta") for e in events) - 1),
        )


class ToolTests(TestCase):
    def check_call(self, item: dict[str, Any]) -> None:
        self.assertEqual(item["type"], "function_call")
        self.assertTrue(item["id"].startswith("fc_"))
        self.assertTrue(item["call_id"].startswith("call_"))
        self.assertEqual(item["status"], "completed")
        self.assertEqual(item["name"], "get_weather")
        jsonschema.validate(json.loads(item["arguments"]), WEATHER)

    async def test_call_then_follow_up(self) -> None:
        live = await start(self, {"replies": ["It is sunny in Paris."]})
        first = await create(live, {"input": "Weather in Paris?", "tools": TOOLS})
        [call] = first["output"]
        self.check_call(call)
        self.assertEqual(first["tools"], TOOLS)
        self.assertGreater(first["usage"]["output_tokens"], 3)
        second = await create(
            live,
            {
                "previous_response_id": first["id"],
                "tools": TOOLS,
                "input": [
                    {
                        "type": "function_call_output",
                        "call_id": call["call_id"],
                        "output": '{"temp": 21}',
                    }
                ],
            },
        )
        self.assertEqual(message_text(second), "It is sunny in Paris.")
        self.assertEqual(second["previous_response_id"], first["id"])
        # The first exchange is input again: chained context is billed.
        self.assertGreater(
            second["usage"]["input_tokens"],
            first["usage"]["input_tokens"] + first["usage"]["output_tokens"],
        )

    async def test_stateless_follow_up_and_choices(self) -> None:
        live = await start(self, {"replies": ["Done."]})
        question = {"role": "user", "content": "Weather in Paris?"}
        first = await create(live, {"input": [question], "tools": TOOLS})
        [call] = first["output"]
        replay = {k: call[k] for k in ("type", "call_id", "name", "arguments")}
        result = {
            "type": "function_call_output",
            "call_id": call["call_id"],
            "output": [{"type": "input_text", "text": "21C"}],
        }
        body = await create(live, {"input": [question, replay, result], "tools": TOOLS})
        self.assertEqual(message_text(body), "Done.")
        none = await create(
            live, {"input": [question], "tools": TOOLS, "tool_choice": "none"}
        )
        self.assertEqual(message_text(none), "Done.")
        forced = {"type": "function", "name": "get_weather"}
        body = await create(
            live,
            {
                "input": [question, replay, result],
                "tools": TOOLS,
                "tool_choice": forced,
            },
        )
        self.assertEqual(body["tool_choice"], forced)
        self.check_call(body["output"][0])
        never = await start(self, {"tools": {"auto_probability": 0}})
        body = await create(never, {"input": "hi", "tools": TOOLS})
        self.assertEqual(body["output"][0]["type"], "message")

    async def test_parallel_calls(self) -> None:
        live = await start(self)
        tools = [*TOOLS, {**TOOLS[0], "name": "get_forecast"}]
        counts = set()
        for seed in range(12):
            body = await create(
                live,
                {
                    "input": "hi",
                    "tools": tools,
                    "tool_choice": "required",
                    "seed": seed,
                },
            )
            counts.add(len(body["output"]))
            self.assertEqual(
                len({o["call_id"] for o in body["output"]}), len(body["output"])
            )
        self.assertEqual(counts, {1, 2})
        body = await create(
            live,
            {
                "input": "hi",
                "tools": tools,
                "tool_choice": "required",
                "parallel_tool_calls": False,
            },
        )
        self.assertEqual(len(body["output"]), 1)
        self.assertFalse(body["parallel_tool_calls"])

    async def test_stream(self) -> None:
        live = await start(self)
        events = await stream(
            live, {"input": "hi", "tools": TOOLS, "tool_choice": "required", "seed": 1}
        )
        added = [e for e in events if e["type"] == "response.output_item.added"]
        self.assertEqual(len(added), 1)
        item = added[0]["item"]
        self.assertEqual((item["type"], item["arguments"]), ("function_call", ""))
        deltas = [
            e for e in events if e["type"] == "response.function_call_arguments.delta"
        ]
        self.assertGreater(len(deltas), 1)
        self.assertTrue(all(e["item_id"] == item["id"] for e in deltas))
        [done] = [
            e for e in events if e["type"] == "response.function_call_arguments.done"
        ]
        self.assertEqual("".join(e["delta"] for e in deltas), done["arguments"])
        self.assertEqual(done["name"], "get_weather")
        final = events[-1]["response"]
        self.assertEqual(final["output"][0]["arguments"], done["arguments"])
        self.check_call(final["output"][0])

    async def test_sdk_call_and_follow_up(self) -> None:
        live = await start(self, {"replies": ["Sunny."]})
        client = live.sdk()
        first = await live.in_thread(
            lambda: client.responses.create(
                model="gpt-4o", input="Weather in Paris?", tools=TOOLS
            )
        )
        [call] = first.output
        self.assertEqual(call.type, "function_call")
        jsonschema.validate(json.loads(call.arguments), WEATHER)
        second = await live.in_thread(
            lambda: client.responses.create(
                model="gpt-4o",
                previous_response_id=first.id,
                tools=TOOLS,
                input=[
                    {
                        "type": "function_call_output",
                        "call_id": call.call_id,
                        "output": "21C",
                    }
                ],
            )
        )
        self.assertEqual(second.output_text, "Sunny.")

        def streamed() -> Any:
            with client.responses.stream(
                model="gpt-4o", input="Weather?", tools=TOOLS, tool_choice="required"
            ) as s:
                for _ in s:
                    pass
                return s.get_final_response()

        final = await live.in_thread(streamed)
        jsonschema.validate(json.loads(final.output[0].arguments), WEATHER)

    async def test_hosted_tools_are_accepted_and_never_called(self) -> None:
        live = await start(self, {"replies": ["Plain."]})
        hosted = {"type": "web_search"}
        body = await create(live, {"input": "news?", "tools": [hosted]})
        self.assertEqual(body["tools"], [hosted])
        self.assertEqual(message_text(body), "Plain.")


class FormatTests(TestCase):
    async def test_json_schema_stream_and_not(self) -> None:
        live = await start(self)
        fmt = {
            "type": "json_schema",
            "name": "weather",
            "schema": WEATHER,
            "strict": True,
        }
        body = await create(live, {"input": "hi", "text": {"format": fmt}})
        jsonschema.validate(json.loads(message_text(body)), WEATHER)
        self.assertEqual(body["text"]["format"], fmt)
        events = await stream(live, {"input": "hi", "text": {"format": fmt}})
        text = "".join(e["delta"] for e in events if "delta" in e)
        jsonschema.validate(json.loads(text), WEATHER)

    async def test_json_object(self) -> None:
        live = await start(self)
        body = await create(
            live, {"input": "hi in JSON", "text": {"format": {"type": "json_object"}}}
        )
        self.assertIsInstance(json.loads(message_text(body)), dict)

    async def test_sdk_parse_with_pydantic(self) -> None:
        from pydantic import BaseModel

        class Step(BaseModel):
            explanation: str
            output: str

        class Solution(BaseModel):
            steps: list[Step]
            final_answer: str

        live = await start(self)
        client = live.sdk()
        response = await live.in_thread(
            lambda: client.responses.parse(
                model="gpt-4o", input="solve 8x + 7 = -23", text_format=Solution
            )
        )
        self.assertIsInstance(response.output_parsed, Solution)

    async def test_logprobs(self) -> None:
        live = await start(self, {"replies": ["Paris is sunny today."]})
        request = {
            "input": "hi",
            "include": ["message.output_text.logprobs"],
            "top_logprobs": 2,
        }
        body = await create(live, request)
        [part] = body["output"][0]["content"]
        self.assertEqual("".join(e["token"] for e in part["logprobs"]), part["text"])
        for entry in part["logprobs"]:
            self.assertLessEqual(entry["logprob"], 0)
            self.assertEqual(len(entry["top_logprobs"]), 2)
        events = await stream(live, request)
        for event in events:
            if event["type"] == "response.output_text.delta":
                [entry] = event["logprobs"]
                self.assertEqual(entry["token"], event["delta"])


class LimitTests(TestCase):
    async def test_max_output_tokens(self) -> None:
        live = await start(self, {"replies": [LONG]})
        body = await create(live, {"input": "hi", "max_output_tokens": 16})
        self.assertEqual(body["status"], "incomplete")
        self.assertEqual(body["incomplete_details"], {"reason": "max_output_tokens"})
        self.assertEqual(body["output"][0]["status"], "incomplete")
        self.assertEqual(body["usage"]["output_tokens"], 16)
        self.assertTrue(LONG.startswith(message_text(body)))
        self.assertLess(len(message_text(body)), len(LONG))
        self.assertEqual(body["max_output_tokens"], 16)
        events = await stream(live, {"input": "hi", "max_output_tokens": 16})
        self.assertEqual(events[-1]["type"], "response.incomplete")
        self.assertEqual(events[-1]["response"]["status"], "incomplete")
        client = live.sdk()
        response = await live.in_thread(
            lambda: client.responses.create(
                model="gpt-4o", input="hi", max_output_tokens=16
            )
        )
        self.assertEqual(response.status, "incomplete")
        assert response.incomplete_details is not None
        self.assertEqual(response.incomplete_details.reason, "max_output_tokens")
        roomy = await create(live, {"input": "hi", "max_output_tokens": 1000})
        self.assertEqual(roomy["status"], "completed")


class StoreTests(TestCase):
    async def test_retrieve_delete(self) -> None:
        live = await start(self)
        client = live.sdk()
        created = await live.in_thread(
            lambda: client.responses.create(model="gpt-4o", input="hi")
        )
        got = await live.in_thread(lambda: client.responses.retrieve(created.id))
        self.assertEqual(got.id, created.id)
        self.assertEqual(got.output_text, created.output_text)
        response, body = await live.json("GET", f"{RESPONSES}/{created.id}")
        validate(body, "Response")
        deleted = await live.in_thread(lambda: client.responses.delete(created.id))
        self.assertIsNone(deleted)
        with self.assertRaises(openai.NotFoundError):
            await live.in_thread(lambda: client.responses.retrieve(created.id))
        response, body = await live.json("DELETE", f"{RESPONSES}/{created.id}")
        self.assertEqual(response.code, 404)
        validate(body, "ErrorResponse")
        again = await create(live, {"input": "hi"})
        response, body = await live.json("DELETE", f"{RESPONSES}/{again['id']}")
        self.assertEqual(
            body, {"id": again["id"], "object": "response.deleted", "deleted": True}
        )

    async def test_store_false_and_unknown_previous(self) -> None:
        live = await start(self)
        body = await create(live, {"input": "hi", "store": False})
        self.assertFalse(body["store"])
        response, error = await live.json("GET", f"{RESPONSES}/{body['id']}")
        self.assertEqual(response.code, 404)
        error = await create(
            live, {"input": "hi", "previous_response_id": body["id"]}, status=404
        )
        self.assertEqual(error["error"]["param"], "previous_response_id")
        self.assertEqual(error["error"]["code"], "previous_response_not_found")
        client = live.sdk()
        with self.assertRaises(openai.NotFoundError):
            await live.in_thread(
                lambda: client.responses.create(
                    model="gpt-4o", input="hi", previous_response_id="resp_nope"
                )
            )

    async def test_lru_store_size(self) -> None:
        live = await start(self, {"responses": {"store_size": 2}})
        ids = [(await create(live, {"input": "hi"}))["id"] for _ in range(3)]
        codes = []
        for response_id in ids:
            response = await live.request("GET", f"{RESPONSES}/{response_id}")
            await treq.content(response)
            codes.append(response.code)
        self.assertEqual(codes, [404, 200, 200])

    def test_store_size_config(self) -> None:
        config = parse_config({"access_token": TOKEN}, environ={})
        self.assertEqual(config.responses.store_size, 1000)
        for bad in (0, "many", -1):
            with self.assertRaises(ConfigError) as caught:
                parse_config(
                    {"access_token": TOKEN, "responses": {"store_size": bad}},
                    environ={},
                )
            self.assertTrue(str(caught.exception).startswith("responses.store_size:"))

    async def test_input_items(self) -> None:
        live = await start(self)
        body = await create(
            live,
            {
                "input": [
                    {"role": "user", "content": "first"},
                    {"role": "assistant", "content": "ok"},
                    {"role": "user", "content": [{"type": "input_text", "text": "2"}]},
                ]
            },
        )
        path = f"{RESPONSES}/{body['id']}/input_items"
        response, page = await live.json("GET", path)
        self.assertEqual(response.code, 200, page)
        validate(page, "ResponseItemList")
        self.assertEqual(
            [i["content"][0]["text"] for i in page["data"]], ["2", "ok", "first"]
        )
        response, page = await live.json("GET", path + "?order=asc&limit=2")
        self.assertEqual([i["role"] for i in page["data"]], ["user", "assistant"])
        self.assertTrue(page["has_more"])
        response, page = await live.json(
            "GET", f"{path}?order=asc&after={page['last_id']}"
        )
        self.assertEqual(len(page["data"]), 1)
        self.assertFalse(page["has_more"])
        response, error = await live.json("GET", path + "?limit=0")
        self.assertEqual((response.code, error["error"]["param"]), (400, "limit"))


class BadInputTests(TestCase):
    async def test_each_names_its_param(self) -> None:
        live = await start(self)
        bad_schema = {"type": "object", "properties": {"a": {"type": "wat"}}}
        cases: list[tuple[dict[str, Any], str]] = [
            ({"model": None}, "model"),
            ({"input": None}, "input"),
            ({"input": 3}, "input"),
            ({"input": []}, "input"),
            ({"input": ["hi"]}, "input[0]"),
            ({"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
            ({"input": [{"role": "user"}]}, "input[0].content"),
            ({"input": [{"type": "telepathy"}]}, "input[0].type"),
            (
                {
                    "input": [
                        {
                            "role": "user",
                            "content": [{"type": "output_text", "text": "x"}],
                        }
                    ]
                },
                "input[0].content[0].type",
            ),
            (
                {"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
                "input[0].content[0].text",
            ),
            (
                {"input": [{"type": "function_call_output", "output": "x"}]},
                "input[0].call_id",
            ),
            (
                {"input": [{"type": "function_call_output", "call_id": "call_x"}]},
                "input[0].output",
            ),
            (
                {
                    "input": [
                        {
                            "type": "function_call_output",
                            "call_id": "call_x",
                            "output": "1",
                        }
                    ]
                },
                "input[0].call_id",
            ),
            (
                {"input": [{"type": "function_call", "call_id": "c", "name": "f"}]},
                "input[0].arguments",
            ),
            ({"instructions": 5}, "instructions"),
            ({"tools": {}}, "tools"),
            ({"tools": [{"type": "retrieval"}]}, "tools[0].type"),
            ({"tools": [{"type": "function"}]}, "tools[0].name"),
            ({"tools": [{"type": "function", "name": "bad name"}]}, "tools[0].name"),
            (
                {
                    "tools": [
                        {"type": "function", "name": "f", "parameters": bad_schema}
                    ]
                },
                "tools[0].parameters",
            ),
            ({"tools": [TOOLS[0], TOOLS[0]]}, "tools"),
            ({"tool_choice": "sometimes"}, "tool_choice"),
            ({"tool_choice": "required"}, "tool_choice"),
            (
                {"tools": TOOLS, "tool_choice": {"type": "function", "name": "x"}},
                "tool_choice",
            ),
            (
                {"tools": TOOLS, "tool_choice": {"type": "file_search"}},
                "tool_choice.type",
            ),
            ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
            ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
            (
                {"text": {"format": {"type": "json_schema", "schema": WEATHER}}},
                "text.format.name",
            ),
            (
                {"text": {"format": {"type": "json_schema", "name": "x"}}},
                "text.format.schema",
            ),
            (
                {
                    "text": {
                        "format": {
                            "type": "json_schema",
                            "name": "x",
                            "schema": bad_schema,
                        }
                    }
                },
                "text.format.schema",
            ),
            ({"text": {"verbosity": "loud"}}, "text.verbosity"),
            ({"max_output_tokens": 15}, "max_output_tokens"),
            ({"max_output_tokens": "many"}, "max_output_tokens"),
            ({"previous_response_id": 7}, "previous_response_id"),
            ({"store": "yes"}, "store"),
            ({"stream": 1}, "stream"),
            ({"metadata": {"k": 1}}, "metadata.k"),
            ({"metadata": {str(i): "v" for i in range(17)}}, "metadata"),
            ({"temperature": 3}, "temperature"),
            ({"top_p": "high"}, "top_p"),
            ({"user": 5}, "user"),
            ({"seed": 1.5}, "seed"),
            ({"truncation": "sometimes"}, "truncation"),
            ({"reasoning": {"effort": "maximal"}}, "reasoning.effort"),
            ({"include": ["everything"]}, "include[0]"),
            ({"top_logprobs": 21}, "top_logprobs"),
            ({"stream_options": {"include_obfuscation": False}}, "stream_options"),
            ({"conversation": 7}, "conversation"),
            ({"background": True, "store": False}, "background"),
        ]
        for extra, param in cases:
            body = {"model": "gpt-4o", "input": "hi", **extra}
            body = {k: v for k, v in body.items() if v is not None}
            response, payload = await live.json("POST", RESPONSES, body)
            self.assertEqual(response.code, 400, (extra, payload))
            validate(payload, "ErrorResponse")
            self.assertEqual(payload["error"]["param"], param, (extra, payload))

    async def test_unknown_paths(self) -> None:
        live = await start(self)
        response, body = await live.json("GET", f"{RESPONSES}/resp_nope")
        self.assertEqual(response.code, 404)
        validate(body, "ErrorResponse")
        response, body = await live.json("POST", f"{RESPONSES}/resp_nope/cancel")
        self.assertEqual(response.code, 404)
        response, body = await live.json("GET", RESPONSES)
        self.assertEqual(response.code, 405)


class DeliveryTests(TestCase):
    async def test_faults_apply_and_a_refused_request_is_not_kept(self) -> None:
        live = await start(self, {"faults": {"header": True}})
        response, body = await live.json(
            "POST",
            RESPONSES,
            {"model": "gpt-4o", "input": "hi"},
            headers={"x-mock-fault": "http_503"},
        )
        self.assertEqual(response.code, 503, body)
        self.assertEqual(len(live.server.responses), 0)
        await create(live, {"input": "hi"})
        self.assertEqual(len(live.server.responses), 1)


class EngineTests(TestCase):
    """The engine and wire alone: no sockets."""

    def engine(self, **config: Any) -> Engine:
        return Engine(parse_config({"access_token": TOKEN, **config}, environ={}))

    def test_store_drops_the_least_recently_used(self) -> None:
        engine = self.engine()
        store = ResponseStore(2)
        request = parse_responses_request(b'{"model": "gpt-4o", "input": "hi"}')
        plans = [plan_response(engine, store, request, 0.0) for _ in range(3)]
        store.keep(plans[0])
        store.keep(plans[1])
        self.assertIsNotNone(store.get(plans[0].id))  # now the most recent
        store.keep(plans[2])
        self.assertIsNone(store.get(plans[1].id))
        self.assertEqual(len(store), 2)
        store.resize(1)
        self.assertEqual(len(store), 1)
        self.assertIsNotNone(store.get(plans[2].id))
        unstored = parse_responses_request(
            b'{"model": "gpt-4o", "input": "hi", "store": false}'
        )
        plan = plan_response(engine, store, unstored, 0.0)
        store.keep(plan)
        self.assertIsNone(store.get(plan.id))

    def test_stream_timing(self) -> None:
        engine = self.engine(stream={"interval_ms": 100}, seed=1)
        body = {
            "model": "gpt-4o",
            "input": "hi",
            "stream": True,
            "tools": [*TOOLS, {**TOOLS[0], "name": "get_forecast"}],
            "tool_choice": "required",
        }
        plans = (
            plan_response(
                engine,
                ResponseStore(1),
                parse_responses_request(json.dumps({**body, "seed": n}).encode()),
                0,
            )
            for n in range(50)
        )
        plan = next(p for p in plans if len(p.output) == 2)
        self.assertEqual(len(plan.output), 2)
        events = list(response_stream(plan))
        dues = [due for due, _ in events]
        self.assertEqual(dues[:2], [0.0, 0.0])
        self.assertEqual(dues, sorted(dues))
        steps = 1 + sum(
            len(o.call.fragments) for o in plan.output if isinstance(o, CallOutput)
        )
        self.assertAlmostEqual(dues[-1], 0.1 * (steps - 1))
        self.assertEqual(plan.completed_at, int(0.1 * (steps - 1)))
        self.assertTrue(all(data.startswith(b"event: ") for _, data in events))
