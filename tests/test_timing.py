"""The timing model: distributions, per-model pacing, overrides, delayed replies."""

from __future__ import annotations

import random
import statistics
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mockai_tw.config import Latency
from mockai_tw.config_load import parse_config
from mockai_tw.delivery import Stream, Ticker
from mockai_tw.engine.chat import Engine
from mockai_tw.engine.timing import Override, TimingModel, sample_ms
from mockai_tw.request.chat import parse_chat_request
from mockai_tw.wire.chat import chat_stream
from tests.support import start
from tests.test_delivery import FakeRequest

CHAT = "/v1/chat/completions"
BODY = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}'


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def config(timing: dict[str, Any], **extra: Any) -> Any:
    return parse_config({"access_token": "t", "timing": timing, **extra}, {})


class DistributionTests(SynchronousTestCase):
    def samples(self, latency: Latency, n: int = 20_000) -> list[float]:
        rng = random.Random(1234)
        return [sample_ms(latency, rng) for _ in range(n)]

    def test_lognormal_median_and_p99(self) -> None:
        values = self.samples(Latency(dist="lognormal", median_ms=200, p99_ms=900))
        self.assertLess(abs(statistics.median(values) - 200), 200 * 0.03)
        self.assertLess(abs(p99(values) - 900), 900 * 0.06)

    def test_normal_uniform_fixed_rate(self) -> None:
        normal = self.samples(Latency(dist="normal", ms=50, stddev_ms=5))
        self.assertLess(abs(statistics.mean(normal) - 50), 0.2)
        self.assertLess(abs(statistics.stdev(normal) - 5), 0.2)
        uniform = self.samples(Latency(dist="uniform", min_ms=10, max_ms=30))
        self.assertGreaterEqual(min(uniform), 10)
        self.assertLessEqual(max(uniform), 30)
        self.assertLess(abs(statistics.mean(uniform) - 20), 0.2)
        self.assertEqual(set(self.samples(Latency(ms=7), 10)), {7.0})
        self.assertEqual(set(self.samples(Latency(tokens_per_second=50), 10)), {20.0})

    def test_seeded_replay(self) -> None:
        timing = {"seed": 9, "itl": {"dist": "normal", "ms": 20, "stddev_ms": 4}}
        one = TimingModel(config(timing)).pacing("gpt-4o", 30)
        two = TimingModel(config(timing)).pacing("gpt-4o", 30)
        self.assertEqual(one, two)
        self.assertEqual(len(one.offsets), 30)

    def test_bad_distributions_name_the_key(self) -> None:
        from mockai_tw.config import ConfigError

        bad: list[tuple[dict[str, Any], str]] = [
            (
                {"ttft": {"dist": "lognormal", "median_ms": 100, "p99_ms": 50}},
                "timing.ttft.p99_ms",
            ),
            (
                {"itl": {"dist": "uniform", "min_ms": 9, "max_ms": 1}},
                "timing.itl.max_ms",
            ),
            ({"itl": {"dist": "normal", "ms": 9}}, "timing.itl.stddev_ms"),
            ({"itl": {"dist": "zipf"}}, "timing.itl.dist"),
            (
                {"models": {"gpt-4o": {"ttft": {"ms": -1}}}},
                "timing.models.gpt-4o.ttft.ms",
            ),
        ]
        for timing, path in bad:
            with self.assertRaises(ConfigError) as caught:
                config(timing)
            self.assertTrue(
                str(caught.exception).startswith(path), str(caught.exception)
            )


class PacingTests(SynchronousTestCase):
    def test_per_model_glob_and_defaults(self) -> None:
        model = TimingModel(
            config(
                {
                    "ttft": {"ms": 100},
                    "models": {"gpt-4o*": {"itl": {"tokens_per_second": 50}}},
                },
                stream={"interval_ms": 30},
            )
        )
        fast = model.pacing("gpt-4o-mini", 5)
        self.assertEqual((fast.first_s, fast.interval_s), (0.1, 0.02))
        other = model.pacing("gpt-4", 5)
        self.assertEqual((other.first_s, other.interval_s), (0.1, 0.03))

    def test_overrides_disabled_and_non_stream_delay(self) -> None:
        model = TimingModel(config({"ttft": {"ms": 100}, "non_stream": True}))
        pacing = model.pacing("gpt-4o", 11, Override(ttft_ms=5, itl_ms=10))
        self.assertEqual((pacing.first_s, pacing.interval_s), (0.005, 0.01))
        self.assertAlmostEqual(model.non_stream_delay(pacing, 11), 0.105)
        off = TimingModel(config({"enabled": False, "non_stream": True}))
        self.assertEqual(off.non_stream_delay(off.pacing("gpt-4o", 11), 11), 0.0)
        self.assertEqual(off.pacing("gpt-4o", 11).due(10), 0.0)

    def test_stream_paced_on_a_clock(self) -> None:
        cfg = config(
            {"ttft": {"ms": 300}, "itl": {"ms": 20}},
            replies=["abcde"],
        )
        plan = Engine(cfg).chat(
            parse_chat_request(BODY.replace(b"}]}", b'}], "stream": true}')), 0
        )
        clock = Clock()
        ticker = Ticker(clock, 0.005)
        request = FakeRequest(clock)
        ticker.add(Stream(request, chat_stream(plan), clock.seconds()))
        self.assertEqual(request.writes, [])
        clock.pump([0.001] * 500)
        times = [round(t, 3) for t, data in request.writes if b'"content":"' in data]
        self.assertEqual(times, [0.3, 0.32, 0.34, 0.36, 0.38])
        self.assertTrue(request.finished)


class LiveTimingTests(TestCase):
    async def test_timing_off_makes_streams_instant(self) -> None:
        live = await start(
            self, {"timing": {"enabled": False}, "stream": {"interval_ms": 60_000}}
        )
        response = await live.request(
            "POST", CHAT, raw=BODY.replace(b"}]}", b'}], "stream": true}')
        )
        import treq

        body = await treq.content(response)
        self.assertTrue(body.endswith(b"data: [DONE]\n\n"))

    async def test_header_overrides(self) -> None:
        live = await start(
            self,
            {
                "timing": {
                    "header_overrides": True,
                    "non_stream": True,
                    "ttft": {"ms": 60_000},
                },
            },
        )
        headers = {"x-mock-ttft-ms": "0", "x-mock-itl-ms": "0"}
        response, body = await live.json("POST", CHAT, raw=BODY, headers=headers)
        self.assertEqual(response.code, 200, body)
        response, body = await live.json(
            "POST", CHAT, raw=BODY, headers={"x-mock-ttft-ms": "soon"}
        )
        self.assertEqual(response.code, 400)
        self.assertIn("x-mock-ttft-ms", body["error"]["message"])
