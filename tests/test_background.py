"""Background responses on the server's clock (a ``task.Clock``): queued at
once, in progress at the first token, completed at the last; polled,
cancelled, and their stream resumed from ``starting_after``."""

from __future__ import annotations

import json
from typing import Any

import openai

import treq
from twisted.trial.unittest import TestCase

from tests.redisserver import RedisServer
from tests.support import Live, start
from tests.test_capacity import start_capacity
from tests.test_responses import named_events, validate

# Three pieces ("abc"): the first due at 0.5 s, then one each 0.1 s.
TIMED: dict[str, Any] = {
    "replies": ["abc"],
    "timing": {"ttft": {"ms": 500}, "itl": {"ms": 100}},
}
ASK = {"model": "gpt-4o", "input": "hi", "background": True}


async def poll(live: Live, response_id: str) -> dict[str, Any]:
    response, payload = await live.json("GET", f"/v1/responses/{response_id}")
    assert response.code == 200, payload
    validate(payload, "Response")
    return dict(payload)


def text(response: dict[str, Any]) -> str:
    return "".join(
        part["text"] for item in response["output"] for part in item["content"]
    )


async def checked_events(response: Any) -> list[dict[str, Any]]:
    assert response.code == 200
    content_type = response.headers.getRawHeaders(b"content-type")
    assert content_type == [b"text/event-stream; charset=utf-8"], content_type
    out = []
    for name, payload in named_events(await treq.content(response)):
        assert name == payload["type"], (name, payload)
        validate(payload, "ResponseStreamEvent")
        out.append(payload)
    return out


class LifeTests(TestCase):
    async def test_queued_in_progress_completed_on_the_clock(self) -> None:
        live, clock, _ = await start_capacity(self, TIMED)
        response, made = await live.json("POST", "/v1/responses", ASK)
        self.assertEqual(response.code, 200, made)
        validate(made, "Response")
        self.assertEqual((made["status"], made["background"]), ("queued", True))
        self.assertEqual(made["output"], [])
        self.assertEqual((await poll(live, made["id"]))["status"], "queued")
        clock.advance(0.49)
        self.assertEqual((await poll(live, made["id"]))["status"], "queued")
        clock.advance(0.01)
        running = await poll(live, made["id"])
        self.assertEqual(running["status"], "in_progress")
        self.assertEqual(running["output"], [])
        clock.advance(0.19)
        self.assertEqual((await poll(live, made["id"]))["status"], "in_progress")
        clock.advance(0.01)
        done = await poll(live, made["id"])
        self.assertEqual(done["status"], "completed")
        self.assertEqual(text(done), "abc")
        self.assertEqual(done["usage"]["output_tokens"], made_usage_tokens(done))
        self.assertIsNotNone(done["completed_at"])

    async def test_sdk_create_retrieve_cancel(self) -> None:
        live, clock, _ = await start_capacity(self, TIMED)
        client = live.sdk()
        made = await live.in_thread(
            lambda: client.responses.create(model="gpt-4o", input="hi", background=True)
        )
        self.assertEqual(made.status, "queued")
        clock.advance(0.5)
        got = await live.in_thread(lambda: client.responses.retrieve(made.id))
        self.assertEqual(got.status, "in_progress")
        cancelled = await live.in_thread(lambda: client.responses.cancel(made.id))
        self.assertEqual(cancelled.status, "cancelled")
        clock.advance(10)
        after = await poll(live, made.id)
        self.assertEqual(after["status"], "cancelled")
        # Cancelling again answers the same; a finished one cannot be.
        again = await live.in_thread(lambda: client.responses.cancel(made.id))
        self.assertEqual(again.status, "cancelled")
        finished = await live.in_thread(
            lambda: client.responses.create(model="gpt-4o", input="hi", background=True)
        )
        clock.advance(1)
        self.assertEqual((await poll(live, finished.id))["status"], "completed")
        with self.assertRaises(openai.BadRequestError):
            await live.in_thread(lambda: client.responses.cancel(finished.id))
        plain = await live.in_thread(
            lambda: client.responses.create(model="gpt-4o", input="hi")
        )
        with self.assertRaises(openai.BadRequestError):
            await live.in_thread(lambda: client.responses.cancel(plain.id))
        with self.assertRaises(openai.NotFoundError):
            await live.in_thread(lambda: client.responses.cancel("resp_nope"))

    async def test_a_conversation_gets_the_items_once_completed(self) -> None:
        live, clock, _ = await start_capacity(self, TIMED)
        _, made = await live.json("POST", "/v1/conversations", {})
        path = f"/v1/conversations/{made['id']}/items"
        _, started = await live.json(
            "POST", "/v1/responses", {**ASK, "conversation": made["id"]}
        )
        self.assertEqual(started["conversation"], {"id": made["id"]})
        _, before = await live.json("GET", path)
        self.assertEqual(before["data"], [])
        clock.advance(0.5)
        clock.advance(0.2)
        _, after = await live.json("GET", path + "?order=asc")
        validate(after, "ConversationItemList")
        self.assertEqual([i["role"] for i in after["data"]], ["user", "assistant"])

    async def test_background_needs_store(self) -> None:
        live = await start(self)
        response, payload = await live.json(
            "POST", "/v1/responses", {**ASK, "store": False}
        )
        self.assertEqual(response.code, 400)
        validate(payload, "ErrorResponse")
        self.assertEqual(payload["error"]["param"], "background")

    async def test_at_most_store_size_run_at_once(self) -> None:
        live, clock, _ = await start_capacity(
            self, {**TIMED, "responses": {"store_size": 2}}
        )
        for _ in range(2):
            response, _ = await live.json("POST", "/v1/responses", ASK)
            self.assertEqual(response.code, 200)
        response, payload = await live.json("POST", "/v1/responses", ASK)
        self.assertEqual(response.code, 429, payload)
        validate(payload, "ErrorResponse")
        clock.advance(1)
        response, _ = await live.json("POST", "/v1/responses", ASK)
        self.assertEqual(response.code, 200)


def made_usage_tokens(done: dict[str, Any]) -> int:
    """The output tokens a completed answer reports (its own usage, checked
    positive so the comparison above can fail)."""
    tokens = int(done["usage"]["output_tokens"])
    assert tokens > 0, done["usage"]
    return tokens


class StreamTests(TestCase):
    async def test_streamed_then_resumed_from_an_event(self) -> None:
        live, clock, seen = await start_capacity(self, TIMED)
        d = live.request("POST", "/v1/responses", {**ASK, "stream": True})
        await seen.reached("first_byte", 1)
        clock.advance(0.5)
        clock.advance(0.1)
        clock.advance(0.1)
        events = await checked_events(await d)
        self.assertEqual(
            [e["sequence_number"] for e in events], list(range(len(events)))
        )
        self.assertEqual(events[0]["type"], "response.created")
        self.assertEqual(events[0]["response"]["status"], "queued")
        self.assertEqual(
            [(e["type"], e["response"]["status"]) for e in events[1:3]],
            [("response.queued", "queued"), ("response.in_progress", "in_progress")],
        )
        self.assertEqual(events[-1]["type"], "response.completed")
        response_id = events[0]["response"]["id"]
        self.assertEqual((await poll(live, response_id))["status"], "completed")
        # Finished: the rest of the stream at once, from event 3 on.
        again = await checked_events(
            await live.request(
                "GET", f"/v1/responses/{response_id}?stream=true&starting_after=3"
            )
        )
        self.assertEqual(again, events[4:])
        client = live.sdk()
        resumed = await live.in_thread(
            lambda: [
                e.sequence_number
                for e in client.responses.retrieve(
                    response_id, stream=True, starting_after=5
                )
            ]
        )
        self.assertEqual(resumed, [e["sequence_number"] for e in events[6:]])

    async def test_resumed_while_running_is_paced_as_the_original(self) -> None:
        live, clock, seen = await start_capacity(self, TIMED)
        _, made = await live.json("POST", "/v1/responses", ASK)
        clock.advance(0.5)
        clock.advance(0.1)  # two of three deltas are out
        d = live.request(
            "GET", f"/v1/responses/{made['id']}?stream=true&starting_after=0"
        )
        await seen.reached("first_byte", 2)
        clock.advance(0)
        clock.advance(0.1)
        events = await checked_events(await d)
        self.assertEqual(events[0]["sequence_number"], 1)
        self.assertEqual(events[0]["type"], "response.queued")
        deltas = [
            e["delta"] for e in events if e["type"] == "response.output_text.delta"
        ]
        self.assertEqual(deltas, ["a", "b", "c"])
        self.assertEqual(events[-1]["type"], "response.completed")
        self.assertEqual(events[-1]["response"]["status"], "completed")

    async def test_stream_retrieval_errors(self) -> None:
        live = await start(self)
        _, plain = await live.json(
            "POST", "/v1/responses", {"model": "gpt-4o", "input": "hi"}
        )
        cases = [
            (f"/v1/responses/{plain['id']}?stream=true", 400),
            (f"/v1/responses/{plain['id']}?stream=maybe", 400),
            (f"/v1/responses/{plain['id']}?stream=true&starting_after=x", 400),
            ("/v1/responses/resp_nope?stream=true", 404),
        ]
        for path, status in cases:
            response = await live.request("GET", path)
            payload = json.loads(await treq.content(response))
            self.assertEqual(response.code, status, (path, payload))
            validate(payload, "ErrorResponse")


class SharedBackgroundTests(TestCase):
    async def test_polled_and_cancelled_from_another_server(self) -> None:
        redis = await RedisServer.start(self)
        shared = {**TIMED, "state": {"backend": "redis", "url": redis.url}}
        a, clock, _ = await start_capacity(self, shared)
        b, _, _ = await start_capacity(self, shared)
        for live in (a, b):
            assert live.server.shared is not None
            await live.server.shared.store.wait_connected()
        _, made = await a.json("POST", "/v1/responses", ASK)
        self.assertEqual((await poll(b, made["id"]))["status"], "queued")
        clock.advance(0.5)
        for _ in range(50):
            seen = await poll(b, made["id"])
            if seen["status"] == "in_progress":
                break
        self.assertEqual(seen["status"], "in_progress")
        response, cancelled = await b.json("POST", f"/v1/responses/{made['id']}/cancel")
        self.assertEqual(response.code, 200, cancelled)
        self.assertEqual(cancelled["status"], "cancelled")
        # a runs it: at its next step it reads the cancel and stops there.
        clock.advance(1)
        self.assertEqual((await poll(a, made["id"]))["status"], "cancelled")
        self.assertEqual((await poll(b, made["id"]))["status"], "cancelled")
        self.assertEqual(len(a.server.background), 0)


class PureTests(TestCase):
    """The timeline and the resumed stream, without a socket."""

    def test_timeline_and_resumed(self) -> None:
        from mockai_tw.engine.background import resumed, timeline
        from mockai_tw.engine.plan import MessageOutput, Pacing, ResponsePlan, Usage
        from mockai_tw.request.responses import parse_responses_request

        request = parse_responses_request(b'{"model": "m", "input": "x"}')
        plan = ResponsePlan(
            id="resp_1",
            created_at=0,
            request=request,
            output=(MessageOutput("msg_1", ("a", "b", "c")),),
            usage=Usage(1, 3),
            pacing=Pacing(0.5, 0.1),
            completed_at=0,
        )
        start_s, done_s = timeline(plan)
        self.assertEqual(start_s, 0.5)
        self.assertAlmostEqual(done_s, 0.7)
        events = [(0.0, "x"), (0.5, "y"), (0.7, "z")]
        self.assertEqual(list(resumed(events, None, 0.0)), events)
        self.assertEqual(
            [(round(t, 3), e) for t, e in resumed(events, 0, 0.6)],
            [(0.0, "y"), (0.1, "z")],
        )
        self.assertEqual(list(resumed(events, 2, 0.0)), [])
