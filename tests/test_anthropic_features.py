"""Anthropic's thinking, models listing, prompt caching and images: through
the official ``anthropic`` SDK, raw, and in the pure parts with a Clock."""

from __future__ import annotations

import base64
import json
import struct
from typing import Any

import anthropic
from anthropic.types import Message, MessageTokensCount, ModelInfo

import treq
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from mockai_tw.engine import codec, tokenizer
from mockai_tw.engine.plan import ChatPlan, ChoicePlan, Pacing, Usage
from mockai_tw.engine.prompt_cache import Breakpoint, PromptCache
from mockai_tw.engine.rules import RuleError
from mockai_tw.engine.rules.answers import AnswerParser
from mockai_tw.request import anthropic_media as media
from mockai_tw.wire.anthropic import display_name, message_body, message_stream
from tests.support import TOKEN, start
from tests.test_anthropic import (
    BODY,
    HELLO,
    MODEL,
    check_events,
    client,
    error_of,
    post,
    sse,
)

THINKING: Any = {"type": "enabled", "budget_tokens": 2048}
THOUGHTFUL: dict[str, Any] = {**BODY, "max_tokens": 4096, "thinking": THINKING}
# Comfortably over the 1024-token minimum of a cached prefix.
LONG = "The quick brown fox jumps over the lazy dog. " * 160


def png(width: int, height: int) -> str:
    """Base64 of a PNG's signature and IHDR chunk: all a size is read from."""
    ihdr = struct.pack(">II", width, height) + b"\x08\x06\x00\x00\x00"
    data = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + ihdr + b"\x00" * 8
    return base64.b64encode(data).decode()


def image_block(data: str, media_type: str = "image/png") -> dict[str, Any]:
    source = {"type": "base64", "media_type": media_type, "data": data}
    return {"type": "image", "source": source}


class ThinkingTests(TestCase):
    async def test_thinking_block_first_and_counted(self) -> None:
        live = await start(self, {"replies": ["Hello there."]})
        response, body = await post(live, "/v1/messages", THOUGHTFUL)
        self.assertEqual(response.code, 200, body)
        payload = json.loads(body)
        message = Message.model_validate(payload, strict=True)
        self.assertEqual([b.type for b in message.content], ["thinking", "text"])
        thought = message.content[0]
        assert thought.type == "thinking"
        self.assertIn("Say hello", thought.thinking)
        self.assertGreater(len(base64.b64decode(thought.signature)), 64)
        plain = json.loads((await post(live, "/v1/messages", BODY))[1])
        # Output tokens: the answer's and the thinking's.
        spent = tokenizer.count(thought.thinking, MODEL)
        self.assertEqual(
            message.usage.output_tokens, plain["usage"]["output_tokens"] + spent
        )
        assert message.usage.output_tokens_details is not None
        self.assertEqual(message.usage.output_tokens_details.thinking_tokens, spent)
        self.assertNotIn("output_tokens_details", plain["usage"])
        disabled = {**THOUGHTFUL, "thinking": {"type": "disabled"}}
        payload = json.loads((await post(live, "/v1/messages", disabled))[1])
        self.assertEqual([b["type"] for b in payload["content"]], ["text"])

    async def test_thinking_streamed_through_the_sdk_and_raw(self) -> None:
        live = await start(self, {"replies": ["Streaming with a thought."]})
        _, body = await post(live, "/v1/messages", {**THOUGHTFUL, "stream": True})
        events = sse(body)
        check_events(self, events)
        names = [(n, d.get("delta", {}).get("type")) for n, d in events]
        self.assertEqual(names[1][0], "content_block_start")
        opening = events[1][1]["content_block"]
        self.assertEqual(opening, {"type": "thinking", "thinking": "", "signature": ""})
        kinds = [k for n, k in names if n == "content_block_delta"]
        first_text = kinds.index("text_delta")
        self.assertEqual(set(kinds[: first_text - 1]), {"thinking_delta"})
        self.assertEqual(kinds[first_text - 1], "signature_delta")
        self.assertEqual(kinds.count("signature_delta"), 1)
        stops = [d["index"] for n, d in events if n == "content_block_stop"]
        self.assertEqual(stops, [0, 1])
        usage = events[-2][1]["usage"]
        self.assertEqual(
            usage["input_tokens"], events[0][1]["message"]["usage"]["input_tokens"]
        )
        self.assertGreater(
            usage["output_tokens"], usage["output_tokens_details"]["thinking_tokens"]
        )
        self.assertNotIn("output_tokens_details", events[0][1]["message"]["usage"])

        sdk = client(live)

        def consume() -> Any:
            with sdk.messages.stream(
                model=MODEL, max_tokens=4096, messages=HELLO, thinking=THINKING
            ) as stream:
                thoughts = [e.thinking for e in stream if e.type == "thinking"]
                return thoughts, stream.get_final_message()

        thoughts, final = await live.in_thread(consume)
        self.assertGreater(len(thoughts), 1)
        self.assertEqual(final.content[0].type, "thinking")
        self.assertEqual(final.content[0].thinking, "".join(thoughts))
        self.assertTrue(final.content[0].signature)
        assert final.content[1].type == "text"
        self.assertEqual(final.content[1].text, "Streaming with a thought.")

    async def test_a_rule_scripts_the_thinking(self) -> None:
        rule = {
            "match": {"endpoint": "messages", "content": {"contains": "weather"}},
            "answer": {"text": "Sunny.", "thinking": "Weather asked: {{content}}."},
        }
        live = await start(self, {"rules": [rule]})
        body = {**THOUGHTFUL, "messages": [{"role": "user", "content": "weather?"}]}
        payload = json.loads((await post(live, "/v1/messages", body))[1])
        Message.model_validate(payload, strict=True)
        self.assertEqual(payload["content"][0]["thinking"], "Weather asked: weather?.")
        self.assertEqual(payload["content"][1]["text"], "Sunny.")

    async def test_thinking_validated_as_the_real_api(self) -> None:
        live = await start(self)
        cases: list[tuple[dict[str, Any], str]] = [
            (
                {"thinking": {"type": "enabled", "budget_tokens": 1000}},
                "thinking.enabled.budget_tokens: Input should be greater than"
                " or equal to 1024",
            ),
            (
                {"thinking": {"type": "enabled"}},
                "thinking.enabled.budget_tokens: Field required",
            ),
            (
                {"thinking": {"type": "enabled", "budget_tokens": 4096}},
                "`max_tokens` must be greater than `thinking.budget_tokens`",
            ),
            ({"thinking": {"type": "sometimes"}}, "thinking: Input tag 'sometimes'"),
            ({"temperature": 0.5, "thinking": THINKING}, "`temperature` may only"),
            ({"top_k": 5, "thinking": THINKING}, "`top_k` is not supported"),
        ]
        for extra, expected in cases:
            response, body = await post(live, "/v1/messages", {**THOUGHTFUL, **extra})
            self.assertEqual(response.code, 400, extra)
            self.assertIn(expected, error_of(self, body, "invalid_request_error"))
        sdk = client(live)
        with self.assertRaises(anthropic.BadRequestError):
            await live.in_thread(
                lambda: sdk.messages.create(
                    model=MODEL,
                    max_tokens=4096,
                    messages=HELLO,
                    thinking={"type": "enabled", "budget_tokens": 10},
                )
            )

    async def test_server_tools_refused_by_name(self) -> None:
        live = await start(self)
        tool = {"type": "web_search_20250305", "name": "web_search"}
        response, body = await post(live, "/v1/messages", {**BODY, "tools": [tool]})
        self.assertEqual(response.code, 400)
        message = error_of(self, body, "invalid_request_error")
        self.assertIn("tools.0.type: server tool 'web_search_20250305'", message)

    def test_thinking_in_a_rule_is_checked_at_load(self) -> None:
        parser = AnswerParser(None, 0, frozenset())
        answer = parser.answer({"json": {"a": 1}, "thinking": "Hmm."}, "answer")
        self.assertIsNotNone(getattr(answer, "thinking", None))
        for raw in ({"error": 500, "thinking": "x"}, {"thinking": "x"}):
            with self.assertRaises(RuleError) as caught:
                parser.answer(raw, "rules[0].answer")
            self.assertIn("rules[0].answer", str(caught.exception))
        with self.assertRaises(RuleError) as caught:
            parser.answer({"text": "a", "thinking": "{{nothing}}"}, "r")
        self.assertIn("r.thinking", str(caught.exception))

    def test_thinking_is_paced_like_text(self) -> None:
        plan = ChatPlan(
            id="chatcmpl-abc",
            created=0,
            model=MODEL,
            system_fingerprint="fp",
            choices=(ChoicePlan(0, ("x", "y"), "stop", reasoning=("a", "b", "c")),),
            usage=Usage(5, 8, 3),
            pacing=Pacing(first_s=1.0, interval_s=0.5),
        )
        self.assertEqual(plan.choices[0].steps, 5)
        timed = [(due, data) for due, data in message_stream(plan)]
        thinking = [due for due, data in timed if b"thinking_delta" in data]
        self.assertEqual(thinking, [1.0, 1.5, 2.0])
        signature = [due for due, data in timed if b"signature_delta" in data]
        self.assertEqual(signature, [2.0])
        text = [due for due, data in timed if b"text_delta" in data]
        self.assertEqual(text, [2.5, 3.0])
        body = json.loads(message_body(plan))
        self.assertEqual(body["usage"]["output_tokens"], 8)
        self.assertEqual(body["content"][0]["thinking"], "abc")

    def test_usage_fields_round_trip_through_the_codec(self) -> None:
        usage = Usage(10, 4, 2, cache_read_tokens=3, cache_write_1h_tokens=5)
        adapter = codec.Codec(Usage, codec.PLAN_TYPES)
        self.assertEqual(adapter.load(adapter.dump(usage)), usage)
        # A plan without them stores exactly as before.
        self.assertEqual(
            adapter.dump(Usage(10, 4)),
            b'{"v":1,"Usage":{"prompt_tokens":10,"completion_tokens":4}}',
        )


class ModelsTests(TestCase):
    async def test_list_and_retrieve_through_the_sdk(self) -> None:
        live = await start(self)
        sdk = client(live)
        listed = await live.in_thread(lambda: list(sdk.models.list(limit=2)))
        ids = [m.id for m in listed]
        self.assertEqual(
            sorted(ids),
            sorted(
                [
                    "claude-sonnet-4-5",
                    "claude-opus-4-1",
                    "claude-haiku-4-5",
                    "claude-3-5-haiku-latest",
                ]
            ),
        )
        self.assertEqual(ids[0], "claude-haiku-4-5")  # the newest first
        one = await live.in_thread(lambda: sdk.models.retrieve("claude-sonnet-4-5"))
        self.assertEqual(one.display_name, "Claude Sonnet 4.5")
        self.assertEqual(one.created_at.isoformat(), "2025-09-29T00:00:00+00:00")
        with self.assertRaises(anthropic.NotFoundError) as caught:
            await live.in_thread(lambda: sdk.models.retrieve("claude-nothing"))
        body: Any = caught.exception.body
        self.assertEqual(body["error"]["type"], "not_found_error")

    async def test_raw_shapes_and_openai_unchanged(self) -> None:
        live = await start(self)
        headers = {"anthropic-version": "2023-06-01", "x-api-key": TOKEN}
        response = await live.request(
            "GET", "/v1/models?limit=1", token=None, headers=headers
        )
        page = json.loads(await treq.content(response))
        self.assertEqual(set(page), {"data", "has_more", "first_id", "last_id"})
        self.assertTrue(page["has_more"])
        self.assertEqual(page["first_id"], page["last_id"])
        for item in page["data"]:
            # Strict, from JSON: the datetime must be an RFC 3339 string.
            ModelInfo.model_validate_json(json.dumps(item), strict=True)
        self.assertTrue(page["data"][0]["created_at"].endswith("Z"))
        response = await live.request(
            "GET", "/v1/models/claude-opus-4-1", token=None, headers=headers
        )
        ModelInfo.model_validate_json(await treq.content(response), strict=True)
        response = await live.request(
            "GET", "/v1/models", token=None, headers={"x-api-key": "wrong"}
        )
        self.assertEqual(response.code, 401)
        error_of(self, await treq.content(response), "authentication_error")
        # OpenAI's clients see OpenAI's listing, and its 401.
        _, listing = await live.json("GET", "/v1/models")
        self.assertEqual(listing["object"], "list")
        self.assertIn("gpt-4o-mini", [m["id"] for m in listing["data"]])
        response = await live.request("GET", "/v1/models", token=None)
        self.assertEqual(response.code, 401)
        self.assertIn("param", json.loads(await treq.content(response))["error"])

    def test_display_names(self) -> None:
        self.assertEqual(
            display_name("claude-3-5-haiku-latest"), "Claude 3.5 Haiku Latest"
        )
        self.assertEqual(
            display_name("claude-sonnet-4-5-20250929"), "Claude Sonnet 4.5"
        )


class PromptCacheTests(TestCase):
    def points(self, *spec: tuple[str, int, float]) -> list[Breakpoint]:
        return [Breakpoint(key, tokens, ttl) for key, tokens, ttl in spec]

    def test_written_then_read_until_it_expires(self) -> None:
        clock = Clock()
        cache = PromptCache()
        prefix = self.points(("a", 2000, 300.0))
        first = cache.use(prefix, clock.seconds())
        self.assertEqual((first.read, first.written_5m), (0, 2000))
        clock.advance(299)
        again = cache.use(prefix, clock.seconds())
        self.assertEqual((again.read, again.written_5m), (2000, 0))
        # A read renews the five minutes.
        clock.advance(299)
        self.assertEqual(cache.use(prefix, clock.seconds()).read, 2000)
        clock.advance(301)
        late = cache.use(prefix, clock.seconds())
        self.assertEqual((late.read, late.written_5m), (0, 2000))

    def test_longest_live_prefix_read_longer_ones_written(self) -> None:
        clock = Clock()
        cache = PromptCache()
        cache.use(self.points(("tools", 1500, 3600.0)), clock.seconds())
        clock.advance(600)
        use = cache.use(
            self.points(("tools", 1500, 3600.0), ("system", 4000, 300.0)),
            clock.seconds(),
        )
        self.assertEqual((use.read, use.written_5m, use.written_1h), (1500, 2500, 0))
        fresh = PromptCache().use(
            self.points(("tools", 1500, 3600.0), ("system", 4000, 300.0)), 0.0
        )
        self.assertEqual((fresh.written_1h, fresh.written_5m), (1500, 2500))

    def test_short_prefixes_are_not_cached_and_the_lru_is_bounded(self) -> None:
        cache = PromptCache(size=2)
        self.assertEqual(cache.use(self.points(("s", 100, 300.0)), 0.0).written_5m, 0)
        for key in ("a", "b", "c"):
            cache.use(self.points((key, 2000, 300.0)), 0.0)
        self.assertEqual(len(cache), 2)
        self.assertEqual(cache.use(self.points(("a", 2000, 300.0)), 1.0).read, 0)
        self.assertEqual(cache.use(self.points(("c", 2000, 300.0)), 1.0).read, 2000)

    async def test_cache_usage_through_the_sdk(self) -> None:
        live = await start(self)
        sdk = client(live)
        system: Any = [
            {"type": "text", "text": LONG, "cache_control": {"type": "ephemeral"}}
        ]

        def ask() -> Any:
            return sdk.messages.create(
                model=MODEL, max_tokens=64, system=system, messages=HELLO
            )

        first = (await live.in_thread(ask)).usage
        counted = await live.in_thread(
            lambda: sdk.messages.count_tokens(
                model=MODEL, system=system, messages=HELLO
            )
        )
        total = counted.input_tokens
        self.assertGreater(first.cache_creation_input_tokens or 0, 1024)
        assert first.cache_creation is not None
        self.assertEqual(
            first.cache_creation.ephemeral_5m_input_tokens,
            first.cache_creation_input_tokens,
        )
        self.assertEqual(first.cache_read_input_tokens, 0)
        self.assertEqual(
            first.input_tokens + (first.cache_creation_input_tokens or 0), total
        )
        second = (await live.in_thread(ask)).usage
        self.assertEqual(
            second.cache_read_input_tokens, first.cache_creation_input_tokens
        )
        self.assertEqual(second.cache_creation_input_tokens, 0)
        self.assertEqual(second.input_tokens, first.input_tokens)
        # Another system prompt: another prefix.
        system = [{**system[0], "text": LONG + "More."}]
        third = (await live.in_thread(ask)).usage
        self.assertEqual(third.cache_read_input_tokens, 0)
        self.assertGreater(third.cache_creation_input_tokens or 0, 1024)

    async def test_cache_control_validated(self) -> None:
        live = await start(self)
        block = {"type": "text", "text": "hi"}

        def message(*controls: Any) -> dict[str, Any]:
            content = [{**block, "cache_control": c} for c in controls]
            return {**BODY, "messages": [{"role": "user", "content": content}]}

        cases = [
            (
                message({"type": "ephemeral", "ttl": "2h"}),
                "messages.0.content.0.cache_control.ttl: Input should be '5m' or '1h'",
            ),
            (
                message({"type": "persistent"}),
                "messages.0.content.0.cache_control.type: Input should be 'ephemeral'",
            ),
            (message(*[{"type": "ephemeral"}] * 5), "A maximum of 4 blocks"),
            (
                message({"type": "ephemeral"}, {"type": "ephemeral", "ttl": "1h"}),
                "a ttl='1h' cache_control block must not come after",
            ),
            (
                {**BODY, "system": [{**block, "cache_control": "yes"}]},
                "system.0.cache_control: Input should be a valid dictionary",
            ),
        ]
        for body, expected in cases:
            response, answer = await post(live, "/v1/messages", body)
            self.assertEqual(response.code, 400, body)
            self.assertIn(expected, error_of(self, answer, "invalid_request_error"))
        ok = message({"type": "ephemeral", "ttl": "1h"}, {"type": "ephemeral"})
        response, answer = await post(live, "/v1/messages", ok)
        self.assertEqual(response.code, 200, answer)


class ImageTests(TestCase):
    def test_dimensions_from_each_header(self) -> None:
        gif = b"GIF89a" + struct.pack("<HH", 320, 200)
        jpeg = (
            b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
            b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", 480, 640) + b"\x03"
        )
        webp_x = b"RIFF\x00\x00\x00\x00WEBPVP8X" + b"\x00" * 8
        webp_x += (799).to_bytes(3, "little") + (599).to_bytes(3, "little")
        lossless = b"RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00\x2f"
        lossless += ((100 - 1) | ((50 - 1) << 14)).to_bytes(4, "little")
        self.assertEqual(media.dimensions(gif), ("image/gif", (320, 200)))
        self.assertEqual(media.dimensions(jpeg), ("image/jpeg", (640, 480)))
        self.assertEqual(media.dimensions(webp_x), ("image/webp", (800, 600)))
        self.assertEqual(media.dimensions(lossless), ("image/webp", (100, 50)))
        self.assertEqual(
            media.dimensions(base64.b64decode(png(200, 150))), ("image/png", (200, 150))
        )
        self.assertIsNone(media.dimensions(b"%PDF-1.7"))

    def test_tokens_as_anthropic_documents(self) -> None:
        self.assertEqual(media.image_tokens(200, 150), 40)
        self.assertEqual(media.image_tokens(1000, 1000), 1334)
        # Scaled to a long edge of 1568, and never past the cap.
        self.assertEqual(media.image_tokens(3136, 200), 210)
        self.assertEqual(media.image_tokens(4000, 4000), media.IMAGE_MAX_TOKENS)

    async def test_image_tokens_in_usage_and_count(self) -> None:
        live = await start(self)
        content = [image_block(png(200, 150)), {"type": "text", "text": "Say hello"}]
        body = {**BODY, "messages": [{"role": "user", "content": content}]}
        response, answer = await post(live, "/v1/messages", body)
        self.assertEqual(response.code, 200, answer)
        message = Message.model_validate(json.loads(answer), strict=True)
        plain = json.loads((await post(live, "/v1/messages", BODY))[1])
        self.assertEqual(
            message.usage.input_tokens, plain["usage"]["input_tokens"] + 40
        )
        counted = body.copy()
        del counted["max_tokens"]
        _, count = await post(live, "/v1/messages/count_tokens", counted)
        self.assertEqual(
            MessageTokensCount.model_validate(
                json.loads(count), strict=True
            ).input_tokens,
            message.usage.input_tokens,
        )
        url = {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}}
        body = {**BODY, "messages": [{"role": "user", "content": [url]}]}
        payload = json.loads((await post(live, "/v1/messages", body))[1])
        self.assertGreaterEqual(payload["usage"]["input_tokens"], media.IMAGE_ESTIMATE)

    async def test_an_image_in_a_tool_result_is_checked_and_counted(self) -> None:
        live = await start(self)

        def turns(result: list[Any]) -> list[Any]:
            return [
                {"role": "user", "content": "Take a screenshot"},
                {
                    "role": "assistant",
                    "content": [
                        {
                            "type": "tool_use",
                            "id": "toolu_1",
                            "name": "shot",
                            "input": {},
                        }
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": result,
                        }
                    ],
                },
            ]

        text = [{"type": "text", "text": "done"}]
        with_image = [image_block(png(200, 150)), *text]
        usage = []
        for result in (text, with_image):
            body = {**BODY, "messages": turns(result)}
            response, answer = await post(live, "/v1/messages", body)
            self.assertEqual(response.code, 200, answer)
            usage.append(Message.model_validate_json(answer).usage.input_tokens)
        self.assertEqual(usage[1], usage[0] + 40)
        where = "messages.2.content.0.content.0"
        for bad, expected in [
            (image_block(png(2, 2), "image/jpeg"), f"{where}.source.base64.data:"),
            ({"type": "video"}, f"{where}.type: Input tag 'video'"),
        ]:
            body = {**BODY, "messages": turns([bad])}
            response, answer = await post(live, "/v1/messages", body)
            self.assertEqual(response.code, 400, answer)
            self.assertIn(expected, json.loads(answer)["error"]["message"])

    async def test_sources_validated(self) -> None:
        live = await start(self)
        at = "messages.0.content.0"
        pdf = base64.b64encode(b"%PDF-1.7\n...").decode()
        cases = [
            (
                image_block(png(2, 2), "image/bmp"),
                f"{at}.source.base64.media_type: Input should be 'image/jpeg',",
            ),
            (
                image_block(png(2, 2), "image/jpeg"),
                f"{at}.source.base64.data: Image does not match the provided"
                " media type image/jpeg",
            ),
            (image_block("not base64!"), f"{at}.source.base64.data:"),
            (
                {"type": "image", "source": {"type": "s3"}},
                f"{at}.source: Input tag 's3' found using 'type'",
            ),
            ({"type": "image"}, f"{at}.source: Field required"),
            (
                {"type": "image", "source": {"type": "url"}},
                f"{at}.source.url.url: Field required",
            ),
            (
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "text/csv", "data": pdf},
                },
                f"{at}.source.base64.media_type: Input should be 'application/pdf'",
            ),
        ]
        for block, expected in cases:
            body = {**BODY, "messages": [{"role": "user", "content": [block]}]}
            response, answer = await post(live, "/v1/messages", body)
            self.assertEqual(response.code, 400, block)
            self.assertIn(expected, error_of(self, answer, "invalid_request_error"))
        document = {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": pdf},
        }
        text_document = {
            "type": "document",
            "source": {"type": "text", "media_type": "text/plain", "data": LONG},
        }
        for block in (document, text_document):
            body = {**BODY, "messages": [{"role": "user", "content": [block]}]}
            response, answer = await post(live, "/v1/messages", body)
            self.assertEqual(response.code, 200, answer)
            usage = json.loads(answer)["usage"]
            self.assertGreater(usage["input_tokens"], 1000)
