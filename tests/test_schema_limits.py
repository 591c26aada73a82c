"""Schemas at the edges, over HTTP: too deep to accept, and tools without arguments.

Only through the wire (a live listener, treq), so the tests do not depend on how
the web layer is built inside.
"""

from __future__ import annotations

import json
from typing import Any

import treq
from twisted.logger import ILogObserver, LogEvent, LogLevel, globalLogPublisher
from twisted.trial.unittest import TestCase
from zope.interface import provider

from mockai_tw.engine.schema_gen import MAX_SCHEMA_DEPTH
from tests.support import Live, events, start

CHAT = "/v1/chat/completions"
RESPONSES = "/v1/responses"
USER = [{"role": "user", "content": "What is the magic number?"}]
HELLO: dict[str, Any] = {"model": "gpt-4o-mini", "messages": USER}
SCHEMA = "__SCHEMA__"  # where a body template takes the schema's JSON text

# (endpoint, body template, the param a refusal names)
PLACES: list[tuple[str, dict[str, Any], str]] = [
    (
        CHAT,
        {
            **HELLO,
            "tools": [
                {"type": "function", "function": {"name": "f", "parameters": SCHEMA}}
            ],
        },
        "tools[0].function.parameters",
    ),
    (
        CHAT,
        {
            **HELLO,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "deep", "schema": SCHEMA},
            },
        },
        "response_format.json_schema.schema",
    ),
    (
        RESPONSES,
        {
            "model": "gpt-4o",
            "input": "hi",
            "tools": [{"type": "function", "name": "f", "parameters": SCHEMA}],
        },
        "tools[0].parameters",
    ),
    (
        RESPONSES,
        {
            "model": "gpt-4o",
            "input": "hi",
            "text": {
                "format": {"type": "json_schema", "name": "deep", "schema": SCHEMA}
            },
        },
        "text.format.schema",
    ),
]


def deep_schema(levels: int) -> str:
    """An object schema nested ``levels`` levels deep, as JSON text.

    Written as text: the test's own ``json.dumps`` would overflow first.
    """
    head = '{"type":"object","properties":{"a":'
    tail = '},"required":["a"]}'
    return head * (levels - 1) + '{"type":"string"}' + tail * (levels - 1)


def body_with(template: dict[str, Any], schema: str) -> bytes:
    return json.dumps(template).replace(json.dumps(SCHEMA), schema).encode()


def watch_log(case: TestCase) -> list[LogEvent]:
    """Every error-level or failure event logged while the test runs."""
    seen: list[LogEvent] = []

    @provider(ILogObserver)
    def observe(event: LogEvent) -> None:
        level = event.get("log_level")
        if "log_failure" in event or level in (LogLevel.error, LogLevel.critical):
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    case.addCleanup(globalLogPublisher.removeObserver, observe)
    return seen


async def post_raw(live: Live, path: str, body: bytes) -> tuple[int, Any]:
    response = await live.request("POST", path, raw=body)
    return response.code, json.loads(await treq.content(response))


class DepthTests(TestCase):
    async def assert_refused(
        self, live: Live, levels: int, *, named: bool
    ) -> list[dict[str, Any]]:
        errors = []
        for path, template, param in PLACES:
            code, body = await post_raw(
                live, path, body_with(template, deep_schema(levels))
            )
            self.assertEqual(code, 400, (path, param, body))
            error = body["error"]
            self.assertEqual(error["type"], "invalid_request_error", error)
            if named:
                self.assertEqual(error["param"], param)
                self.assertIn(f"nested {levels} levels deep", error["message"])
                self.assertIn(f"the limit is {MAX_SCHEMA_DEPTH}", error["message"])
            errors.append(error)
        return errors

    async def assert_still_serving(self, live: Live) -> None:
        response, body = await live.json("POST", CHAT, HELLO)
        self.assertEqual(response.code, 200, body)
        self.assertEqual(body["choices"][0]["finish_reason"], "stop")

    async def test_too_deep_is_a_400_naming_the_param(self) -> None:
        logged = watch_log(self)
        live = await start(self)
        # 500 levels are ~1,000 nested JSON objects: under the body parser's
        # limit, past what a recursive json.dumps of the schema survives.
        for levels in (MAX_SCHEMA_DEPTH + 1, 100, 300, 500):
            await self.assert_refused(live, levels, named=True)
        await self.assert_still_serving(live)
        self.assertEqual(logged, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_deeper_than_json_parsing_allows(self) -> None:
        """2,000 levels are 4,000 nested JSON objects: the body parser refuses.

        Its 400 comes before any param is read, so it names none.
        """
        logged = watch_log(self)
        live = await start(self)
        await self.assert_refused(live, 2_000, named=False)
        await self.assert_still_serving(live)
        self.assertEqual(logged, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_at_the_limit_is_answered(self) -> None:
        live = await start(self)
        for path, template, param in PLACES:
            body = body_with(template, deep_schema(MAX_SCHEMA_DEPTH))
            code, answer = await post_raw(live, path, body)
            self.assertEqual(code, 200, (param, answer))


# LangChain's magic_function_no_args, and the same tool with no parameters at all.
NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}}
NAME = "magic_function_no_args"
CHAT_TOOLS: list[list[dict[str, Any]]] = [
    [
        {
            "type": "function",
            "function": {"name": NAME, "description": "Magic.", "parameters": NO_ARGS},
        }
    ],
    [{"type": "function", "function": {"name": NAME, "description": "Magic."}}],
]
CHAT_FORCED = {"type": "function", "function": {"name": NAME}}
RESPONSES_TOOLS = [{"type": "function", "name": NAME, "parameters": NO_ARGS}]
RESPONSES_FORCED = {"type": "function", "name": NAME}
SEEDS = range(6)


def named_events(raw: bytes) -> list[dict[str, Any]]:
    """The payloads of a Responses stream (``event:`` and ``data:`` lines)."""
    out = []
    for block in raw.strip(b"\n").split(b"\n\n"):
        head, _, data = block.partition(b"\n")
        assert head.startswith(b"event: ") and data.startswith(b"data: "), block
        out.append(json.loads(data[len(b"data: ") :]))
    return out


class NoArgumentTests(TestCase):
    async def test_chat(self) -> None:
        live = await start(self)
        for tools in CHAT_TOOLS:
            for seed in SEEDS:
                request = {**HELLO, "tools": tools, "tool_choice": CHAT_FORCED}
                response, body = await live.json(
                    "POST", CHAT, {**request, "seed": seed}
                )
                self.assertEqual(response.code, 200, body)
                [call] = body["choices"][0]["message"]["tool_calls"]
                self.assertEqual(call["function"]["name"], NAME)
                self.assertEqual(call["function"]["arguments"], "{}")

    async def test_chat_stream(self) -> None:
        live = await start(self)
        for tools in CHAT_TOOLS:
            for seed in SEEDS:
                request = {**HELLO, "tools": tools, "tool_choice": CHAT_FORCED}
                response = await live.request(
                    "POST", CHAT, {**request, "seed": seed, "stream": True}
                )
                self.assertEqual(response.code, 200)
                payloads = events(await treq.content(response))
                self.assertEqual(payloads[-1], b"[DONE]")
                arguments = ""
                for payload in payloads[:-1]:
                    for choice in json.loads(payload)["choices"]:
                        for call in choice["delta"].get("tool_calls") or ():
                            arguments += call.get("function", {}).get("arguments", "")
                self.assertEqual(arguments, "{}")

    async def test_responses(self) -> None:
        live = await start(self)
        for seed in SEEDS:
            request = {
                "model": "gpt-4o",
                "input": "What is the magic number?",
                "tools": RESPONSES_TOOLS,
                "tool_choice": RESPONSES_FORCED,
                "seed": seed,
            }
            response, body = await live.json("POST", RESPONSES, request)
            self.assertEqual(response.code, 200, body)
            [call] = body["output"]
            self.assertEqual((call["type"], call["name"]), ("function_call", NAME))
            self.assertEqual(call["arguments"], "{}")

    async def test_responses_stream(self) -> None:
        live = await start(self)
        for seed in SEEDS:
            request = {
                "model": "gpt-4o",
                "input": "What is the magic number?",
                "tools": RESPONSES_TOOLS,
                "tool_choice": RESPONSES_FORCED,
                "seed": seed,
                "stream": True,
            }
            response = await live.request("POST", RESPONSES, request)
            self.assertEqual(response.code, 200)
            payloads = named_events(await treq.content(response))
            deltas = [
                p["delta"]
                for p in payloads
                if p["type"] == "response.function_call_arguments.delta"
            ]
            [done] = [
                p
                for p in payloads
                if p["type"] == "response.function_call_arguments.done"
            ]
            self.assertEqual("".join(deltas), "{}")
            self.assertEqual(done["arguments"], "{}")
            self.assertEqual(payloads[-1]["response"]["output"][0]["arguments"], "{}")
