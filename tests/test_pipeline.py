"""The one pipeline: admission before commitment, one order, its events.

A refused request (rate limit, a fault before headers, a 400 found while
planning) must move no rule counter and cost no reply generation a cheap
check could spare; every endpoint runs the same order.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import treq
from twisted.trial.unittest import TestCase

from tests.support import TOKEN, Live, events, start

OTHER = "sk-test-other-9876543210"


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": content}],
        **extra,
    }


def once(answer: Any = "scripted", **extra: Any) -> dict[str, Any]:
    return {
        "name": "once",
        "match": {"content": {"contains": "second"}},
        "answer": answer,
        "times": 1,
        **extra,
    }


def entry(live: Live, name: str) -> Any:
    return next((e for e in live.server.rules.entries() if e.id == name), None)


class GenerationSpy:
    """Counts the engine's reply generations (chat plans)."""

    def __init__(self, live: Live) -> None:
        self.calls = 0
        engine = live.server.engine
        real = engine.chat

        def chat(*args: Any, **kw: Any) -> Any:
            self.calls += 1
            return real(*args, **kw)

        engine.chat = chat  # type: ignore[method-assign]


class AdmissionTests(TestCase):
    async def limited(self, rules: list[dict[str, Any]], **limits: Any) -> Live:
        return await start(
            self,
            {
                "access_tokens": [OTHER],
                "rate_limits": {"enabled": True, **limits},
                "rules": rules,
            },
        )

    async def test_rate_limited_request_keeps_a_times_rule(self) -> None:
        live = await self.limited([once()], requests_per_minute=1)
        response, _ = await live.json("POST", "/v1/chat/completions", chat("first"))
        self.assertEqual(response.code, 200)
        response, body = await live.json("POST", "/v1/chat/completions", chat("second"))
        self.assertEqual(response.code, 429)
        self.assertEqual(body["error"]["code"], "rate_limit_exceeded")
        kept = entry(live, "once")
        self.assertIsNotNone(kept)
        self.assertEqual((kept.hits, kept.left), (0, 1))
        # Another key has its own budget: the scripted answer is still there.
        response, body = await live.json(
            "POST", "/v1/chat/completions", chat("second"), token=OTHER
        )
        self.assertEqual(response.code, 200)
        self.assertEqual(body["choices"][0]["message"]["content"], "scripted")
        self.assertIsNone(entry(live, "once"))

    async def test_rate_limited_request_keeps_a_sequence_position(self) -> None:
        rule = {
            "name": "seq",
            "match": {"content": {"contains": "go"}},
            "answer": {"sequence": ["one", "two", "three"]},
        }
        live = await self.limited([rule], requests_per_minute=1)
        texts = []
        for token in (TOKEN, TOKEN, OTHER):
            response, body = await live.json(
                "POST", "/v1/chat/completions", chat("go"), token=token
            )
            texts.append(
                body["choices"][0]["message"]["content"]
                if response.code == 200
                else response.code
            )
        self.assertEqual(texts, ["one", 429, "two"])

    async def test_refused_by_requests_budget_generates_nothing(self) -> None:
        live = await self.limited([], requests_per_minute=1)
        spy = GenerationSpy(live)
        await live.json("POST", "/v1/chat/completions", chat("first"))
        response, _ = await live.json("POST", "/v1/chat/completions", chat("again"))
        self.assertEqual(response.code, 429)
        self.assertEqual(spy.calls, 1)

    async def test_token_budget_with_max_tokens_is_charged_the_reply(self) -> None:
        live = await self.limited([], tokens_per_minute=1000)
        response, body = await live.json(
            "POST", "/v1/chat/completions", chat("hi", max_tokens=5)
        )
        self.assertEqual(response.code, 200)
        prompt = body["usage"]["prompt_tokens"]
        remaining = response.headers.getRawHeaders("x-ratelimit-remaining-tokens")
        self.assertEqual(remaining, [str(1000 - prompt - 5)])

    async def test_scripted_error_refused_by_the_limit_stays(self) -> None:
        live = await self.limited(
            [once({"error": {"status": 400, "message": "scripted no"}})],
            requests_per_minute=1,
        )
        await live.json("POST", "/v1/chat/completions", chat("first"))
        response, _ = await live.json("POST", "/v1/chat/completions", chat("second"))
        self.assertEqual(response.code, 429)
        self.assertIsNotNone(entry(live, "once"))
        response, body = await live.json(
            "POST", "/v1/chat/completions", chat("second"), token=OTHER
        )
        self.assertEqual(response.code, 400)
        self.assertEqual(body["error"]["message"], "scripted no")
        self.assertIsNone(entry(live, "once"))


class FaultAdmissionTests(TestCase):
    async def test_fault_before_headers_keeps_the_rule_and_generates_nothing(
        self,
    ) -> None:
        live = await start(self, {"faults": {"header": True}, "rules": [once()]})
        spy = GenerationSpy(live)
        for path, body in (
            ("/v1/chat/completions", chat("second")),
            ("/v1/responses", {"model": "gpt-4o-mini", "input": "second"}),
            (
                "/v1/completions",
                {"model": "gpt-3.5-turbo-instruct", "prompt": "second"},
            ),
        ):
            response, answer = await live.json(
                "POST", path, body, headers={"x-mock-fault": "http_503"}
            )
            self.assertEqual(response.code, 503, path)
            self.assertEqual(answer["error"]["type"], "server_error")
        self.assertEqual(spy.calls, 0)
        kept = entry(live, "once")
        self.assertEqual((kept.hits, kept.left), (0, 1))
        self.assertEqual(live.server.faults.counts, {"http_503": 3})
        response, answer = await live.json(
            "POST", "/v1/chat/completions", chat("second")
        )
        self.assertEqual(answer["choices"][0]["message"]["content"], "scripted")
        self.assertIsNone(entry(live, "once"))

    async def test_rule_dealt_fault_consumes_nothing_when_it_refuses(self) -> None:
        # The rule itself deals a 500: the request is refused before headers,
        # so its times are not spent; the next one gets the same fault again.
        live = await start(self, {"rules": [once(fault="http_500", times=2)]})
        codes = []
        for _ in range(3):
            response, _ = await live.json(
                "POST", "/v1/chat/completions", chat("second")
            )
            codes.append(response.code)
        self.assertEqual(codes, [500, 500, 500])
        kept = entry(live, "once")
        self.assertEqual((kept.hits, kept.left), (0, 2))

    async def test_bad_schema_found_while_planning_consumes_nothing(self) -> None:
        live = await start(self, {"rules": [once()]})
        body = chat(
            "second",
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": {"type": "nonsense"}},
            },
        )
        response, answer = await live.json("POST", "/v1/chat/completions", body)
        self.assertEqual(response.code, 400)
        self.assertEqual(answer["error"]["param"], "response_format.json_schema.schema")
        kept = entry(live, "once")
        self.assertEqual((kept.hits, kept.left), (0, 1))


class HookTests(TestCase):
    async def test_events_in_order_for_an_answer_and_an_error(self) -> None:
        live = await start(self)
        seen: list[tuple[str, Any]] = []
        for event in ("admitted", "first_byte", "last_byte", "error"):
            live.server.hooks.on(
                event,
                lambda request, *rest, event=event: seen.append(
                    (event, rest[0] if rest else None)
                ),
            )
        response, _ = await live.json("POST", "/v1/chat/completions", chat("hi"))
        self.assertEqual(response.code, 200)
        self.assertEqual(
            seen, [("admitted", None), ("first_byte", 200), ("last_byte", None)]
        )
        seen.clear()
        response, _ = await live.json("POST", "/v1/chat/completions", {"model": 1})
        self.assertEqual(response.code, 400)
        self.assertEqual([e for e, _ in seen], ["error", "first_byte", "last_byte"])
        self.assertEqual(seen[0][1].status, 400)

    async def test_streamed_chunks_are_reported(self) -> None:
        live = await start(self)
        sizes: list[int] = []
        live.server.hooks.on("chunk", lambda request, size: sizes.append(size))
        response = await live.request(
            "POST", "/v1/chat/completions", chat("hi", stream=True)
        )
        body = await treq.content(response)
        self.assertGreater(len(sizes), 0)
        self.assertEqual(sum(sizes), len(body))

    async def test_a_failing_listener_is_logged_and_harmless(self) -> None:
        live = await start(self)

        def broken(request: Any) -> None:
            raise RuntimeError("listener broke")

        live.server.hooks.on("admitted", broken)
        response, body = await live.json("POST", "/v1/chat/completions", chat("hi"))
        self.assertEqual(response.code, 200)
        self.assertIn("choices", body)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class FailingStreamTests(TestCase):
    async def test_a_stream_that_fails_ends_with_an_error_event_alone(self) -> None:
        live = await start(self, {"stream": {"interval_ms": 1}})
        root: Any = live.server.site.resource
        resource = root.children[b"v1"].children[b"chat"].children[b"completions"]
        healthy = resource.endpoint

        def broken(plan: Any) -> Iterator[Any]:
            events = healthy.stream(plan)
            yield next(events)
            raise ValueError("a renderer broke")

        resource.endpoint = dataclasses.replace(healthy, stream=broken)
        response = await live.request(
            "POST", "/v1/chat/completions", chat("hi", stream=True)
        )
        self.assertEqual(response.code, 200)
        payloads = events(await treq.content(response))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(json.loads(payloads[0])["object"], "chat.completion.chunk")
        error = json.loads(payloads[-1])["error"]
        self.assertEqual(error["type"], "server_error")
        self.assertEqual(set(error), {"message", "type", "param", "code"})
        # The SDK sees an APIError, not a hang.
        import openai

        client = live.sdk()

        def consume() -> None:
            for _ in client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
            ):
                pass

        with self.assertRaises(openai.APIError):
            await live.in_thread(consume)
        self.flushLoggedErrors(ValueError)
        # Later streams, on the healthy description again, are untouched.
        resource.endpoint = healthy
        response = await live.request(
            "POST", "/v1/chat/completions", chat("hi", stream=True)
        )
        self.assertEqual(events(await treq.content(response))[-1], b"[DONE]")
        self.assertFalse(live.server.ticker.streams)
