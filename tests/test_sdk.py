"""The official ``openai`` SDK against the live server: no workaround needed."""

from __future__ import annotations

from typing import Any

import openai

from twisted.trial.unittest import TestCase

from mockai_tw.config import ORIGINAL_REPLIES
from mockai_tw.engine import tokenizer
from tests.support import start

MESSAGES: list[Any] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello"},
]


class SdkTests(TestCase):
    async def test_create(self) -> None:
        live = await start(self)
        client = live.sdk()
        completion = await live.in_thread(
            lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        )
        self.assertIn(completion.choices[0].message.content, ORIGINAL_REPLIES)
        self.assertEqual(completion.model, "gpt-4o")
        self.assertEqual(completion.choices[0].finish_reason, "stop")
        assert completion.usage is not None
        self.assertGreater(completion.usage.prompt_tokens, 0)
        self.assertEqual(
            completion.usage.total_tokens,
            completion.usage.prompt_tokens + completion.usage.completion_tokens,
        )

    async def test_raw_response_headers(self) -> None:
        live = await start(self)
        client = live.sdk()
        raw = await live.in_thread(
            lambda: client.chat.completions.with_raw_response.create(
                model="gpt-4o", messages=MESSAGES
            )
        )
        self.assertTrue(raw.request_id.startswith("req_"))
        self.assertEqual(raw.headers["openai-version"], "2020-10-01")

    async def test_stream(self) -> None:
        live = await start(self, {"stream": {"content_filter_results": True}})
        client = live.sdk()

        def consume() -> list[Any]:
            return list(
                client.chat.completions.create(
                    model="gpt-4o", messages=MESSAGES, stream=True
                )
            )

        chunks = await live.in_thread(consume)
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        self.assertIn(text, ORIGINAL_REPLIES)
        self.assertEqual(chunks[0].choices[0].delta.role, "assistant")
        self.assertEqual(chunks[-1].choices[0].finish_reason, "stop")
        self.assertEqual(len({c.id for c in chunks}), 1)

    async def test_stream_include_usage(self) -> None:
        live = await start(self, {"replies": ["Hello from the mock."]})
        client = live.sdk()

        def consume() -> list[Any]:
            return list(
                client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=MESSAGES,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            )

        chunks = await live.in_thread(consume)
        self.assertEqual(chunks[-1].choices, [])
        usage = chunks[-1].usage
        assert usage is not None
        self.assertEqual(
            usage.completion_tokens, tokenizer.count("Hello from the mock.")
        )
        self.assertTrue(all(c.usage is None for c in chunks[:-1]))

    async def test_stream_helper_accumulates(self) -> None:
        live = await start(self, {"replies": ["Accumulated text."]})
        client = live.sdk()

        def run() -> Any:
            with client.chat.completions.stream(model="gpt-4o", messages=MESSAGES) as s:
                for _ in s:
                    pass
                return s.get_final_completion()

        final = await live.in_thread(run)
        self.assertEqual(final.choices[0].message.content, "Accumulated text.")

    async def test_errors_map_to_sdk_exceptions(self) -> None:
        live = await start(self)
        bad_key = live.sdk(api_key="sk-wrong")
        with self.assertRaises(openai.AuthenticationError) as auth:
            await live.in_thread(
                lambda: bad_key.chat.completions.create(
                    model="gpt-4o", messages=MESSAGES
                )
            )
        self.assertEqual(auth.exception.code, "invalid_api_key")
        client = live.sdk()
        with self.assertRaises(openai.BadRequestError) as bad:
            await live.in_thread(
                lambda: client.chat.completions.create(model="gpt-4o", messages=[])
            )
        self.assertEqual(bad.exception.param, "messages")
        with self.assertRaises(openai.NotFoundError):
            await live.in_thread(lambda: client.get("/nothing", cast_to=object))
