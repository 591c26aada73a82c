"""LiteLLM as a gateway in front of the mock: its Anthropic and Gemini
providers, sync, streamed and async, reach the mock and read its answers."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from twisted.trial.unittest import TestCase

from tests.support import TOKEN, Live, start

REPLY = "Hello through the gateway."
HELLO = [{"role": "user", "content": "Say hello"}]
# LiteLLM keeps its HTTP clients (and their connections) for the process:
# closed after each answer, the server is quiet when the test ends.
CLOSE = {"Connection": "close"}


def gateway() -> Any:
    """LiteLLM, imported only here (it takes seconds), with its price map
    read locally rather than fetched."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm  # in the test extra: missing is a failure, not a skip

    litellm.telemetry = False
    return litellm


class GatewayTests(TestCase):
    async def live(self) -> tuple[Live, Any]:
        litellm = gateway()
        return await start(self, {"replies": [REPLY]}), litellm

    async def test_anthropic_through_litellm(self) -> None:
        live, litellm = await self.live()

        def call(**kw: Any) -> Any:
            return litellm.completion(
                model="anthropic/claude-sonnet-4-5",
                api_base=live.root,
                api_key=TOKEN,
                messages=HELLO,
                max_tokens=64,
                extra_headers=CLOSE,
                **kw,
            )

        response = await live.in_thread(call)
        self.assertEqual(response.choices[0].message.content, REPLY)
        self.assertGreater(response.usage.prompt_tokens, 0)
        pieces = await live.in_thread(
            lambda: [c.choices[0].delta.content or "" for c in call(stream=True)]
        )
        self.assertGreater(len(pieces), 1)
        self.assertEqual("".join(pieces), REPLY)

    async def test_gemini_through_litellm(self) -> None:
        live, litellm = await self.live()

        def call(**kw: Any) -> Any:
            return litellm.completion(
                model="gemini/gemini-2.5-flash",
                api_base=live.root + "/v1beta",
                api_key=TOKEN,
                messages=HELLO,
                extra_headers=CLOSE,
                **kw,
            )

        response = await live.in_thread(call)
        self.assertEqual(response.choices[0].message.content, REPLY)
        pieces = await live.in_thread(
            lambda: [c.choices[0].delta.content or "" for c in call(stream=True)]
        )
        self.assertEqual("".join(pieces), REPLY)

    async def test_async_completion(self) -> None:
        live, litellm = await self.live()

        def call() -> Any:
            return asyncio.run(
                litellm.acompletion(
                    model="anthropic/claude-sonnet-4-5",
                    api_base=live.root,
                    api_key=TOKEN,
                    messages=HELLO,
                    max_tokens=64,
                    extra_headers=CLOSE,
                )
            )

        response = await live.in_thread(call)
        self.assertEqual(response.choices[0].message.content, REPLY)
