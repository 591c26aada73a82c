"""Faults: seeded decisions, broken event streams, and what the official SDK sees."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import openai

import treq
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mockai_tw.config_load import parse_config
from mockai_tw.engine.faults import FaultInjector, break_body, break_events
from mockai_tw.engine.plan import CLOSE, RESET
from mockai_tw.errors import ApiError
from tests.openapi import validate
from tests.support import Live, start

CHAT = "/v1/chat/completions"
GOOD: dict[str, Any] = {
    "model": "gpt-4o",
    "messages": [{"role": "user", "content": "hi"}],
}


def injector(**faults: Any) -> FaultInjector:
    return FaultInjector(
        parse_config({"access_token": "t", "faults": faults}, {}).faults
    )


def events(n: int) -> list[tuple[float, bytes]]:
    return [(i * 0.1, b'data: {"n": %d}\n\n' % i) for i in range(n)]


class DecisionTests(SynchronousTestCase):
    def test_seeded_and_weighted(self) -> None:
        runs = []
        for _ in range(2):
            faults = injector(probability=0.3, seed=5)
            runs.append(
                [f and f.kind for f in (faults.decide("m") for _ in range(200))]
            )
        self.assertEqual(runs[0], runs[1])
        hits = [k for k in runs[0] if k]
        self.assertTrue(40 < len(hits) < 80, len(hits))
        only = injector(probability=1, kinds={"drop": 1, "stall": 0})
        self.assertEqual({only.decide("m").kind for _ in range(20)}, {"drop"})  # type: ignore[union-attr]
        self.assertEqual(only.counts, {"drop": 20})

    def test_per_model_and_header(self) -> None:
        faults = injector(
            models={"gpt-4*": {"probability": 1, "kinds": {"http_503": 1}}}
        )
        self.assertIsNone(faults.decide("gpt-3.5-turbo"))
        fault = faults.decide("gpt-4o")
        assert fault is not None and fault.error is not None
        self.assertEqual(
            (fault.error.status, fault.error.headers["retry-after"]), (503, "1")
        )
        self.assertEqual(faults.decide("x", "cut_close").kind, "cut_close")  # type: ignore[union-attr]
        with self.assertRaises(ApiError):
            faults.decide("x", "explode")

    def test_breaking_events(self) -> None:
        fault = injector(cut_after=2).make("cut_reset")
        self.assertEqual(list(break_events(iter(events(5)), fault))[2:], [(0.2, RESET)])
        fault = injector(cut_after=1).make("cut_close")
        self.assertEqual(len(list(break_events(iter(events(5)), fault))), 2)
        broken = list(
            break_events(iter(events(4)), injector(cut_after=1).make("malformed"))
        )
        self.assertEqual(len(broken), 4)
        with self.assertRaises(ValueError):
            json.loads(broken[1][1][len(b"data: ") :])
        trickle = injector(trickle_bytes=3, trickle_interval_ms=10).make("trickle")
        pieces = list(break_events(iter(events(3)), trickle))
        self.assertEqual(
            b"".join(p for _, p in pieces), b"".join(e for _, e in events(3))
        )
        self.assertTrue(all(len(p) <= 3 for _, p in pieces))
        dues = [d for d, _ in pieces]
        self.assertEqual(dues, sorted(dues))
        stall = injector(stall_s=2).make("stall")
        self.assertEqual(
            [d for d, _ in break_events(iter(events(2)), stall)], [2.0, 2.1]
        )
        forever = injector(stall_s=0).make("stall")
        self.assertEqual(
            list(break_events(iter(events(2)), forever)), [(float("inf"), RESET)]
        )
        body = list(break_body(b"0123456789", 0.5, injector().make("cut_close")))
        self.assertEqual(body, [(0.5, b"01234"), (0.5, CLOSE)])


class SdkFaultTests(TestCase):
    async def live(self, **faults: Any) -> Live:
        return await start(
            self,
            {
                "faults": {"header": True, **faults},
                "replies": ["one two three four five six"],
                "stream": {"chunking": "word"},
            },
        )

    async def still_serving(self, live: Live) -> None:
        response, body = await live.json("POST", CHAT, GOOD)
        self.assertEqual(response.code, 200)
        validate(body, "CreateChatCompletionResponse")

    def client(self, live: Live, fault: str, **kw: Any) -> Any:
        return live.sdk(default_headers={"x-mock-fault": fault}, **kw)

    async def test_http_errors(self) -> None:
        live = await self.live()
        for fault, status in (
            ("http_500", 500),
            ("http_502", 502),
            ("http_503", 503),
            ("http_504", 504),
            ("overloaded", 529),
        ):
            client = self.client(live, fault)
            with self.assertRaises(openai.InternalServerError) as caught:
                await live.in_thread(partial(client.chat.completions.create, **GOOD))
            self.assertEqual(caught.exception.status_code, status)
            response, body = await live.json(
                "POST", CHAT, GOOD, headers={"x-mock-fault": fault}
            )
            self.assertEqual(response.code, status)
            validate(body, "ErrorResponse")
        await self.still_serving(live)

    async def test_drop_and_stall(self) -> None:
        live = await self.live(stall_s=30)
        with self.assertRaises(openai.APIConnectionError):
            await live.in_thread(
                lambda: self.client(live, "drop").chat.completions.create(**GOOD)
            )
        stalled = self.client(live, "stall", timeout=0.3)
        with self.assertRaises(openai.APITimeoutError):
            await live.in_thread(lambda: stalled.chat.completions.create(**GOOD))
        await self.still_serving(live)
        # The stalled request's connection was closed by the client: nothing stays open.
        self.assertEqual(live.server.ticker.streams, set())

    async def test_stream_cuts(self) -> None:
        live = await self.live(cut_after=3)

        def read(fault: str) -> list[Any]:
            got: list[Any] = []
            stream = self.client(live, fault).chat.completions.create(
                **GOOD, stream=True
            )
            try:
                for chunk in stream:
                    got.append(chunk)
            finally:
                stream.close()
            return got

        closed = await live.in_thread(lambda: read("cut_close"))
        self.assertEqual(len(closed), 3)
        self.assertIsNone(closed[-1].choices[0].finish_reason)
        with self.assertRaises(Exception) as reset:
            await live.in_thread(lambda: read("cut_reset"))
        # What an outage mid-stream gives: the transport's protocol error.
        self.assertRegex(type(reset.exception).__name__, "Protocol|Connection|Read")
        with self.assertRaises(ValueError):
            await live.in_thread(lambda: read("malformed"))
        await self.still_serving(live)

    async def test_trickle_delivers_everything(self) -> None:
        live = await self.live(trickle_bytes=64, trickle_interval_ms=1)
        client = self.client(live, "trickle")
        completion = await live.in_thread(
            lambda: client.chat.completions.create(**GOOD)
        )
        self.assertEqual(
            completion.choices[0].message.content, "one two three four five six"
        )
        chunks = await live.in_thread(
            lambda: list(client.chat.completions.create(**GOOD, stream=True))
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        self.assertEqual(text, "one two three four five six")

    async def test_raw_cut_close_has_no_done(self) -> None:
        live = await self.live(cut_after=2)
        response = await live.request(
            "POST",
            CHAT,
            {**GOOD, "stream": True},
            headers={"x-mock-fault": "cut_close"},
        )
        body = await treq.content(response)
        self.assertEqual(body.count(b"data: "), 2)
        self.assertNotIn(b"[DONE]", body)

    async def test_probability_and_counts_in_health(self) -> None:
        live = await start(
            self, {"faults": {"probability": 1, "kinds": {"http_500": 1}}}
        )
        response, _ = await live.json("POST", CHAT, GOOD)
        self.assertEqual(response.code, 500)
        _, health = await live.json("GET", "/health", token=None)
        self.assertEqual(health["faults"], {"http_500": 1})


class RuleFaultTests(TestCase):
    async def test_a_rule_deals_its_fault(self) -> None:
        live = await start(
            self,
            {
                "rules": [
                    {"match": {"content": "boom"}, "answer": "x", "fault": "http_503"},
                    {
                        "match": {"content": "cut"},
                        "answer": "one two three four five",
                        "fault": {"kind": "cut_close", "probability": 1},
                        "stream": {"chunking": "word"},
                    },
                    {
                        "match": {"content": "never"},
                        "answer": "fine",
                        "fault": {"kind": "drop", "probability": 0},
                    },
                ]
            },
        )

        def asking(text: str) -> dict[str, Any]:
            return {**GOOD, "messages": [{"role": "user", "content": text}]}

        response, body = await live.json("POST", CHAT, asking("boom"))
        self.assertEqual(response.code, 503)
        validate(body, "ErrorResponse")
        response = await live.request("POST", CHAT, {**asking("cut"), "stream": True})
        data = await treq.content(response)
        self.assertNotIn(b"[DONE]", data)
        response, body = await live.json("POST", CHAT, asking("never"))
        self.assertEqual(body["choices"][0]["message"]["content"], "fine")
        self.assertEqual(live.server.faults.counts, {"http_503": 1, "cut_close": 1})

    def test_rule_fault_is_validated(self) -> None:
        from mockai_tw.config import ConfigError

        for fault, path in (
            ("explode", "rules[0].fault"),
            ({"kind": "drop", "probability": 2}, "rules[0].fault.probability"),
            ({"kind": "drop", "odds": 1}, "rules[0].fault.odds"),
        ):
            with self.assertRaises(ConfigError) as caught:
                parse_config(
                    {"access_token": "t", "rules": [{"answer": "x", "fault": fault}]},
                    {},
                )
            self.assertTrue(
                str(caught.exception).startswith(path), str(caught.exception)
            )
