"""``GET /metrics``: Prometheus text format, counted from the pipeline's hooks."""

from __future__ import annotations

from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

import treq
from twisted.trial.unittest import TestCase

from mockai_tw.config import ConfigError
from tests.support import TOKEN, Live, start

CHAT = "/v1/chat/completions"
MODEL = "gpt-4o-mini"


def chat(stream: bool = False, model: str = MODEL) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }


async def scrape(live: Live, token: str | None = None) -> dict[str, Any]:
    """Samples by name, then by their labels (``worker`` aside)."""
    response = await live.request("GET", "/metrics", token=token)
    body = (await treq.content(response)).decode()
    assert response.code == 200, body
    assert response.headers.getRawHeaders("content-type")[0].startswith("text/plain")
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            out.setdefault(sample.name, {})[labels] = sample.value
    return out


def value(samples: dict[str, Any], name: str, **labels: str) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


class MetricsTests(TestCase):
    async def test_counts_exactly_the_requests_sent(self) -> None:
        # Paced: a stream is several chunks, not one write.
        live = await start(self, {"stream": {"interval_ms": 2}})
        for _ in range(3):
            response, _ = await live.json("POST", CHAT, chat())
            self.assertEqual(response.code, 200)
        for _ in range(2):
            response = await live.request("POST", CHAT, chat(stream=True))
            await treq.content(response)
        response, _ = await live.json(
            "POST", "/v1/embeddings", {"model": "text-embedding-3-small", "input": "x"}
        )
        self.assertEqual(response.code, 200)
        response, _ = await live.json("POST", CHAT, chat(), token=None)
        self.assertEqual(response.code, 401)
        await live.request("GET", "/health")
        samples = await scrape(live)
        requests = samples["mockai_requests_total"]
        self.assertEqual(
            requests,
            {
                (("endpoint", "chat"), ("model", MODEL), ("status", "200")): 5.0,
                (
                    ("endpoint", "embeddings"),
                    ("model", "text-embedding-3-small"),
                    ("status", "200"),
                ): 1.0,
                # Refused at /v1: its body was never read.
                (("endpoint", "chat"), ("model", ""), ("status", "401")): 1.0,
            },
        )
        ttft = value(
            samples,
            "mockai_time_to_first_token_seconds_count",
            endpoint="chat",
            model=MODEL,
        )
        self.assertEqual(ttft, 2.0)
        self.assertGreater(
            value(
                samples,
                "mockai_inter_token_latency_seconds_count",
                endpoint="chat",
                model=MODEL,
            ),
            0,
        )
        self.assertEqual(
            value(
                samples,
                "mockai_request_duration_seconds_count",
                endpoint="chat",
                model=MODEL,
            ),
            5.0,
        )
        self.assertGreater(value(samples, "mockai_prompt_tokens_total", model=MODEL), 0)
        self.assertGreater(
            value(samples, "mockai_completion_tokens_total", model=MODEL), 0
        )
        self.assertEqual(value(samples, "mockai_streams_open"), 0.0)
        self.assertEqual(
            value(samples, "mockai_journal_records"), float(len(live.server.journal))
        )
        self.assertEqual(
            value(samples, "mockai_journal_bytes"), float(live.server.journal.held)
        )
        self.assertNotIn("vllm:num_requests_running", samples)

    async def test_faults_and_rate_limits(self) -> None:
        live = await start(
            self,
            {
                "faults": {"header": True},
                "rate_limits": {"enabled": True, "requests_per_minute": 1},
            },
        )
        response, _ = await live.json(
            "POST", CHAT, chat(), headers={"x-mock-fault": "http_500"}
        )
        self.assertEqual(response.code, 500)
        response, _ = await live.json("POST", CHAT, chat())
        self.assertEqual(response.code, 429)
        samples = await scrape(live)
        self.assertEqual(
            value(samples, "mockai_faults_injected_total", kind="http_500"), 1.0
        )
        self.assertEqual(
            value(samples, "mockai_rate_limit_rejections_total", endpoint="chat"), 1.0
        )
        self.assertEqual(
            value(
                samples,
                "mockai_requests_total",
                endpoint="chat",
                model=MODEL,
                status="429",
            ),
            1.0,
        )

    async def test_rule_hits(self) -> None:
        live = await start(
            self,
            {"rules": [{"name": "greet", "match": {"content": "hi"}, "answer": "yo"}]},
        )
        await live.json("POST", CHAT, chat())
        samples = await scrape(live)
        self.assertEqual(value(samples, "mockai_rule_hits_total", rule="greet"), 1.0)

    async def test_reloads_by_outcome(self) -> None:
        live = await start(self)
        path = live.server.config_path
        assert path is not None
        live.server.reload()
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump({"access_token": TOKEN, "seed": "not a number"}, f)
        with self.assertRaises(ConfigError):
            live.server.reload()
        samples = await scrape(live)
        self.assertEqual(value(samples, "mockai_config_reloads_total", outcome="ok"), 1)
        self.assertEqual(
            value(samples, "mockai_config_reloads_total", outcome="refused"), 1
        )

    async def test_token_guards_the_scrape(self) -> None:
        live = await start(self, {"metrics": {"token": "scrape-0123456789"}})
        for token in (None, TOKEN):
            response, body = await live.json("GET", "/metrics", token=token)
            self.assertEqual(response.code, 401)
            self.assertIn("message", body["error"])
        await scrape(live, token="scrape-0123456789")

    async def test_disabled_is_a_404_and_subscribes_nothing(self) -> None:
        live = await start(self, {"metrics": {"enabled": False}})
        response, body = await live.json("GET", "/metrics")
        self.assertEqual(response.code, 404)
        self.assertEqual(body["error"]["message"], "Invalid URL (GET /metrics)")
        metrics = live.server.metrics
        for listeners in live.server.hooks.listeners.values():
            for listener in listeners:
                self.assertIsNot(getattr(listener, "__self__", None), metrics)

    async def test_vllm_names(self) -> None:
        live = await start(
            self, {"metrics": {"naming": "vllm"}, "stream": {"interval_ms": 2}}
        )
        response = await live.request("POST", CHAT, chat(stream=True))
        await treq.content(response)
        samples = await scrape(live)
        for name in (
            "vllm:num_requests_running",
            "vllm:num_requests_waiting",
            "vllm:time_to_first_token_seconds_count",
            "vllm:inter_token_latency_seconds_count",
            "vllm:e2e_request_latency_seconds_count",
            "vllm:prompt_tokens_total",
            "vllm:generation_tokens_total",
        ):
            self.assertIn(name, samples, name)
        self.assertEqual(
            value(samples, "vllm:time_to_first_token_seconds_count", model_name=MODEL),
            1.0,
        )
        self.assertEqual(
            value(samples, "vllm:num_requests_running", model_name=MODEL), 0.0
        )
        # Every gap between the stream's writes, under both names.
        gaps = value(
            samples,
            "mockai_inter_token_latency_seconds_count",
            endpoint="chat",
            model=MODEL,
        )
        self.assertGreater(gaps, 0.0)
        self.assertEqual(
            value(samples, "vllm:inter_token_latency_seconds_count", model_name=MODEL),
            gaps,
        )
        self.assertIn("mockai_requests_total", samples)

    def test_workers_figures_are_summed(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram
        from prometheus_client.exposition import generate_latest

        from mockai_tw.metrics import merge

        def worker(hits: dict[str, int], latencies: list[float]) -> bytes:
            registry = CollectorRegistry()
            counter = Counter("r", "r", ("model",), registry=registry)
            for model, n in hits.items():
                counter.labels(model).inc(n)
            histogram = Histogram("d", "d", buckets=(0.1, 1.0), registry=registry)
            for seconds in latencies:
                histogram.observe(seconds)
            return generate_latest(registry)

        text = merge(
            [worker({"a": 2}, [0.05]), worker({"a": 3, "b": 1}, [0.5, 2.0])]
        ).decode()
        samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        created: list[float] = []
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                labels = tuple(sorted(sample.labels.items()))
                samples.setdefault(sample.name, {})[labels] = sample.value
                if sample.name.endswith("_created"):
                    created.append(sample.value)
        self.assertEqual(value(samples, "r_total", model="a"), 5.0)
        self.assertEqual(value(samples, "r_total", model="b"), 1.0)
        self.assertEqual(value(samples, "d_bucket", le="0.1"), 1.0)
        self.assertEqual(value(samples, "d_bucket", le="1.0"), 2.0)
        self.assertEqual(value(samples, "d_bucket", le="+Inf"), 3.0)
        self.assertEqual(value(samples, "d_count"), 3.0)
        self.assertAlmostEqual(value(samples, "d_sum"), 2.55)
        self.assertEqual(value(samples, "mockai_metrics_workers"), 2.0)
        # The earliest creation time, not a sum of timestamps.
        self.assertTrue(all(c < 4_000_000_000 for c in created), created)

    def test_token_is_never_echoed(self) -> None:
        from mockai_tw.config_load import parse_config

        with self.assertRaises(ConfigError) as caught:
            parse_config({"access_token": "t", "metrics": {"token": 98765432109}}, {})
        self.assertEqual(
            str(caught.exception), "metrics.token: must be a string, got a number"
        )

    async def test_reload_turns_it_off_and_on(self) -> None:
        import dataclasses

        live = await start(self)
        server = live.server
        config = server.config
        off = dataclasses.replace(
            config, metrics=dataclasses.replace(config.metrics, enabled=False)
        )
        server.apply(off)
        self.assertEqual(server.hooks.listeners["first_chunk"], [])
        response = await live.request("GET", "/metrics")
        await treq.content(response)
        self.assertEqual(response.code, 404)
        server.apply(config)
        server.apply(config)
        self.assertEqual(len(server.hooks.listeners["first_chunk"]), 1)
        await scrape(live)

    async def test_counts_are_exact_at_any_scrape(self) -> None:
        # Counters add up between scrapes and fold in when one reads them.
        import dataclasses

        live = await start(self)
        server = live.server

        def requests(samples: dict[str, Any]) -> float:
            return value(
                samples,
                "mockai_requests_total",
                endpoint="chat",
                model=MODEL,
                status="200",
            )

        def tokens(samples: dict[str, Any]) -> tuple[float, float]:
            return (
                value(samples, "mockai_prompt_tokens_total", model=MODEL),
                value(samples, "mockai_completion_tokens_total", model=MODEL),
            )

        def durations(samples: dict[str, Any]) -> float:
            name = "mockai_request_duration_seconds_count"
            return value(samples, name, endpoint="chat", model=MODEL)

        # The tokens each counted reply reported (its usage).
        sent = [0, 0]

        async def send(counted: bool = True) -> None:
            response, body = await live.json("POST", CHAT, chat())
            self.assertEqual(response.code, 200)
            if counted:
                sent[0] += body["usage"]["prompt_tokens"]
                sent[1] += body["usage"]["completion_tokens"]

        for _ in range(3):
            await send()
        first = await scrape(live)
        self.assertEqual(requests(first), 3.0)
        self.assertEqual(tokens(first), (sent[0], sent[1]))
        self.assertEqual(durations(first), 3.0)
        # Read again with nothing in between: the same figures, not twice them.
        again = await scrape(live)
        self.assertEqual(requests(again), 3.0)
        self.assertEqual(tokens(again), (sent[0], sent[1]))
        self.assertEqual(durations(again), 3.0)
        # Off (requests then are not counted), then on again: the totals go on.
        config = server.config
        off = dataclasses.replace(
            config, metrics=dataclasses.replace(config.metrics, enabled=False)
        )
        await send()
        server.apply(off)
        await send(counted=False)
        server.apply(config)
        await send()
        samples = await scrape(live)
        self.assertEqual(requests(samples), 5.0)
        self.assertEqual(tokens(samples), (sent[0], sent[1]))
        self.assertEqual(durations(samples), 5.0)

    def test_pending_chunk_gaps_fold_into_prometheus_client(self) -> None:
        # A stream's first chunk adds a time to it, every other a gap; they
        # are observed in batches, and all of them before a read.
        from twisted.internet.task import Clock

        from mockai_tw.config_load import parse_config
        from mockai_tw.hooks import Hooks
        from mockai_tw.journal import Journal
        from mockai_tw.metrics import OBSERVE_BATCH, Metrics
        from tests.test_stream_start import _chunk, _streaming

        hooks = Hooks()
        clock = Clock()
        metrics = Metrics(hooks, clock, Journal())
        metrics.follow(parse_config({"access_token": "t"}, {}))
        streams = [_streaming(MODEL) for _ in range(2)]
        for request in streams:
            hooks.emit("first_byte", request, 200)
            _chunk(hooks, request)
        gaps = OBSERVE_BATCH + 5
        for _ in range(gaps):
            clock.advance(0.03)
            for request in streams:
                _chunk(hooks, request)
        itl = "mockai_inter_token_latency_seconds"
        labels = {"endpoint": "chat", "model": MODEL}
        read = metrics.registry.get_sample_value
        self.assertEqual(read(f"{itl}_count", labels), 2 * gaps)
        self.assertAlmostEqual(read(f"{itl}_sum", labels) or 0, 2 * gaps * 0.03)
        self.assertEqual(read(f"{itl}_bucket", {"le": "0.02", **labels}), 0.0)
        self.assertEqual(read(f"{itl}_bucket", {"le": "0.04", **labels}), 2 * gaps)
        ttft = "mockai_time_to_first_token_seconds_count"
        self.assertEqual(read(ttft, labels), 2)
        # Read again: nothing counted twice.
        self.assertEqual(read(f"{itl}_count", labels), 2 * gaps)
        self.assertEqual(read(ttft, labels), 2)

    def test_pending_counts_fold_into_prometheus_client(self) -> None:
        # Rows hold counts and durations until a read folds them in.
        from types import SimpleNamespace

        from twisted.internet.task import Clock

        from mockai_tw.config_load import parse_config
        from mockai_tw.hooks import Hooks
        from mockai_tw.journal import Journal
        from mockai_tw.metrics import OBSERVE_BATCH, Metrics

        def config(**metrics: Any) -> Any:
            return parse_config({"access_token": "t", "metrics": metrics}, {})

        hooks = Hooks()
        clock = Clock()
        metrics = Metrics(hooks, clock, Journal())
        metrics.follow(config(naming="vllm"))
        usage = SimpleNamespace(prompt_tokens=8, completion_tokens=0)
        request = SimpleNamespace(
            path=b"/v1/chat/completions",
            api=True,
            endpoint="chat",
            model=MODEL,
            reply=SimpleNamespace(model=MODEL, usage=usage, rule=None),
            stream=None,
            code=200,
            started=0.0,
            fault=None,
            error=None,
            queue_s=None,
        )

        def served(n: int) -> None:
            # Each takes 3 ms.
            for _ in range(n):
                request.started = clock.seconds()
                hooks.emit("admitted", request)
                hooks.emit("first_byte", request, 200)
                clock.advance(0.003)
                hooks.emit("last_byte", request)

        def read(name: str, **labels: str) -> float | None:
            # prometheus_client's own reader: it goes through collect().
            return metrics.registry.get_sample_value(name, labels)

        labels = {"endpoint": "chat", "model": MODEL, "status": "200"}
        chat = {"endpoint": "chat", "model": MODEL}
        duration = "mockai_request_duration_seconds"
        served(2)
        self.assertEqual(read("mockai_requests_total", **labels), 2.0)
        self.assertEqual(read(f"{duration}_count", **chat), 2.0)
        self.assertEqual(read("mockai_prompt_tokens_total", model=MODEL), 16.0)
        self.assertEqual(read("vllm:prompt_tokens_total", model_name=MODEL), 16.0)
        self.assertEqual(read("vllm:num_requests_running", model_name=MODEL), 0.0)
        # No completion tokens: no series for them, as ever.
        self.assertIsNone(read("mockai_completion_tokens_total", model=MODEL))
        self.assertIsNone(read("vllm:generation_tokens_total", model_name=MODEL))
        # Read twice: not counted twice.
        self.assertEqual(read("mockai_requests_total", **labels), 2.0)
        self.assertEqual(read(f"{duration}_count", **chat), 2.0)
        # Past a batch of durations, and read in the middle of the next one.
        served(OBSERVE_BATCH + 1)
        n = OBSERVE_BATCH + 3
        self.assertEqual(read(f"{duration}_count", **chat), n)
        self.assertEqual(read(f"{duration}_bucket", le="0.0025", **chat), 0.0)
        self.assertEqual(read(f"{duration}_bucket", le="0.005", **chat), n)
        self.assertAlmostEqual(read(f"{duration}_sum", **chat) or 0, n * 0.003)
        e2e = "vllm:e2e_request_latency_seconds_count"
        self.assertEqual(read(e2e, model_name=MODEL), n)
        # vLLM's names off with counts pending: they land where they belong.
        served(1)
        metrics.follow(config())
        served(1)
        self.assertIsNone(read("vllm:prompt_tokens_total", model_name=MODEL))
        self.assertEqual(read("mockai_requests_total", **labels), n + 2)
        self.assertEqual(read("mockai_prompt_tokens_total", model=MODEL), 8 * (n + 2))
        metrics.follow(config(naming="vllm"))
        self.assertEqual(read(e2e, model_name=MODEL), n + 1)
        served(1)
        self.assertEqual(read(e2e, model_name=MODEL), n + 2)
        self.assertEqual(
            read("vllm:prompt_tokens_total", model_name=MODEL), 8 * (n + 2)
        )
        # Off: nothing counted, nothing lost; the exposition says the same.
        served(1)
        metrics.follow(config(enabled=False))
        served(1)
        metrics.follow(config())
        text = metrics.exposition().decode()
        samples: dict[str, Any] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = tuple(sorted(sample.labels.items()))
                samples.setdefault(sample.name, {})[key] = sample.value
        self.assertEqual(value(samples, "mockai_requests_total", **labels), n + 4)
        self.assertEqual(
            value(samples, "mockai_prompt_tokens_total", model=MODEL), 8 * (n + 4)
        )
        self.assertEqual(value(samples, f"{duration}_count", **chat), n + 4)

    def test_a_folded_batch_reads_as_each_observed(self) -> None:
        # observe_all adds per bucket and sums in order: the very same samples.
        from prometheus_client import CollectorRegistry, Histogram

        from mockai_tw.metrics import LATENCY_BUCKETS, observe_all

        amounts = [0.0, 0.001, 0.0010001, 0.3, 0.1 + 0.2, 59.9, 60.0, 61.0]
        amounts += [1e-9 * i for i in range(50)] + [float("inf"), 2.5, 0.0025]
        one, batch = CollectorRegistry(), CollectorRegistry()
        each, folded = (
            Histogram("d", "d", ("m",), buckets=LATENCY_BUCKETS, registry=r).labels("x")
            for r in (one, batch)
        )
        for amount in amounts:
            each.observe(amount)
        observe_all(folded, amounts[:20])
        observe_all(folded, amounts[20:])

        def samples(registry: Any) -> list[tuple[str, dict[str, str], float]]:
            return [
                (s.name, s.labels, s.value)
                for family in registry.collect()
                for s in family.samples
                if not s.name.endswith("_created")
            ]

        self.assertEqual(samples(batch), samples(one))
