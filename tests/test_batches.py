"""Batches that really run: every line through the live engine, on a driven clock.

The service clock is a ``task.Clock`` (or the test helper's virtual time), so
a batch is stepped through ``validating -> in_progress -> finalizing ->
completed`` (and ``failed``, ``cancelled``, ``expired``) without sleeping.
"""

from __future__ import annotations

import json
from typing import Any

import openai
from openai.types import Completion, CreateEmbeddingResponse, ModerationCreateResponse
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.internet.threads import blockingCallFromThread
from twisted.trial.unittest import TestCase

from mockai_tw.engine.batches import split_lines, validate_input
from mockai_tw.engine.rules import RuleError, parse_rule
from mockai_tw.testing import start_for
from mockai_tw.vclock import DrivenClock
from tests.openapi import validate
from tests.support import Live
from tests.test_files import T0, present, started

STAGES = {"batches": {"validating_s": 10, "seconds_per_request": 2, "finalizing_s": 5}}
CHAT = "/v1/chat/completions"
REACTOR: Any = reactor


def line(i: int, url: str = CHAT, **body: Any) -> dict[str, Any]:
    body = body or {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": f"line {i}"}],
    }
    return {"custom_id": f"req-{i}", "method": "POST", "url": url, "body": body}


def jsonl(lines: list[Any]) -> bytes:
    return b"".join(
        (x if isinstance(x, bytes) else json.dumps(x).encode()) + b"\n" for x in lines
    )


def batch_ok(body: dict[str, Any]) -> None:
    """A Batch as the schema has it (the API's nulls left out: the OpenAPI
    types those fields as non-nullable, the API and the SDK send null)."""
    shown = present(body)
    if "errors" in shown:
        shown["errors"] = {
            "object": shown["errors"]["object"],
            "data": [present(e) for e in shown["errors"]["data"]],
        }
    validate(shown, "Batch")


async def submit(
    live: Live, lines: list[Any], endpoint: str = CHAT, **extra: Any
) -> dict[str, Any]:
    client = live.sdk()
    made = await live.in_thread(
        lambda: client.files.create(file=("in.jsonl", jsonl(lines)), purpose="batch")
    )
    response, body = await live.json(
        "POST",
        "/v1/batches",
        {
            "input_file_id": made.id,
            "endpoint": endpoint,
            "completion_window": "24h",
            **extra,
        },
    )
    assert response.code == 200, body
    batch_ok(body)
    return body


async def read(live: Live, batch_id: str) -> dict[str, Any]:
    response, body = await live.json("GET", f"/v1/batches/{batch_id}")
    assert response.code == 200, body
    batch_ok(body)
    return body


async def output(live: Live, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    client = live.sdk()
    data = await live.in_thread(lambda: client.files.content(file_id).content)
    return [json.loads(x) for x in data.splitlines()]


class BatchLifeTests(TestCase):
    async def test_stages_counts_and_output_parsed_with_sdk_types(self) -> None:
        live, clock = await started(self, STAGES)
        created = await submit(live, [line(i) for i in range(4)], metadata={"k": "v"})
        self.assertEqual(created["status"], "validating")
        self.assertEqual(created["created_at"], int(T0))
        self.assertEqual(created["expires_at"], int(T0) + 86_400)
        self.assertEqual(created["metadata"], {"k": "v"})
        clock.advance(9.9)
        self.assertEqual((await read(live, created["id"]))["status"], "validating")
        clock.advance(0.1)
        body = await read(live, created["id"])
        self.assertEqual(body["status"], "in_progress")
        self.assertEqual(body["in_progress_at"], int(T0) + 10)
        self.assertEqual(
            body["request_counts"], {"total": 4, "completed": 0, "failed": 0}
        )
        self.assertEqual(body["model"], "gpt-4o-mini")
        clock.advance(4)
        body = await read(live, created["id"])
        self.assertEqual(body["request_counts"]["completed"], 2)
        clock.advance(4)
        body = await read(live, created["id"])
        self.assertEqual(body["status"], "finalizing")
        self.assertEqual(body["finalizing_at"], int(T0) + 18)
        self.assertIsNone(body["output_file_id"])
        clock.advance(5)
        body = await read(live, created["id"])
        self.assertEqual(body["status"], "completed")
        self.assertEqual(body["completed_at"], int(T0) + 23)
        self.assertEqual(
            body["request_counts"], {"total": 4, "completed": 4, "failed": 0}
        )
        self.assertIsNone(body["error_file_id"])
        lines = await output(live, body["output_file_id"])
        self.assertEqual(
            [x["custom_id"] for x in lines], [f"req-{i}" for i in range(4)]
        )
        usage = {"input_tokens": 0, "output_tokens": 0}
        for got in lines:
            self.assertTrue(got["id"].startswith("batch_req_"))
            self.assertIsNone(got["error"])
            self.assertEqual(got["response"]["status_code"], 200)
            self.assertTrue(got["response"]["request_id"].startswith("req_"))
            completion = ChatCompletion.model_validate(got["response"]["body"])
            validate(got["response"]["body"], "CreateChatCompletionResponse")
            assert completion.usage is not None
            usage["input_tokens"] += completion.usage.prompt_tokens
            usage["output_tokens"] += completion.usage.completion_tokens
        self.assertEqual(body["usage"]["input_tokens"], usage["input_tokens"])
        self.assertEqual(body["usage"]["output_tokens"], usage["output_tokens"])
        client = live.sdk()
        out = await live.in_thread(
            lambda: client.files.retrieve(body["output_file_id"])
        )
        self.assertEqual(out.purpose, "batch_output")
        sdk_batch = await live.in_thread(lambda: client.batches.retrieve(created["id"]))
        self.assertEqual(sdk_batch.status, "completed")

    async def test_one_advance_steps_through_every_stage(self) -> None:
        live, clock = await started(self, STAGES)
        created = await submit(live, [line(i) for i in range(3)])
        clock.advance(1000)
        body = await read(live, created["id"])
        self.assertEqual(body["status"], "completed")
        self.assertEqual(
            (body["in_progress_at"], body["finalizing_at"], body["completed_at"]),
            (int(T0) + 10, int(T0) + 16, int(T0) + 21),
        )

    async def test_sdk_polls_while_the_clock_moves(self) -> None:
        live, clock = await started(self, STAGES)
        created = await submit(live, [line(i) for i in range(2)])
        client = live.sdk()

        def poll() -> list[str]:
            seen: list[str] = []
            for _ in range(100):
                got = client.batches.retrieve(created["id"])
                if not seen or seen[-1] != got.status:
                    seen.append(got.status)
                if got.status == "completed":
                    break
                blockingCallFromThread(REACTOR, clock.advance, 1)
            return seen

        seen = await live.in_thread(poll)
        self.assertEqual(seen, ["validating", "in_progress", "finalizing", "completed"])

    async def test_every_endpoint_runs_through_its_engine(self) -> None:
        cases: list[tuple[str, dict[str, Any], Any, str | None]] = [
            (
                "/v1/embeddings",
                {"model": "text-embedding-3-small", "input": "hi"},
                CreateEmbeddingResponse,
                "CreateEmbeddingResponse",
            ),
            (
                "/v1/completions",
                {"model": "gpt-3.5-turbo-instruct", "prompt": "hi"},
                Completion,
                "CreateCompletionResponse",
            ),
            (
                "/v1/moderations",
                {"model": "omni-moderation-latest", "input": "kill"},
                ModerationCreateResponse,
                "CreateModerationResponse",
            ),
            ("/v1/responses", {"model": "gpt-4o", "input": "hi"}, Response, "Response"),
        ]
        live, clock = await started(self, STAGES)
        for url, body, sdk_type, schema in cases:
            created = await submit(live, [line(0, url, **body)], endpoint=url)
            clock.advance(1000)
            done = await read(live, created["id"])
            self.assertEqual(done["status"], "completed", url)
            (got,) = await output(live, done["output_file_id"])
            sdk_type.model_validate(got["response"]["body"])
            if schema is not None:
                validate(got["response"]["body"], schema)


class BatchInputTests(TestCase):
    async def test_bad_lines_fail_the_batch_with_the_apis_errors(self) -> None:
        live, clock = await started(self, STAGES)
        bad = [
            line(1),
            b"{not json",
            line(1),
            line(4, "/v1/embeddings", model="gpt-4o-mini", input="x"),
            {**line(5), "method": "GET"},
            {"custom_id": "req-6", "method": "POST", "url": CHAT},
        ]
        created = await submit(live, bad)
        clock.advance(10)
        body = await read(live, created["id"])
        self.assertEqual(body["status"], "failed")
        self.assertEqual(body["failed_at"], int(T0) + 10)
        self.assertIsNone(body["in_progress_at"])
        self.assertEqual(body["errors"]["object"], "list")
        found = [(e["code"], e["line"], e["param"]) for e in body["errors"]["data"]]
        self.assertEqual(
            found,
            [
                ("invalid_json_line", 2, None),
                ("duplicate_custom_id", 3, "custom_id"),
                ("url_mismatch", 4, "url"),
                ("invalid_request", 5, "method"),
                ("missing_required_parameter", 6, "body"),
            ],
        )
        client = live.sdk()
        sdk = await live.in_thread(lambda: client.batches.retrieve(created["id"]))
        assert sdk.errors is not None and sdk.errors.data is not None
        self.assertEqual(sdk.errors.data[0].code, "invalid_json_line")
        self.assertEqual(sdk.errors.data[0].line, 2)

    async def test_empty_file_mismatched_model_and_limits(self) -> None:
        live, clock = await started(
            self, {"batches": {"max_requests": 2, "max_input_bytes": 2000}}
        )

        async def codes(lines: list[Any]) -> list[Any]:
            created = await submit(live, lines)
            clock.advance(1000)
            body = await read(live, created["id"])
            self.assertEqual(body["status"], "failed")
            return [(e["code"], e["line"]) for e in body["errors"]["data"]]

        self.assertEqual(await codes([b"", b"  "]), [("empty_file", None)])
        other = line(2, model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        self.assertEqual(await codes([line(1), other]), [("model_mismatch", 2)])
        self.assertEqual(
            await codes([line(1), line(2), line(3)]), [("too_many_tasks", None)]
        )
        huge = line(
            1, model="gpt-4o-mini", messages=[{"role": "user", "content": "x" * 3000}]
        )
        self.assertEqual(await codes([huge]), [("file_too_large", None)])

    async def test_create_refusals(self) -> None:
        live, _ = await started(self)
        client = live.sdk()
        vision = await live.in_thread(
            lambda: client.files.create(file=("x.png", b"png"), purpose="vision")
        )
        base = {
            "input_file_id": vision.id,
            "endpoint": CHAT,
            "completion_window": "24h",
        }
        for change, status, param in (
            ({"input_file_id": "file-nope"}, 404, "input_file_id"),
            ({}, 400, "input_file_id"),
            ({"endpoint": "/v1/images"}, 400, "endpoint"),
            ({"completion_window": "1h"}, 400, "completion_window"),
            ({"metadata": {"k": 1}}, 400, "metadata.k"),
            (
                {"output_expires_after": {"anchor": "created_at", "seconds": 5}},
                400,
                "output_expires_after.seconds",
            ),
        ):
            response, body = await live.json("POST", "/v1/batches", {**base, **change})
            self.assertEqual(
                (response.code, body["error"]["param"]), (status, param), change
            )
            self.assertEqual(body["error"]["type"], "invalid_request_error")
        with self.assertRaises(openai.NotFoundError):
            await live.in_thread(lambda: client.batches.retrieve("batch_nope"))

    async def test_list_pages_newest_first(self) -> None:
        live, clock = await started(self)
        ids = []
        for _ in range(3):
            ids.append((await submit(live, [line(0)]))["id"])
            clock.advance(1)
        response, page = await live.json("GET", "/v1/batches?limit=2")
        self.assertEqual(response.code, 200)
        validate(
            {**page, "data": [present(b) for b in page["data"]]}, "ListBatchesResponse"
        )
        self.assertEqual([b["id"] for b in page["data"]], ids[:0:-1])
        self.assertTrue(page["has_more"])
        _, rest = await live.json("GET", f"/v1/batches?limit=2&after={page['last_id']}")
        self.assertEqual(
            ([b["id"] for b in rest["data"]], rest["has_more"]), ([ids[0]], False)
        )
        client = live.sdk()
        every = await live.in_thread(
            lambda: [b.id for b in client.batches.list(limit=1)]
        )
        self.assertEqual(every, ids[::-1])


class BatchEndingTests(TestCase):
    async def test_cancel_mid_run_keeps_what_ran(self) -> None:
        live, clock = await started(self, STAGES)
        created = await submit(live, [line(i) for i in range(5)])
        clock.advance(10 + 4)
        client = live.sdk()
        cancelling = await live.in_thread(lambda: client.batches.cancel(created["id"]))
        self.assertEqual(cancelling.status, "cancelling")
        self.assertEqual(cancelling.cancelling_at, int(T0) + 14)
        clock.advance(4)
        body = await read(live, created["id"])
        self.assertEqual(
            (body["status"], body["request_counts"]["completed"]), ("cancelling", 2)
        )
        clock.advance(1)
        body = await read(live, created["id"])
        self.assertEqual(body["status"], "cancelled")
        self.assertEqual(body["cancelled_at"], int(T0) + 19)
        lines = await output(live, body["output_file_id"])
        self.assertEqual([x["custom_id"] for x in lines], ["req-0", "req-1"])
        response, refused = await live.json(
            "POST", f"/v1/batches/{created['id']}/cancel"
        )
        self.assertEqual(response.code, 400)
        self.assertIn("cancelled", refused["error"]["message"])

    async def test_expire_writes_the_rest_to_the_error_file(self) -> None:
        live, clock = await started(
            self, {"batches": {**STAGES["batches"], "expire_after_s": 15}}
        )
        created = await submit(live, [line(i) for i in range(5)])
        self.assertEqual(created["expires_at"], int(T0) + 15)
        clock.advance(1000)
        body = await read(live, created["id"])
        self.assertEqual(body["status"], "expired")
        self.assertEqual(body["expired_at"], int(T0) + 15)
        self.assertIsNone(body["completed_at"])
        self.assertEqual(
            body["request_counts"], {"total": 5, "completed": 2, "failed": 0}
        )
        done = await output(live, body["output_file_id"])
        self.assertEqual([x["custom_id"] for x in done], ["req-0", "req-1"])
        rest = await output(live, body["error_file_id"])
        self.assertEqual([x["custom_id"] for x in rest], ["req-2", "req-3", "req-4"])
        for got in rest:
            self.assertIsNone(got["response"])
            self.assertEqual(got["error"]["code"], "batch_expired")

    async def test_expire_while_validating(self) -> None:
        live, clock = await started(
            self, {"batches": {"validating_s": 100, "expire_after_s": 50}}
        )
        created = await submit(live, [line(0)])
        clock.advance(50)
        body = await read(live, created["id"])
        self.assertEqual(
            (body["status"], body["expired_at"]), ("expired", int(T0) + 50)
        )
        self.assertIsNone(body["output_file_id"])


class BatchRuleTests(TestCase):
    async def test_a_rule_makes_line_3_fail(self) -> None:
        rules = [
            {
                "match": {"batch": True, "content": "line 3"},
                "answer": {"error": {"status": 500, "message": "line three broke"}},
            },
            {"match": {"batch": False}, "answer": "live only"},
            {"match": {"batch": True}, "answer": "from the batch"},
        ]
        live, clock = await started(self, {**STAGES, "rules": rules})
        created = await submit(live, [line(i) for i in range(1, 6)])
        clock.advance(1000)
        body = await read(live, created["id"])
        self.assertEqual(
            body["request_counts"], {"total": 5, "completed": 4, "failed": 1}
        )
        (failed,) = await output(live, body["error_file_id"])
        self.assertEqual(failed["custom_id"], "req-3")
        self.assertEqual(failed["response"]["status_code"], 500)
        self.assertEqual(
            failed["response"]["body"]["error"]["message"], "line three broke"
        )
        self.assertIsNone(failed["error"])
        answered = await output(live, body["output_file_id"])
        texts = {
            ChatCompletion.model_validate(x["response"]["body"])
            .choices[0]
            .message.content
            for x in answered
        }
        self.assertEqual(texts, {"from the batch"})
        # A live request is no batch line.
        client = live.sdk()
        reply = await live.in_thread(
            lambda: client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "line 3"}]
            )
        )
        self.assertEqual(reply.choices[0].message.content, "live only")

    async def test_times_and_faults_apply_per_line(self) -> None:
        rules = [
            {"match": {"batch": True}, "answer": "once", "times": 1},
            {"match": {"content": "line 2"}, "answer": "x", "fault": "http_503"},
        ]
        live, clock = await started(self, {**STAGES, "rules": rules})
        created = await submit(live, [line(i) for i in range(1, 4)])
        clock.advance(1000)
        body = await read(live, created["id"])
        (failed,) = await output(live, body["error_file_id"])
        self.assertEqual(
            (failed["custom_id"], failed["response"]["status_code"]), ("req-2", 503)
        )
        self.assertEqual(failed["response"]["body"]["error"]["type"], "server_error")
        answered = await output(live, body["output_file_id"])
        first = ChatCompletion.model_validate(answered[0]["response"]["body"])
        second = ChatCompletion.model_validate(answered[1]["response"]["body"])
        self.assertEqual(first.choices[0].message.content, "once")
        self.assertNotEqual(second.choices[0].message.content, "once")

    async def test_a_bad_body_is_the_lines_400(self) -> None:
        live, clock = await started(self, {**STAGES, "strict_models": True})
        bad = [
            line(1, model="gpt-4o-mini"),
            line(2, model="gpt-4o-mini", messages=[{"role": "user", "content": "ok"}]),
        ]
        created = await submit(live, bad)
        clock.advance(1000)
        body = await read(live, created["id"])
        (failed,) = await output(live, body["error_file_id"])
        self.assertEqual(failed["response"]["status_code"], 400)
        self.assertEqual(failed["response"]["body"]["error"]["param"], "messages")


class VirtualTimeTests(TestCase):
    async def test_helper_advance_steps_a_batch_and_streams_still_flow(self) -> None:
        mock = await start_for(
            self,
            {
                **STAGES,
                "stream": {"interval_ms": 1},
                "rules": [
                    {"match": {"content": "soon"}, "answer": "short-lived", "ttl_s": 60}
                ],
            },
            virtual_time=True,
        )
        self.assertIsInstance(mock.clock, DrivenClock)
        client = mock.client()

        def flow() -> tuple[str, list[str], str, str]:
            made = client.files.create(
                file=("in.jsonl", jsonl([line(0)])), purpose="batch"
            )
            batch = client.batches.create(
                input_file_id=made.id, endpoint=CHAT, completion_window="24h"
            )
            chunks = [
                c.choices[0].delta.content or ""
                for c in client.chat.completions.create(
                    model="gpt-4o",
                    messages=[{"role": "user", "content": "hi"}],
                    stream=True,
                )
                if c.choices
            ]
            soon = (
                client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "soon"}]
                )
                .choices[0]
                .message.content
                or ""
            )
            blockingCallFromThread(REACTOR, mock.advance, 100)
            later = (
                client.chat.completions.create(
                    model="gpt-4o", messages=[{"role": "user", "content": "soon"}]
                )
                .choices[0]
                .message.content
                or ""
            )
            return client.batches.retrieve(batch.id).status, chunks, soon, later

        status, chunks, soon, later = await mock_thread(flow)
        self.assertEqual(status, "completed")
        self.assertGreater(len(chunks), 1)
        self.assertEqual(soon, "short-lived")
        self.assertNotEqual(later, "short-lived")

    async def test_advance_needs_virtual_time(self) -> None:
        mock = await start_for(self, {})
        with self.assertRaises(RuntimeError):
            mock.advance(1)


def mock_thread(f: Any) -> Any:
    from twisted.internet.threads import deferToThread

    return deferToThread(f)


class PureTests(TestCase):
    def test_validate_input_offsets_and_model(self) -> None:
        data = jsonl([line(1), line(2)])
        lines, errors, model = validate_input(
            split_lines([data[:7], data[7:]]), CHAT, 10, 10**6
        )
        self.assertEqual(errors, [])
        self.assertEqual(model, "gpt-4o-mini")
        for got, i in zip(lines, (1, 2), strict=True):
            raw = data[got.offset : got.offset + got.length]
            self.assertEqual(json.loads(raw)["custom_id"], f"req-{i}")

    def test_batch_condition_must_be_a_boolean(self) -> None:
        with self.assertRaises(RuleError) as caught:
            parse_rule({"match": {"batch": "yes"}, "answer": "x"}, "rule")
        self.assertEqual(caught.exception.path, "rule.match.batch")

    def test_driven_clock_runs_due_timers_in_order(self) -> None:
        real = Clock()
        clock = DrivenClock(real)
        ran: list[str] = []
        clock.callLater(5, ran.append, "b")
        clock.callLater(1, ran.append, "a")
        clock.callLater(9, ran.append, "c").cancel()
        clock.advance(6)
        self.assertEqual(ran, ["a", "b"])
        self.assertEqual(clock.seconds(), 6)
        late = clock.callLater(2, ran.append, "real")
        real.advance(2)
        self.assertEqual(ran[-1], "real")
        self.assertFalse(late.active())
        self.assertEqual(real.getDelayedCalls(), [])
