"""Chat completions, complete: logprobs, tools, legacy functions, structured output."""

from __future__ import annotations

import json
from typing import Any

import jsonschema

import treq
from twisted.trial.unittest import TestCase

from tests.openapi import validate
from tests.support import Live, events, start

CHAT = "/v1/chat/completions"
USER = [{"role": "user", "content": "What's the weather in Paris?"}]
WEATHER: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "minLength": 1},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TIME: dict[str, Any] = {
    "type": "object",
    "properties": {"timezone": {"type": "string", "format": "uuid"}},
    "required": ["timezone"],
}
TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
    {"type": "function", "function": {"name": "get_time", "parameters": TIME}},
]
SCHEMAS: dict[str, dict[str, Any]] = {"get_weather": WEATHER, "get_time": TIME}


async def post(live: Live, body: dict[str, Any]) -> dict[str, Any]:
    response, payload = await live.json("POST", CHAT, {"model": "gpt-4o", **body})
    assert response.code == 200, payload
    validate(payload, "CreateChatCompletionResponse")
    return payload


async def chunks(live: Live, body: dict[str, Any]) -> list[dict[str, Any]]:
    response = await live.request(
        "POST", CHAT, {"model": "gpt-4o", **body, "stream": True}
    )
    payloads = events(await treq.content(response))
    assert payloads[-1] == b"[DONE]"
    out = [json.loads(p) for p in payloads[:-1]]
    for chunk in out:
        validate(chunk, "CreateChatCompletionStreamResponse")
    return out


def reassemble(stream: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    """Tool calls of choice 0 as a client rebuilds them from deltas."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in stream:
        for call in chunk["choices"][0]["delta"].get("tool_calls") or []:
            slot = calls.setdefault(call["index"], {"arguments": ""})
            for key in ("id", "type"):
                if key in call:
                    slot[key] = call[key]
            function = call.get("function", {})
            if "name" in function:
                slot["name"] = function["name"]
            slot["arguments"] += function.get("arguments", "")
    return calls


class LogprobTests(TestCase):
    def check_entry(self, entry: dict[str, Any], top: int) -> None:
        self.assertLessEqual(entry["logprob"], 0)
        self.assertEqual(bytes(entry["bytes"]).decode(), entry["token"])
        alternatives = entry["top_logprobs"]
        self.assertEqual(len(alternatives), top)
        values = [a["logprob"] for a in alternatives]
        self.assertEqual(values, sorted(values, reverse=True))
        self.assertTrue(all(v <= 0 for v in values))
        if top:
            self.assertEqual(alternatives[0]["token"], entry["token"])

    async def test_non_stream(self) -> None:
        live = await start(self, {"replies": ["Paris is sunny today."]})
        body = await post(live, {"messages": USER, "logprobs": True, "top_logprobs": 3})
        logprobs = body["choices"][0]["logprobs"]
        tokens = [e["token"] for e in logprobs["content"]]
        self.assertEqual("".join(tokens), "Paris is sunny today.")
        for entry in logprobs["content"]:
            self.check_entry(entry, 3)
        plain = await post(live, {"messages": USER})
        self.assertIsNone(plain["choices"][0]["logprobs"])

    async def test_stream(self) -> None:
        live = await start(self, {"replies": ["Paris is sunny today."]})
        stream = await chunks(
            live, {"messages": USER, "logprobs": True, "top_logprobs": 2}
        )
        content = [c for c in stream if c["choices"][0]["delta"].get("content")]
        text = ""
        for chunk in content:
            [entry] = chunk["choices"][0]["logprobs"]["content"]
            self.assertEqual(entry["token"], chunk["choices"][0]["delta"]["content"])
            self.check_entry(entry, 2)
            text += entry["token"]
        self.assertEqual(text, "Paris is sunny today.")


class ToolCallTests(TestCase):
    def check_calls(self, calls: list[dict[str, Any]]) -> None:
        for call in calls:
            self.assertTrue(call["id"].startswith("call_"))
            self.assertEqual(call["type"], "function")
            arguments = json.loads(call["function"]["arguments"])
            jsonschema.validate(arguments, SCHEMAS[call["function"]["name"]])

    async def test_forced_function(self) -> None:
        live = await start(self)
        choice = {"type": "function", "function": {"name": "get_weather"}}
        body = await post(
            live, {"messages": USER, "tools": TOOLS, "tool_choice": choice}
        )
        [answer] = body["choices"]
        self.assertEqual(answer["finish_reason"], "tool_calls")
        self.assertIsNone(answer["message"]["content"])
        calls = answer["message"]["tool_calls"]
        self.assertEqual([c["function"]["name"] for c in calls], ["get_weather"])
        self.check_calls(calls)
        self.assertGreater(body["usage"]["completion_tokens"], 3)

    async def test_required_and_parallel(self) -> None:
        live = await start(self)
        counts = set()
        for seed in range(12):
            body = await post(
                live,
                {
                    "messages": USER,
                    "tools": TOOLS,
                    "tool_choice": "required",
                    "seed": seed,
                },
            )
            calls = body["choices"][0]["message"]["tool_calls"]
            self.check_calls(calls)
            counts.add(len(calls))
            self.assertEqual(len({c["id"] for c in calls}), len(calls))
        self.assertEqual(counts, {1, 2})
        for seed in range(6):
            body = await post(
                live,
                {
                    "messages": USER,
                    "tools": TOOLS,
                    "tool_choice": "required",
                    "parallel_tool_calls": False,
                    "seed": seed,
                },
            )
            self.assertEqual(len(body["choices"][0]["message"]["tool_calls"]), 1)

    async def test_auto_follows_config_and_tool_results_get_text(self) -> None:
        live = await start(self, {"replies": ["It is sunny."]})
        body = await post(live, {"messages": USER, "tools": TOOLS})
        self.assertEqual(body["choices"][0]["finish_reason"], "tool_calls")
        call = body["choices"][0]["message"]["tool_calls"][0]
        followup = [
            *USER,
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": call["id"], "content": '{"temp": 21}'},
        ]
        body = await post(live, {"messages": followup, "tools": TOOLS})
        self.assertEqual(body["choices"][0]["message"]["content"], "It is sunny.")
        self.assertEqual(body["choices"][0]["finish_reason"], "stop")
        never = await start(self, {"tools": {"auto_probability": 0}})
        body = await post(never, {"messages": USER, "tools": TOOLS})
        self.assertEqual(body["choices"][0]["finish_reason"], "stop")
        body = await post(
            live, {"messages": USER, "tools": TOOLS, "tool_choice": "none"}
        )
        self.assertEqual(body["choices"][0]["finish_reason"], "stop")

    async def test_stream_reassembles_to_the_same_call(self) -> None:
        live = await start(self, {"stream": {"interval_ms": 0}})
        request = {
            "messages": USER,
            "tools": TOOLS,
            "tool_choice": "required",
            "seed": 3,
        }
        whole = (await post(live, request))["choices"][0]["message"]["tool_calls"]
        stream = await chunks(live, request)
        first = stream[0]["choices"][0]["delta"]
        self.assertEqual(first["role"], "assistant")
        self.assertIsNone(first["content"])
        self.assertEqual(first["tool_calls"][0]["function"]["arguments"], "")
        self.assertEqual(stream[-1]["choices"][0]["finish_reason"], "tool_calls")
        rebuilt = reassemble(stream)
        self.assertEqual(
            [(c["name"], c["arguments"]) for _, c in sorted(rebuilt.items())],
            [(c["function"]["name"], c["function"]["arguments"]) for c in whole],
        )
        self.assertGreater(len(stream), len(whole) + 2)

    async def test_legacy_functions(self) -> None:
        live = await start(self)
        functions = [{"name": "get_weather", "parameters": WEATHER}]
        body = await post(
            live,
            {
                "messages": USER,
                "functions": functions,
                "function_call": {"name": "get_weather"},
            },
        )
        [answer] = body["choices"]
        self.assertEqual(answer["finish_reason"], "function_call")
        self.assertNotIn("tool_calls", answer["message"])
        call = answer["message"]["function_call"]
        self.assertEqual(call["name"], "get_weather")
        jsonschema.validate(json.loads(call["arguments"]), WEATHER)
        stream = await chunks(
            live, {"messages": USER, "functions": functions, "function_call": "auto"}
        )
        self.assertEqual(
            stream[0]["choices"][0]["delta"]["function_call"]["arguments"], ""
        )
        arguments = "".join(
            c["choices"][0]["delta"].get("function_call", {}).get("arguments", "")
            for c in stream
        )
        jsonschema.validate(json.loads(arguments), WEATHER)
        self.assertEqual(stream[-1]["choices"][0]["finish_reason"], "function_call")

    async def test_sdk_tool_calls_stream_and_not(self) -> None:
        live = await start(self)
        client = live.sdk()
        completion = await live.in_thread(
            lambda: client.chat.completions.create(
                model="gpt-4o-mini", messages=USER, tools=TOOLS, tool_choice="required"
            )
        )
        [call, *_] = completion.choices[0].message.tool_calls
        jsonschema.validate(
            json.loads(call.function.arguments), SCHEMAS[call.function.name]
        )

        def streamed() -> Any:
            with client.chat.completions.stream(
                model="gpt-4o-mini", messages=USER, tools=TOOLS, tool_choice="required"
            ) as stream:
                for _ in stream:
                    pass
                return stream.get_final_completion()

        final = await live.in_thread(streamed)
        for call in final.choices[0].message.tool_calls:
            jsonschema.validate(
                json.loads(call.function.arguments), SCHEMAS[call.function.name]
            )


class StructuredOutputTests(TestCase):
    async def test_json_object(self) -> None:
        live = await start(self)
        body = await post(
            live, {"messages": USER, "response_format": {"type": "json_object"}}
        )
        self.assertIsInstance(
            json.loads(body["choices"][0]["message"]["content"]), dict
        )

    async def test_json_schema_stream_and_not(self) -> None:
        live = await start(self)
        fmt = {
            "type": "json_schema",
            "json_schema": {"name": "forecast", "schema": WEATHER, "strict": True},
        }
        body = await post(live, {"messages": USER, "response_format": fmt})
        jsonschema.validate(
            json.loads(body["choices"][0]["message"]["content"]), WEATHER
        )
        stream = await chunks(live, {"messages": USER, "response_format": fmt})
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in stream)
        jsonschema.validate(json.loads(text), WEATHER)

    async def test_sdk_parse_with_pydantic(self) -> None:
        from pydantic import BaseModel

        class Step(BaseModel):
            explanation: str
            output: str

        class Solution(BaseModel):
            steps: list[Step]
            final_answer: str
            confidence: float | None

        live = await start(self)
        client = live.sdk()
        completion = await live.in_thread(
            lambda: client.chat.completions.parse(
                model="gpt-4o", messages=USER, response_format=Solution
            )
        )
        parsed = completion.choices[0].message.parsed
        self.assertIsInstance(parsed, Solution)


class SeedTests(TestCase):
    async def test_same_seed_same_reply(self) -> None:
        replies = [f"reply number {i}" for i in range(20)]
        live = await start(self, {"replies": replies})
        seeded = [
            await post(live, {"messages": USER, "seed": 42, "n": 3}) for _ in range(3)
        ]
        contents = {
            tuple(c["message"]["content"] for c in body["choices"]) for body in seeded
        }
        self.assertEqual(len(contents), 1)
        self.assertEqual(len({b["system_fingerprint"] for b in seeded}), 1)
        unseeded = {
            (await post(live, {"messages": USER}))["choices"][0]["message"]["content"]
            for _ in range(10)
        }
        self.assertGreater(len(unseeded), 1)


class BadInputTests(TestCase):
    async def check(self, live: Live, body: dict[str, Any], param: str) -> None:
        response, payload = await live.json(
            "POST", CHAT, {"model": "gpt-4o", "messages": USER, **body}
        )
        self.assertEqual(response.code, 400, payload)
        validate(payload, "ErrorResponse")
        self.assertEqual(payload["error"]["param"], param, payload)

    async def test_bad_tools_and_formats(self) -> None:
        live = await start(self)
        absent = {"type": "function", "function": {"name": "nope"}}
        cases: list[tuple[dict[str, Any], str]] = [
            ({"tools": TOOLS, "tool_choice": absent}, "tool_choice"),
            ({"tools": TOOLS, "tool_choice": "sometimes"}, "tool_choice"),
            ({"tool_choice": "required"}, "tool_choice"),
            ({"tools": [{"type": "function"}]}, "tools[0].function"),
            ({"tools": [{"function": {"name": "x"}}]}, "tools[0].type"),
            (
                {"tools": [{"type": "retrieval", "function": {"name": "x"}}]},
                "tools[0].type",
            ),
            (
                {"tools": [{"type": "function", "function": {"name": "bad name"}}]},
                "tools[0].function.name",
            ),
            (
                {
                    "tools": [
                        {
                            "type": "function",
                            "function": {"name": "f", "parameters": {"type": "string"}},
                        }
                    ]
                },
                "tools[0].function.parameters",
            ),
            (
                {
                    "tools": [
                        {
                            "type": "function",
                            "function": {
                                "name": "f",
                                "parameters": {
                                    "type": "object",
                                    "properties": {"a": {"type": "wat"}},
                                },
                            },
                        }
                    ]
                },
                "tools[0].function.parameters",
            ),
            ({"tools": [TOOLS[0], TOOLS[0]]}, "tools"),
            ({"response_format": {"type": "xml"}}, "response_format.type"),
            (
                {"response_format": {"type": "json_schema"}},
                "response_format.json_schema",
            ),
            (
                {
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"schema": WEATHER},
                    }
                },
                "response_format.json_schema.name",
            ),
            (
                {
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {"name": "x", "schema": {"type": "wat"}},
                    }
                },
                "response_format.json_schema.schema",
            ),
            (
                {
                    "response_format": {
                        "type": "json_schema",
                        "json_schema": {
                            "name": "x",
                            "schema": {"type": "integer", "minimum": 5, "maximum": 1},
                        },
                    }
                },
                "response_format.json_schema.schema",
            ),
            ({"top_logprobs": 2}, "logprobs"),
            ({"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
            ({"n": 129}, "n"),
            ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ]
        for body, param in cases:
            await self.check(live, body, param)
