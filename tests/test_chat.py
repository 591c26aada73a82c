"""Chat completions on a live listener, validated against OpenAI's schemas."""

from __future__ import annotations

import json
from typing import Any

import treq
from twisted.trial.unittest import TestCase

from mockai_tw.config import ORIGINAL_REPLIES
from mockai_tw.engine import tokenizer
from tests.openapi import validate
from tests.support import Live, events, start

HELLO: dict[str, Any] = {
    "model": "gpt-4o-mini",
    "messages": [{"role": "user", "content": "Hello there"}],
}


async def stream(live: Live, body: dict[str, Any]) -> tuple[Any, list[Any]]:
    """POST a streaming request; return the response and the decoded chunks."""
    response = await live.request(
        "POST", "/v1/chat/completions", {**body, "stream": True}
    )
    payloads = events(await treq.content(response))
    assert payloads[-1] == b"[DONE]", payloads[-1]
    chunks = [json.loads(p) for p in payloads[:-1]]
    for chunk in chunks:
        validate(chunk, "CreateChatCompletionStreamResponse")
    return response, chunks


class NonStreamTests(TestCase):
    async def test_shape(self) -> None:
        live = await start(self)
        response, body = await live.json("POST", "/v1/chat/completions", HELLO)
        self.assertEqual(response.code, 200)
        validate(body, "CreateChatCompletionResponse")
        self.assertEqual(
            response.headers.getRawHeaders("content-type"), ["application/json"]
        )
        self.assertTrue(body["id"].startswith("chatcmpl-"))
        self.assertEqual(body["object"], "chat.completion")
        self.assertEqual(body["model"], "gpt-4o-mini")
        self.assertEqual(body["system_fingerprint"], "fp_6d2f1a9c0b")
        [choice] = body["choices"]
        self.assertEqual(choice["index"], 0)
        self.assertEqual(choice["finish_reason"], "stop")
        self.assertIsNone(choice["logprobs"])
        message = choice["message"]
        self.assertEqual(message["role"], "assistant")
        self.assertIsNone(message["refusal"])
        self.assertIn(message["content"], ORIGINAL_REPLIES)
        self.assertNotIn("content_filter_results", choice)

    async def test_usage_is_counted_from_prompt_and_reply(self) -> None:
        live = await start(self, {"replies": ["One two three four five."]})
        long_prompt: dict[str, Any] = dict(
            HELLO, messages=[{"role": "user", "content": "word " * 50}]
        )
        _, short = await live.json("POST", "/v1/chat/completions", HELLO)
        _, long = await live.json("POST", "/v1/chat/completions", long_prompt)
        reply = tokenizer.count("One two three four five.")
        for body, messages in (
            (short, HELLO["messages"]),
            (long, long_prompt["messages"]),
        ):
            usage = body["usage"]
            self.assertEqual(usage["completion_tokens"], reply)
            self.assertEqual(usage["prompt_tokens"], tokenizer.count_messages(messages))
            self.assertEqual(
                usage["total_tokens"],
                usage["prompt_tokens"] + usage["completion_tokens"],
            )
        self.assertGreater(
            long["usage"]["prompt_tokens"], short["usage"]["prompt_tokens"] + 40
        )

    async def test_replies_are_picked_from_the_config(self) -> None:
        replies = ["alpha", "beta", "gamma"]
        live = await start(self, {"replies": replies, "seed": 7})
        seen = set()
        for _ in range(30):
            _, body = await live.json("POST", "/v1/chat/completions", HELLO)
            seen.add(body["choices"][0]["message"]["content"])
        self.assertEqual(seen, set(replies))

    async def test_headers_every_response_carries(self) -> None:
        live = await start(self)
        response, _ = await live.json("POST", "/v1/chat/completions", HELLO)
        [request_id] = response.headers.getRawHeaders("x-request-id")
        self.assertRegex(request_id, r"^req_[0-9a-f]{32}$")
        self.assertEqual(
            response.headers.getRawHeaders("openai-version"), ["2020-10-01"]
        )
        [ms] = response.headers.getRawHeaders("openai-processing-ms")
        self.assertTrue(ms.isdigit())

    async def test_n_stop_and_max_tokens(self) -> None:
        live = await start(
            self, {"replies": ["The quick brown fox jumps over the lazy dog."]}
        )
        _, body = await live.json("POST", "/v1/chat/completions", {**HELLO, "n": 3})
        validate(body, "CreateChatCompletionResponse")
        self.assertEqual([c["index"] for c in body["choices"]], [0, 1, 2])
        _, body = await live.json(
            "POST", "/v1/chat/completions", {**HELLO, "stop": [" fox"]}
        )
        self.assertEqual(body["choices"][0]["message"]["content"], "The quick brown")
        self.assertEqual(body["choices"][0]["finish_reason"], "stop")
        _, body = await live.json(
            "POST", "/v1/chat/completions", {**HELLO, "max_tokens": 3}
        )
        self.assertEqual(body["choices"][0]["message"]["content"], "The quick brown")
        self.assertEqual(body["choices"][0]["finish_reason"], "length")
        self.assertEqual(body["usage"]["completion_tokens"], 3)


class StreamTests(TestCase):
    async def test_event_stream(self) -> None:
        live = await start(self, {"replies": ["Hi!"]})
        response, chunks = await stream(live, HELLO)
        self.assertEqual(response.code, 200)
        self.assertEqual(
            response.headers.getRawHeaders("content-type"),
            ["text/event-stream; charset=utf-8"],
        )
        self.assertIsNone(response.headers.getRawHeaders("content-length"))
        self.assertEqual(len({(c["id"], c["created"], c["model"]) for c in chunks}), 1)
        self.assertTrue(chunks[0]["id"].startswith("chatcmpl-"))
        self.assertEqual(
            [c["choices"][0]["delta"] for c in chunks],
            [
                {"role": "assistant", "content": "", "refusal": None},
                {"content": "H"},
                {"content": "i"},
                {"content": "!"},
                {},
            ],
        )
        self.assertEqual(
            [c["choices"][0]["finish_reason"] for c in chunks], [None] * 4 + ["stop"]
        )
        for chunk in chunks:
            self.assertEqual(chunk["object"], "chat.completion.chunk")
            self.assertNotIn("usage", chunk)

    async def test_include_usage(self) -> None:
        live = await start(self, {"replies": ["Hello world"]})
        _, chunks = await stream(
            live, {**HELLO, "stream_options": {"include_usage": True}}
        )
        *content, last = chunks
        for chunk in content:
            self.assertIn("usage", chunk)
            self.assertIsNone(chunk["usage"])
        self.assertEqual(last["choices"], [])
        self.assertEqual(
            last["usage"]["completion_tokens"], tokenizer.count("Hello world")
        )
        self.assertEqual(
            last["usage"]["prompt_tokens"], tokenizer.count_messages(HELLO["messages"])
        )

    async def test_original_reply_one_character_per_chunk(self) -> None:
        live = await start(self)
        _, chunks = await stream(live, HELLO)
        pieces = [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]]
        self.assertTrue(all(len(p) == 1 for p in pieces))
        self.assertIn("".join(pieces), ORIGINAL_REPLIES)

    async def test_chunking_modes(self) -> None:
        text = "Streaming works, word by word: 12345 tokens!"
        expected = {
            "char": list(text),
            "word": [
                "Streaming",
                " works,",
                " word",
                " by",
                " word:",
                " 12345",
                " tokens!",
            ],
            "token": tokenizer.pieces(text),
        }
        for mode, pieces in expected.items():
            live = await start(self, {"replies": [text], "stream": {"chunking": mode}})
            _, chunks = await stream(live, HELLO)
            got = [c["choices"][0]["delta"]["content"] for c in chunks[1:-1]]
            self.assertEqual(got, pieces, mode)

    async def test_content_filter_results_option(self) -> None:
        live = await start(self, {"stream": {"content_filter_results": True}})
        _, chunks = await stream(live, HELLO)
        for chunk in chunks:
            results = chunk["choices"][0]["content_filter_results"]
            self.assertEqual(set(results), {"hate", "self_harm", "sexual", "violence"})
            self.assertFalse(any(r["filtered"] for r in results.values()))

    async def test_n_interleaves(self) -> None:
        live = await start(self, {"replies": ["ab"]})
        _, chunks = await stream(live, {**HELLO, "n": 2})
        order = [(c["choices"][0]["index"], c["choices"][0]["delta"]) for c in chunks]
        self.assertEqual(
            order,
            [
                (0, {"role": "assistant", "content": "", "refusal": None}),
                (1, {"role": "assistant", "content": "", "refusal": None}),
                (0, {"content": "a"}),
                (1, {"content": "a"}),
                (0, {"content": "b"}),
                (1, {"content": "b"}),
                (0, {}),
                (1, {}),
            ],
        )
