"""The Anthropic Messages API, through the official ``anthropic`` SDK and raw."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime
from typing import Any

import anthropic
import jsonschema
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent
from pydantic import TypeAdapter

import treq
from twisted.trial.unittest import TestCase

from mockai_tw.engine.plan import ChatPlan, ChoicePlan, Pacing, ToolCallPlan, Usage
from mockai_tw.errors import ApiError, server_error
from mockai_tw.request.anthropic import parse_messages_request
from mockai_tw.web.endpoints import MESSAGES
from mockai_tw.wire.anthropic import ERROR_TYPES, message_stream
from tests.support import TOKEN, Live, start

MODEL = "claude-sonnet-4-5"
VERSION = {"anthropic-version": "2023-06-01"}
HELLO: list[Any] = [{"role": "user", "content": "Say hello"}]
BODY: dict[str, Any] = {"model": MODEL, "max_tokens": 256, "messages": HELLO}
REPLY = "Hello from the mock. STOP there, and more."
WEATHER: dict[str, Any] = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        },
        "required": ["city", "unit"],
    },
}
TOOLS: list[Any] = [WEATHER]
EVENTS: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)


def client(live: Live, **kw: Any) -> anthropic.Anthropic:
    kw.setdefault("api_key", TOKEN)
    kw.setdefault("max_retries", 0)
    sdk = anthropic.Anthropic(base_url=live.root, **kw)
    live.clients.append(sdk)
    return sdk


async def post(
    live: Live,
    path: str,
    body: Any,
    headers: dict[str, str] | None = None,
    key: str | None = TOKEN,
) -> tuple[Any, bytes]:
    sent = {**VERSION, **(headers or {})}
    if key is not None:
        sent["x-api-key"] = key
    response = await live.request("POST", path, body, token=None, headers=sent)
    return response, await treq.content(response)


def sse(body: bytes) -> list[tuple[str, Any]]:
    """(``event:`` name, parsed data) per event, checking the framing."""
    assert body.endswith(b"\n\n"), body[-40:]
    out = []
    for block in body[:-2].split(b"\n\n"):
        name, data = block.split(b"\n")
        assert name.startswith(b"event: "), block[:60]
        assert data.startswith(b"data: "), block[:60]
        out.append((name[7:].decode(), json.loads(data[6:])))
    return out


def error_of(case: TestCase, body: bytes, kind: str) -> str:
    payload = json.loads(body)
    case.assertEqual(payload["type"], "error")
    case.assertEqual(payload["error"]["type"], kind)
    case.assertTrue(payload["request_id"].startswith("req_"))
    message: str = payload["error"]["message"]
    return message


def check_events(case: TestCase, events: list[tuple[str, Any]]) -> None:
    """Each event named as its ``type``, and valid as the SDK's own type (a
    ``ping``, which the SDK skips, is just ``{"type": "ping"}``)."""
    for name, data in events:
        case.assertEqual(name, data["type"])
        if name == "ping":
            case.assertEqual(data, {"type": "ping"})
        else:
            EVENTS.validate_python(data, strict=True)


class MessagesTests(TestCase):
    async def test_plain_message_through_the_sdk_and_raw(self) -> None:
        live = await start(self, {"replies": ["Hello from the mock."]})
        sdk = client(live)
        raw = await live.in_thread(
            lambda: sdk.messages.with_raw_response.create(
                model=MODEL, max_tokens=256, messages=HELLO, system="Be terse."
            )
        )
        message = raw.parse()
        self.assertEqual(message.content[0].type, "text")
        assert message.content[0].type == "text"
        self.assertEqual(message.content[0].text, "Hello from the mock.")
        self.assertEqual(message.stop_reason, "end_turn")
        self.assertIsNone(message.stop_sequence)
        self.assertTrue(message.id.startswith("msg_"))
        self.assertGreater(message.usage.input_tokens, 0)
        self.assertGreater(message.usage.output_tokens, 0)
        self.assertTrue(raw.request_id and raw.request_id.startswith("req_"))
        self.assertEqual(raw.headers["request-id"], raw.request_id)
        response, body = await post(live, "/v1/messages", BODY)
        self.assertEqual(response.code, 200)
        payload = json.loads(body)
        Message.model_validate(payload, strict=True)
        self.assertEqual(payload["model"], MODEL)
        self.assertEqual(payload["usage"]["cache_read_input_tokens"], 0)
        self.assertEqual(payload["usage"]["cache_creation_input_tokens"], 0)

    async def test_bearer_token_counts_too(self) -> None:
        live = await start(self)
        response = await live.request("POST", "/v1/messages", BODY, headers=VERSION)
        self.assertEqual(response.code, 200)
        Message.model_validate(json.loads(await treq.content(response)), strict=True)

    async def test_stream_helper_and_raw_events(self) -> None:
        live = await start(
            self, {"replies": ["Streaming from the mock, piece by piece."]}
        )
        sdk = client(live)

        def consume() -> tuple[list[str], Any]:
            with sdk.messages.stream(
                model=MODEL, max_tokens=256, messages=HELLO
            ) as stream:
                texts = list(stream.text_stream)
                return texts, stream.get_final_message()

        texts, final = await live.in_thread(consume)
        self.assertGreater(len(texts), 1)
        self.assertEqual("".join(texts), "Streaming from the mock, piece by piece.")
        assert final.content[0].type == "text"
        self.assertEqual(final.content[0].text, "".join(texts))
        self.assertEqual(final.stop_reason, "end_turn")
        self.assertGreater(final.usage.output_tokens, 1)

        response, body = await post(live, "/v1/messages", {**BODY, "stream": True})
        self.assertEqual(
            response.headers.getRawHeaders("content-type"),
            ["text/event-stream; charset=utf-8"],
        )
        events = sse(body)
        check_events(self, events)
        names = [n for n, _ in events]
        self.assertEqual(names[:3], ["message_start", "content_block_start", "ping"])
        self.assertEqual(
            names[-3:], ["content_block_stop", "message_delta", "message_stop"]
        )
        self.assertEqual(set(names[3:-3]), {"content_block_delta"})
        start_ = events[0][1]["message"]
        self.assertEqual(start_["content"], [])
        self.assertEqual(start_["usage"]["output_tokens"], 1)
        self.assertIsNone(start_["stop_reason"])
        delta = events[-2][1]
        self.assertEqual(
            delta["delta"], {"stop_reason": "end_turn", "stop_sequence": None}
        )
        self.assertGreater(delta["usage"]["output_tokens"], 1)

    async def test_tool_use_loop(self) -> None:
        live = await start(
            self, {"tools": {"auto_probability": 1.0}, "replies": ["It is sunny."]}
        )
        sdk = client(live)
        first = await live.in_thread(
            lambda: sdk.messages.create(
                model=MODEL,
                max_tokens=256,
                messages=[{"role": "user", "content": "Weather in Paris?"}],
                tools=TOOLS,
            )
        )
        self.assertEqual(first.stop_reason, "tool_use")
        uses = [b for b in first.content if b.type == "tool_use"]
        self.assertEqual(len(uses), 1)
        use = uses[0]
        assert use.type == "tool_use"
        self.assertTrue(use.id.startswith("toolu_"))
        self.assertEqual(use.name, "get_weather")
        jsonschema.validate(use.input, WEATHER["input_schema"])
        final = await live.in_thread(
            lambda: sdk.messages.create(
                model=MODEL,
                max_tokens=256,
                tools=TOOLS,
                messages=[
                    {"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "content": first.content},
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "tool_result",
                                "tool_use_id": use.id,
                                "content": "18 degrees, sunny",
                            }
                        ],
                    },
                ],
            )
        )
        self.assertEqual(final.stop_reason, "end_turn")
        assert final.content[0].type == "text"
        self.assertEqual(final.content[0].text, "It is sunny.")

    async def test_tool_use_streamed(self) -> None:
        live = await start(self)
        body = {
            **BODY,
            "stream": True,
            "tools": [WEATHER],
            "tool_choice": {"type": "tool", "name": "get_weather"},
        }
        _, raw = await post(live, "/v1/messages", body)
        events = sse(raw)
        check_events(self, events)
        opened = [d for n, d in events if n == "content_block_start"]
        self.assertEqual(len(opened), 1)
        self.assertEqual(opened[0]["content_block"]["type"], "tool_use")
        self.assertEqual(opened[0]["content_block"]["input"], {})
        partial = "".join(
            d["delta"]["partial_json"] for n, d in events if n == "content_block_delta"
        )
        jsonschema.validate(json.loads(partial), WEATHER["input_schema"])
        self.assertEqual(events[-2][1]["delta"]["stop_reason"], "tool_use")

        sdk = client(live)

        def final() -> Any:
            with sdk.messages.stream(
                model=MODEL,
                max_tokens=256,
                messages=HELLO,
                tools=TOOLS,
                tool_choice={"type": "any"},
            ) as stream:
                return stream.get_final_message()

        message = await live.in_thread(final)
        self.assertEqual(message.stop_reason, "tool_use")
        for block in message.content:
            assert block.type == "tool_use"
            jsonschema.validate(block.input, WEATHER["input_schema"])

    async def test_stop_sequences_and_max_tokens(self) -> None:
        live = await start(self, {"replies": [REPLY]})
        sdk = client(live)
        stopped = await live.in_thread(
            lambda: sdk.messages.create(
                model=MODEL, max_tokens=256, messages=HELLO, stop_sequences=["STOP"]
            )
        )
        self.assertEqual(stopped.stop_reason, "stop_sequence")
        self.assertEqual(stopped.stop_sequence, "STOP")
        assert stopped.content[0].type == "text"
        self.assertEqual(stopped.content[0].text, "Hello from the mock. ")
        cut = await live.in_thread(
            lambda: sdk.messages.create(model=MODEL, max_tokens=3, messages=HELLO)
        )
        self.assertEqual(cut.stop_reason, "max_tokens")
        self.assertIsNone(cut.stop_sequence)
        self.assertEqual(cut.usage.output_tokens, 3)
        _, raw = await post(
            live, "/v1/messages", {**BODY, "stream": True, "stop_sequences": ["STOP"]}
        )
        delta = sse(raw)[-2][1]["delta"]
        self.assertEqual(
            delta, {"stop_reason": "stop_sequence", "stop_sequence": "STOP"}
        )

    async def test_count_tokens_equals_usage(self) -> None:
        live = await start(self)
        sdk = client(live)
        kw: dict[str, Any] = {
            "model": MODEL,
            "system": "You are a weather bot.",
            "messages": [{"role": "user", "content": "Weather in Paris, please?"}],
            "tools": [WEATHER],
        }
        counted = await live.in_thread(lambda: sdk.messages.count_tokens(**kw))
        message = await live.in_thread(lambda: sdk.messages.create(max_tokens=64, **kw))
        self.assertGreater(counted.input_tokens, 0)
        self.assertEqual(counted.input_tokens, message.usage.input_tokens)
        response, body = await post(live, "/v1/messages/count_tokens", kw)
        self.assertEqual(response.code, 200)
        MessageTokensCount.model_validate(json.loads(body), strict=True)
        short = await live.in_thread(
            lambda: sdk.messages.count_tokens(model=MODEL, messages=HELLO)
        )
        self.assertLess(short.input_tokens, counted.input_tokens)

    async def test_version_header_and_keys(self) -> None:
        live = await start(self)
        response = await live.request(
            "POST", "/v1/messages", BODY, token=None, headers={"x-api-key": TOKEN}
        )
        self.assertEqual(response.code, 400)
        message = error_of(self, await treq.content(response), "invalid_request_error")
        self.assertIn("anthropic-version", message)
        response, body = await post(live, "/v1/messages", BODY, key=None)
        self.assertEqual(response.code, 401)
        self.assertIn("x-api-key", error_of(self, body, "authentication_error"))
        response, body = await post(live, "/v1/messages/count_tokens", BODY, key="nope")
        self.assertEqual(response.code, 401)
        error_of(self, body, "authentication_error")
        response, body = await post(
            live, "/v1/messages", BODY, {"anthropic-beta": "prompt-caching-2024-07-31"}
        )
        self.assertEqual(response.code, 200)
        bad = client(live, api_key="sk-wrong")
        with self.assertRaises(anthropic.AuthenticationError) as raised:
            await live.in_thread(
                lambda: bad.messages.create(model=MODEL, max_tokens=8, messages=HELLO)
            )
        self.assertEqual(raised.exception.status_code, 401)
        self.assertTrue(str(raised.exception.request_id).startswith("req_"))

    async def test_errors_in_anthropic_shape(self) -> None:
        live = await start(self, {"strict_models": True})
        sdk = client(live)
        cases: list[tuple[dict[str, Any], str]] = [
            ({"model": MODEL, "messages": HELLO}, "max_tokens: Field required"),
            ({"max_tokens": 8, "messages": HELLO}, "model: Field required"),
            ({"model": MODEL, "max_tokens": 8}, "messages: Field required"),
            (
                {**BODY, "messages": [{"role": "robot", "content": "x"}]},
                "messages.0.role: Input should be",
            ),
            ({**BODY, "temperature": 1.5}, "temperature:"),
            (
                {
                    **BODY,
                    "messages": [
                        {
                            "role": "user",
                            "content": [
                                {"type": "tool_result", "tool_use_id": "toolu_x"}
                            ],
                        }
                    ],
                },
                "messages.0.content.0: unexpected `tool_use_id`",
            ),
        ]
        for body, expected in cases:
            response, raw = await post(live, "/v1/messages", body)
            self.assertEqual(response.code, 400, raw)
            self.assertIn(expected, error_of(self, raw, "invalid_request_error"))
        with self.assertRaises(anthropic.NotFoundError) as missing:
            await live.in_thread(
                lambda: sdk.messages.create(
                    model="claude-nonexistent", max_tokens=8, messages=HELLO
                )
            )
        self.assertIn("claude-nonexistent", missing.exception.message)
        response, raw = await post(live, "/v1/messages/nothing", BODY)
        self.assertEqual(response.code, 404)
        error_of(self, raw, "not_found_error")
        response = await live.request(
            "GET", "/v1/messages", token=None, headers={**VERSION, "x-api-key": TOKEN}
        )
        self.assertEqual(response.code, 405)
        error_of(self, await treq.content(response), "invalid_request_error")

    async def test_rule_for_the_messages_endpoint(self) -> None:
        live = await start(
            self,
            {
                "rules": [
                    {
                        "name": "anthropic-order",
                        "match": {
                            "endpoint": "messages",
                            "content": {"contains": "order"},
                        },
                        "answer": "Anthropic side: {{model}}.",
                    },
                    {"match": {"endpoint": "chat"}, "answer": "Chat side."},
                ]
            },
        )
        seen: list[Any] = []
        live.server.hooks.on("first_byte", lambda request, status: seen.append(request))
        sdk = client(live)
        message = await live.in_thread(
            lambda: sdk.messages.create(
                model=MODEL,
                max_tokens=64,
                messages=[{"role": "user", "content": "Where is my order?"}],
            )
        )
        assert message.content[0].type == "text"
        self.assertEqual(message.content[0].text, f"Anthropic side: {MODEL}.")
        other = await live.in_thread(
            lambda: sdk.messages.create(model=MODEL, max_tokens=64, messages=HELLO)
        )
        assert other.content[0].type == "text"
        self.assertNotEqual(other.content[0].text, "Chat side.")
        _, chat = await live.json(
            "POST",
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "order"}]},
        )
        self.assertEqual(chat["choices"][0]["message"]["content"], "Chat side.")
        self.assertEqual([r.endpoint for r in seen], ["messages", "messages", "chat"])
        (record, _) = live.server.journal.query(path="/v1/messages")
        self.assertEqual(record["rule"], "anthropic-order")

    async def test_rate_limit_headers_and_429(self) -> None:
        live = await start(
            self,
            {
                "rate_limits": {
                    "enabled": True,
                    "requests_per_minute": 2,
                    "tokens_per_minute": 100000,
                }
            },
        )
        now = live.server.clock.seconds()
        response, _ = await post(live, "/v1/messages", BODY)
        # The window started while the request was served: between the two.
        after = live.server.clock.seconds()
        headers = response.headers
        self.assertEqual(
            headers.getRawHeaders("anthropic-ratelimit-requests-limit"), ["2"]
        )
        self.assertEqual(
            headers.getRawHeaders("anthropic-ratelimit-requests-remaining"), ["1"]
        )
        self.assertEqual(
            headers.getRawHeaders("anthropic-ratelimit-tokens-limit"), ["100000"]
        )
        self.assertIsNone(headers.getRawHeaders("x-ratelimit-limit-requests"))
        (reset,) = headers.getRawHeaders("anthropic-ratelimit-requests-reset")
        when = datetime.strptime(reset, "%Y-%m-%dT%H:%M:%S%z").timestamp()
        self.assertTrue(now < when <= math.ceil(after + 30), (now, after, reset))
        await post(live, "/v1/messages", BODY)
        sdk = client(live)
        with self.assertRaises(anthropic.RateLimitError) as raised:
            await live.in_thread(
                lambda: sdk.messages.create(model=MODEL, max_tokens=8, messages=HELLO)
            )
        error = raised.exception
        self.assertEqual(error.status_code, 429)
        self.assertEqual(error.response.headers["retry-after"], "30")
        self.assertEqual(
            error.response.headers["anthropic-ratelimit-requests-remaining"], "0"
        )
        body = error.body
        assert isinstance(body, dict)
        self.assertEqual(body["error"]["type"], "rate_limit_error")
        self.assertIn("rate limit", body["error"]["message"])

    async def test_overloaded_fault_is_529(self) -> None:
        live = await start(self, {"faults": {"header": True}})
        sdk = client(live)
        with self.assertRaises(anthropic.OverloadedError) as raised:
            await live.in_thread(
                lambda: sdk.messages.create(
                    model=MODEL,
                    max_tokens=8,
                    messages=HELLO,
                    extra_headers={"x-mock-fault": "overloaded"},
                )
            )
        self.assertEqual(raised.exception.status_code, 529)
        self.assertEqual(raised.exception.response.headers["retry-after"], "1")
        response, raw = await post(
            live, "/v1/messages", BODY, {"x-mock-fault": "http_500"}
        )
        self.assertEqual(response.code, 500)
        self.assertEqual(error_of(self, raw, "api_error"), "Internal server error")

    async def test_a_failing_stream_ends_with_the_error_event(self) -> None:
        live = await start(self)
        resource = live.server.site.resource.children[b"v1"].children[b"messages"]

        def failing(plan: Any) -> Any:
            events = MESSAGES.stream(plan) if MESSAGES.stream else iter(())
            yield next(events)
            raise RuntimeError("the renderer broke")

        resource.endpoint = dataclasses.replace(MESSAGES, stream=failing)
        _, raw = await post(live, "/v1/messages", {**BODY, "stream": True})
        events = sse(raw)
        self.assertEqual([n for n, _ in events], ["message_start", "error"])
        self.assertEqual(events[-1][1]["error"]["type"], "api_error")
        sdk = client(live)

        def consume() -> None:
            with sdk.messages.stream(
                model=MODEL, max_tokens=64, messages=HELLO
            ) as stream:
                list(stream.text_stream)

        with self.assertRaises(anthropic.APIStatusError) as raised:
            await live.in_thread(consume)
        self.assertIn("Internal server error", str(raised.exception))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_stream_error_event(self) -> None:
        """A stream that fails ends with Anthropic's ``error`` event."""
        event = MESSAGES.error_event(server_error(), 3)
        ((name, data),) = sse(event)
        self.assertEqual(name, "error")
        self.assertEqual(
            data,
            {
                "type": "error",
                "error": {"type": "api_error", "message": "Internal server error"},
            },
        )
        overloaded = MESSAGES.error_event(ApiError(529, "Overloaded"), 0)
        self.assertEqual(sse(overloaded)[0][1]["error"]["type"], "overloaded_error")


class StreamPacingTests(TestCase):
    """The stream spends the plan's pacing step for step as chat's does."""

    def plan(self, choice: ChoicePlan) -> ChatPlan:
        return ChatPlan(
            id="chatcmpl-abc",
            created=0,
            model=MODEL,
            system_fingerprint="fp",
            choices=(choice,),
            usage=Usage(5, 3),
            pacing=Pacing(first_s=1.0, interval_s=0.5),
        )

    def test_text_pieces_are_paced(self) -> None:
        events = list(message_stream(self.plan(ChoicePlan(0, ("a", "b", "c"), "stop"))))
        deltas = [due for due, data in events if b"text_delta" in data]
        self.assertEqual(deltas, [1.0, 1.5, 2.0])
        self.assertEqual(events[0][0], 1.0)
        self.assertEqual(events[-1][0], 2.0)

    def test_tool_calls_take_a_step_each(self) -> None:
        calls = (
            ToolCallPlan("call_1", "f", "{}", ("{", "}")),
            ToolCallPlan("call_2", "g", "{}", ("{}",)),
        )
        plan = self.plan(ChoicePlan(0, (), "tool_calls", tool_calls=calls))
        self.assertEqual(plan.choices[0].steps, 4)
        timed = [(due, data.split(b"\n")[0]) for due, data in message_stream(plan)]
        starts = [due for due, name in timed if name == b"event: content_block_start"]
        self.assertEqual(starts, [1.0, 2.0])
        deltas = [due for due, name in timed if name == b"event: content_block_delta"]
        self.assertEqual(deltas, [1.0, 1.5, 2.5])


class RequestModelTests(TestCase):
    def test_mapping_into_the_chat_request(self) -> None:
        body = {
            "model": MODEL,
            "max_tokens": 100,
            "system": [{"type": "text", "text": "Be brief."}],
            "stop_sequences": ["END"],
            "temperature": 0.5,
            "tools": [WEATHER],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "metadata": {"user_id": "u-1"},
            "messages": [
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "text", "text": "Let me look."},
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "get_weather",
                            "input": {"city": "Paris"},
                        },
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": "sunny",
                        },
                        {"type": "text", "text": "And tomorrow?"},
                    ],
                },
            ],
        }
        request = parse_messages_request(json.dumps(body).encode())
        chat = request.chat
        self.assertEqual(
            [m.role for m in chat.messages],
            ["system", "user", "assistant", "tool", "user"],
        )
        self.assertEqual(chat.messages[0].text, "Be brief.")
        call = chat.messages[2].raw["tool_calls"][0]
        self.assertEqual(call["id"], "toolu_1")
        self.assertEqual(json.loads(call["function"]["arguments"]), {"city": "Paris"})
        self.assertEqual(chat.messages[3].raw["tool_call_id"], "toolu_1")
        self.assertEqual(chat.last_user_text, "And tomorrow?")
        self.assertEqual(
            (chat.tool_choice, chat.parallel_tool_calls), ("required", False)
        )
        self.assertEqual(chat.tools[0].parameters, WEATHER["input_schema"])
        self.assertEqual(
            (chat.stop, chat.max_tokens, chat.user), (("END",), 100, "u-1")
        )
        self.assertEqual(chat.temperature, 0.5)
        forced = parse_messages_request(
            json.dumps(
                {**body, "tool_choice": {"type": "tool", "name": "get_weather"}}
            ).encode()
        )
        self.assertEqual(
            (forced.chat.tool_choice, forced.chat.forced_tool),
            ("function", "get_weather"),
        )

    def test_system_role_messages_are_system_text(self) -> None:
        body = {
            **BODY,
            "messages": [
                {"role": "system", "content": [{"type": "text", "text": "Terse."}]},
                *HELLO,
            ],
        }
        chat = parse_messages_request(json.dumps(body).encode()).chat
        self.assertEqual(
            [(m.role, m.text) for m in chat.messages],
            [("system", "Terse."), ("user", "Say hello")],
        )


class SdkErrorClassTests(TestCase):
    """Every status the API answers reaches the SDK as its own exception."""

    async def test_each_status_is_the_sdks_exception(self) -> None:
        classes: dict[int, type[anthropic.APIStatusError]] = {
            400: anthropic.BadRequestError,
            401: anthropic.AuthenticationError,
            403: anthropic.PermissionDeniedError,
            404: anthropic.NotFoundError,
            413: anthropic.RequestTooLargeError,
            429: anthropic.RateLimitError,
            500: anthropic.InternalServerError,
            529: anthropic.OverloadedError,
        }
        rules = [
            {
                "match": {"headers": {"x-scenario": str(status)}},
                "answer": {"error": status},
            }
            for status in classes
        ]
        live = await start(self, {"rules": rules})
        sdk = client(live)
        for status, cls in classes.items():
            headers = {"x-scenario": str(status)}

            def call(headers: dict[str, str] = headers) -> Any:
                return sdk.messages.create(
                    model=MODEL, max_tokens=8, messages=HELLO, extra_headers=headers
                )

            with self.assertRaises(anthropic.APIStatusError) as raised:
                await live.in_thread(call)
            self.assertIs(type(raised.exception), cls, status)
            self.assertEqual(raised.exception.status_code, status)
            body = raised.exception.body
            assert isinstance(body, dict), body
            self.assertEqual(body["type"], "error")
            self.assertEqual(body["error"]["type"], ERROR_TYPES[status], (status, body))
            self.assertTrue(body["request_id"].startswith("req_"), body)
