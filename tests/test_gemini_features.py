"""Gemini's thinking, the JSON-array stream's pacing and errors, and the
built-in tools the mock refuses: through ``google-genai`` and raw."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from google.genai import errors, types

from twisted.trial.unittest import TestCase

from mockai_tw.engine import tokenizer
from mockai_tw.engine.plan import ChatPlan, ChoicePlan, Pacing, Usage
from mockai_tw.errors import ApiError
from mockai_tw.web import gemini as web_gemini
from mockai_tw.wire import gemini as wire
from tests.support import start
from tests.test_gemini import (
    GENERATE,
    HELLO,
    MODEL,
    STREAM,
    WEATHER,
    chunks,
    client,
    google_error,
    post,
    validated,
)


def thinking(budget: int | None = 1024, shown: bool = True) -> dict[str, Any]:
    config: dict[str, Any] = {"includeThoughts": shown}
    if budget is not None:
        config["thinkingBudget"] = budget
    return {**HELLO, "generationConfig": {"thinkingConfig": config}}


def plan(reasoning: tuple[str, ...], shown: bool = True) -> ChatPlan:
    return ChatPlan(
        id="chatcmpl-abc",
        created=0,
        model=MODEL,
        system_fingerprint="fp",
        choices=(ChoicePlan(0, ("x", "y"), "stop", reasoning=reasoning),),
        usage=Usage(5, 6, 3),
        pacing=Pacing(first_s=1.0, interval_s=0.5),
        reasoning_shown=shown,
    )


class ThinkingTests(TestCase):
    async def test_a_call_after_thinking_carries_its_signature(self) -> None:
        live = await start(self)
        sdk = client(live)
        config = types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[WEATHER])],
            automatic_function_calling=types.AutomaticFunctionCallingConfig(
                disable=True
            ),
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(
                    mode=types.FunctionCallingConfigMode.ANY
                )
            ),
            thinking_config=types.ThinkingConfig(thinking_budget=1024),
        )
        question = types.Content(role="user", parts=[types.Part(text="Paris?")])
        first = await live.in_thread(
            lambda: sdk.models.generate_content(
                model=MODEL, contents=[question], config=config
            )
        )
        content = first.candidates[0].content  # type: ignore[index]
        assert content is not None and content.parts is not None
        (part,) = [p for p in content.parts if p.function_call is not None]
        signed = part.thought_signature
        assert signed is not None
        self.assertGreater(len(signed), 200)
        # Streamed: the call's chunk carries it too.
        streamed = await live.in_thread(
            lambda: list(
                sdk.models.generate_content_stream(
                    model=MODEL, contents=[question], config=config
                )
            )
        )
        calls = [
            p
            for c in streamed
            for p in c.candidates[0].content.parts  # type: ignore[index,union-attr]
            if p.function_call is not None
        ]
        self.assertEqual(len(calls), 1)
        self.assertIsNotNone(calls[0].thought_signature)
        # Sent back with the call, it is accepted; without thinking, no signature.
        answer = types.Part.from_function_response(
            name="get_weather", response={"temperature": 21}
        )
        follow = config.model_copy(update={"tool_config": None})
        final = await live.in_thread(
            lambda: sdk.models.generate_content(
                model=MODEL,
                contents=[
                    question,
                    content,
                    types.Content(role="user", parts=[answer]),
                ],
                config=follow,
            )
        )
        self.assertIsNone(final.function_calls)
        plain = config.model_copy(update={"thinking_config": None})
        unsigned = await live.in_thread(
            lambda: sdk.models.generate_content(
                model=MODEL, contents=[question], config=plain
            )
        )
        parts = unsigned.candidates[0].content.parts  # type: ignore[index,union-attr]
        assert parts
        self.assertTrue(all(p.thought_signature is None for p in parts))

    async def test_thoughts_first_through_the_sdk(self) -> None:
        live = await start(self, {"replies": ["Hello from the mock."]})
        sdk = client(live)
        config = types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(include_thoughts=True)
        )
        response = await live.in_thread(
            lambda: sdk.models.generate_content(
                model=MODEL, contents="Hi there", config=config
            )
        )
        parts = response.candidates[0].content.parts  # type: ignore[index,union-attr]
        assert parts is not None
        self.assertEqual([bool(p.thought) for p in parts], [True, False])
        self.assertIn("Hi there", parts[0].text or "")
        self.assertEqual(response.text, "Hello from the mock.")
        usage = response.usage_metadata
        assert usage is not None
        thoughts = tokenizer.count(parts[0].text or "", MODEL)
        self.assertEqual(usage.thoughts_token_count, thoughts)
        self.assertEqual(
            usage.candidates_token_count,
            tokenizer.count("Hello from the mock.", MODEL),
        )
        self.assertEqual(
            usage.total_token_count,
            (usage.prompt_token_count or 0)
            + thoughts
            + (usage.candidates_token_count or 0),
        )

        def stream() -> list[Any]:
            return list(
                sdk.models.generate_content_stream(
                    model=MODEL, contents="Hi there", config=config
                )
            )

        streamed = await live.in_thread(stream)
        flags = [bool(c.candidates[0].content.parts[0].thought) for c in streamed]
        self.assertTrue(flags[0])
        self.assertFalse(flags[-1])
        self.assertEqual(flags, sorted(flags, reverse=True))  # thoughts first
        text = "".join(
            c.candidates[0].content.parts[0].text or ""
            for c in streamed
            if not c.candidates[0].content.parts[0].thought
        )
        self.assertEqual(text, "Hello from the mock.")

    async def test_thoughts_counted_when_not_included(self) -> None:
        live = await start(self)
        _, body = await post(live, GENERATE, thinking(2048, shown=False))
        payload = json.loads(body)
        validated(payload)
        parts = payload["candidates"][0]["content"]["parts"]
        self.assertFalse(any(p.get("thought") for p in parts))
        self.assertGreater(payload["usageMetadata"]["thoughtsTokenCount"], 0)
        _, body = await post(live, STREAM + "?alt=sse", thinking(2048, shown=False))
        events = chunks(body)
        self.assertFalse(
            any(
                p.get("thought")
                for e in events
                for p in e["candidates"][0]["content"]["parts"]
            )
        )
        self.assertGreater(events[-1]["usageMetadata"]["thoughtsTokenCount"], 0)
        # A budget of 0 turns thinking off; without thinkingConfig there is none.
        for body_ in (thinking(0), HELLO):
            payload = json.loads((await post(live, GENERATE, body_))[1])
            self.assertNotIn("thoughtsTokenCount", payload["usageMetadata"])
            self.assertEqual(len(payload["candidates"][0]["content"]["parts"]), 1)

    async def test_thinking_config_validated(self) -> None:
        live = await start(self)
        response, body = await post(live, GENERATE, thinking(99999))
        self.assertEqual(response.code, 400)
        self.assertIn(
            "thinking budget", google_error(self, body, 400, "INVALID_ARGUMENT")
        )
        bad: dict[str, Any] = {
            **HELLO,
            "generationConfig": {"thinkingConfig": {"includeThoughts": "yes"}},
        }
        response, body = await post(live, GENERATE, bad)
        self.assertIn(
            "thinking_config.includeThoughts",
            google_error(self, body, 400, "INVALID_ARGUMENT"),
        )

    def test_thoughts_are_paced_shown_or_not(self) -> None:
        shown = list(wire.generate_stream(plan(("a", "b", "c"))))
        self.assertEqual([due for due, _ in shown], [1.0, 1.5, 2.0, 2.5, 3.0])
        first = json.loads(shown[0][1][6:])
        self.assertEqual(
            first["candidates"][0]["content"]["parts"], [{"text": "a", "thought": True}]
        )
        hidden = list(wire.generate_stream(plan(("a", "b", "c"), shown=False)))
        # The answer still waits for the thinking it does not show.
        self.assertEqual([due for due, _ in hidden], [2.5, 3.0])
        last = json.loads(hidden[-1][1][6:])
        self.assertEqual(last["usageMetadata"]["thoughtsTokenCount"], 3)
        self.assertEqual(last["usageMetadata"]["candidatesTokenCount"], 3)
        self.assertEqual(last["usageMetadata"]["totalTokenCount"], 11)


class ArrayStreamTests(TestCase):
    def test_array_framing_and_pacing(self) -> None:
        timed = list(wire.generate_array_stream(plan(())))
        self.assertEqual([due for due, _ in timed], [1.0, 1.5, 1.5])
        body = b"".join(data for _, data in timed)
        self.assertEqual(body[:2], b"[{")
        self.assertIn(b"}\n,\r\n{", body)
        self.assertEqual(body[-3:], b"}\n]")
        self.assertEqual(len(json.loads(body)), 2)

    def test_an_error_closes_the_array(self) -> None:
        error = ApiError(503, "The model is overloaded.")
        alone = json.loads(wire.array_error_event(error, 0))
        self.assertEqual(alone[0]["error"]["status"], "UNAVAILABLE")
        sent = b"".join(d for _, d in list(wire.generate_array_stream(plan(())))[:1])
        broken = json.loads(sent + wire.array_error_event(error, 1))
        self.assertEqual(broken[-1]["error"]["code"], 503)

    async def test_a_failing_stream_ends_the_array_with_the_error(self) -> None:
        live = await start(self, {"replies": ["one two three four five six"]})
        array = web_gemini.STREAM_GENERATE_CONTENT_ARRAY

        def failing(plan: Any) -> Any:
            events = wire.generate_array_stream(plan)
            yield next(events)
            raise RuntimeError("the renderer broke")

        self.patch(
            web_gemini,
            "STREAM_GENERATE_CONTENT_ARRAY",
            dataclasses.replace(array, stream=failing),
        )
        response, body = await post(live, STREAM, HELLO)
        self.assertEqual(response.code, 200)
        elements = json.loads(body)
        self.assertEqual(len(elements), 2)
        validated(elements[0])
        self.assertEqual(elements[1]["error"]["status"], "INTERNAL")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class BuiltInToolsTests(TestCase):
    async def test_built_in_tools_refused_by_name(self) -> None:
        live = await start(self)
        for tool in ("googleSearch", "codeExecution", "urlContext", "google_search"):
            body = {**HELLO, "tools": [{tool: {}}]}
            response, answer = await post(live, GENERATE, body)
            self.assertEqual(response.code, 400, tool)
            message = google_error(self, answer, 400, "INVALID_ARGUMENT")
            self.assertIn("not supported by this mock", message)
        sdk = client(live)
        config = types.GenerateContentConfig(
            tools=[types.Tool(google_search=types.GoogleSearch())]
        )
        with self.assertRaises(errors.ClientError) as caught:
            await live.in_thread(
                lambda: sdk.models.generate_content(
                    model=MODEL, contents="Hi", config=config
                )
            )
        self.assertIn("googleSearch", str(caught.exception))
