"""Rate limits as OpenAI applies them: budgets on a clock, headers, 429s, retries."""

from __future__ import annotations

import time
from typing import Any

import openai

from twisted.trial.unittest import SynchronousTestCase, TestCase

from mockai_tw.config_load import parse_config
from mockai_tw.engine.ratelimit import RateLimiter, duration
from tests.openapi import validate
from tests.support import start

CHAT = "/v1/chat/completions"
GOOD = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def limiter(**limits: Any) -> RateLimiter:
    config = parse_config(
        {"access_token": "t", "rate_limits": {"enabled": True, **limits}}, {}
    )
    return RateLimiter(config.rate_limits)


class BudgetTests(SynchronousTestCase):
    def test_requests_count_down_refuse_and_refill(self) -> None:
        limits = limiter(requests_per_minute=3)
        seen = [limits.admit("k", "gpt-4o", 10, 100.0) for _ in range(3)]
        self.assertEqual(
            [d.headers["x-ratelimit-remaining-requests"] for d in seen], ["2", "1", "0"]
        )
        self.assertTrue(all(d.error is None for d in seen))
        self.assertEqual(seen[0].headers["x-ratelimit-limit-requests"], "3")
        self.assertEqual(seen[0].headers["x-ratelimit-reset-requests"], "20s")
        refused = limits.admit("k", "gpt-4o", 10, 100.0)
        assert refused.error is not None
        self.assertEqual(refused.error.status, 429)
        self.assertEqual(refused.error.type, "requests")
        self.assertEqual(refused.error.code, "rate_limit_exceeded")
        self.assertIn(
            "on requests per min (RPM): Limit 3, Used 3, Requested 1",
            refused.error.message,
        )
        self.assertEqual(refused.error.headers["retry-after"], "20")
        self.assertEqual(refused.error.headers["retry-after-ms"], "20000")
        # Another key has its own budget; the refill is continuous.
        self.assertIsNone(limits.admit("other", "gpt-4o", 10, 100.0).error)
        self.assertIsNotNone(limits.admit("k", "gpt-4o", 10, 119.9).error)
        self.assertIsNone(limits.admit("k", "gpt-4o", 10, 120.0).error)

    def test_tokens_reserved_and_too_large(self) -> None:
        limits = limiter(tokens_per_minute=1000)
        self.assertIsNone(limits.admit("k", "m", 600, 0.0).error)
        refused = limits.admit("k", "m", 600, 0.0)
        assert refused.error is not None
        self.assertEqual(refused.error.type, "tokens")
        self.assertEqual(refused.error.headers["retry-after-ms"], "12000")
        self.assertEqual(refused.headers["x-ratelimit-remaining-tokens"], "400")
        huge = limits.admit("k", "m", 5000, 0.0)
        assert huge.error is not None
        self.assertIn("Request too large", huge.error.message)

    def test_per_model_and_window(self) -> None:
        limits = limiter(
            requests_per_minute=600,
            window_s=0.1,
            models={"gpt-4": {"requests_per_minute": 60}},
        )
        self.assertIsNone(limits.admit("k", "gpt-4o", 1, 0.0).error)
        refused = limits.admit("k", "gpt-4o", 1, 0.0)
        assert refused.error is not None
        self.assertEqual(refused.error.headers["retry-after-ms"], "100")
        self.assertIsNone(limits.admit("k", "gpt-4", 1, 0.0).error)
        self.assertIsNone(limits.admit("k", "gpt-4o", 1, 0.1).error)

    def test_duration_format(self) -> None:
        self.assertEqual(
            [duration(s) for s in (0.012, 1, 1.5, 59.9, 60, 360, 3723.2)],
            ["12ms", "1s", "1.5s", "59.9s", "1m0s", "6m0s", "1h2m4s"],
        )

    def test_disabled_sends_nothing(self) -> None:
        config = parse_config({"access_token": "t"}, {})
        self.assertEqual(
            RateLimiter(config.rate_limits).admit("k", "m", 1, 0).headers, {}
        )


class LiveRateLimitTests(TestCase):
    async def test_headers_and_429(self) -> None:
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
        first, _ = await live.json("POST", CHAT, GOOD)
        self.assertEqual(
            first.headers.getRawHeaders("x-ratelimit-remaining-requests"), ["1"]
        )
        self.assertEqual(
            first.headers.getRawHeaders("x-ratelimit-limit-tokens"), ["100000"]
        )
        await live.json("POST", CHAT, GOOD)
        refused, body = await live.json("POST", CHAT, GOOD)
        self.assertEqual(refused.code, 429)
        validate(body, "ErrorResponse")
        self.assertEqual(body["error"]["type"], "requests")
        self.assertEqual(refused.headers.getRawHeaders("retry-after"), ["30"])
        self.assertEqual(
            refused.headers.getRawHeaders("x-ratelimit-remaining-requests"), ["0"]
        )

    async def test_sdk_retries_after_the_advertised_wait(self) -> None:
        live = await start(
            self,
            {
                "rate_limits": {
                    "enabled": True,
                    "requests_per_minute": 300,
                    "window_s": 0.2,
                }
            },
        )
        client = live.sdk(max_retries=2)
        await live.in_thread(lambda: client.chat.completions.create(**GOOD))
        refused, _ = await live.json("POST", CHAT, GOOD)
        self.assertEqual(refused.code, 429)
        [wait_ms] = refused.headers.getRawHeaders("retry-after-ms")

        def timed() -> float:
            began = time.monotonic()
            client.chat.completions.create(**GOOD)
            return time.monotonic() - began

        took = await live.in_thread(timed)
        # The budget was empty: the SDK was refused, waited as told, then succeeded.
        self.assertGreaterEqual(took, int(wait_ms) / 1000 * 0.9)
        no_retry = live.sdk(max_retries=0)
        with self.assertRaises(openai.RateLimitError):
            await live.in_thread(
                lambda: [no_retry.chat.completions.create(**GOOD) for _ in range(3)]
            )
