"""Files, Uploads and Batches as one server: two services on one real Redis.

Each test starts its own ``redis-server`` (tests/redisserver.py) and two
services sharing it (``state.backend: redis``) and one ``files.dir``; both
run on one ``task.Clock``, so a batch made on one is stepped through its
stages while the other polls it.  ``batches.idle()`` waits for what the
running process writes to the store after the clock moved.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from openai.types.chat import ChatCompletion

import treq
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.client import HTTPConnectionPool

from mockai_tw.config import ConfigError, build_config
from mockai_tw.state.files import SharedFiles
from tests.openapi import validate
from tests.redisserver import RedisServer
from tests.support import Live, start
from tests.test_batches import CHAT, batch_ok, jsonl, line, output
from tests.test_daemon import AUTH, SEED_CONFIG, ConfiguredDaemon
from tests.test_files import T0, form, present, upload
from tests.test_shared import connection
from tests.test_uploads import create, part, upload_ok

STAGES = {"validating_s": 10, "seconds_per_request": 2, "finalizing_s": 5}


class Two:
    """Two services (``a``, ``b``) on one Redis, one files.dir, one clock."""

    def __init__(self, redis: RedisServer, a: Live, b: Live, clock: Clock) -> None:
        self.redis = redis
        self.a = a
        self.b = b
        self.clock = clock

    async def advance(self, seconds: float) -> None:
        """Move both services' clock, then wait until what A runs has
        written what it did to the store."""
        self.clock.advance(seconds)
        await self.a.server.batches.idle()
        await self.b.server.batches.idle()

    def used(self) -> Any:
        shared = self.a.server.shared
        assert shared is not None
        return SharedFiles(shared.store).used()


async def two(
    case: TestCase,
    files: dict[str, Any] | None = None,
    batches: dict[str, Any] | None = None,
    **state: Any,
) -> Two:
    redis = await RedisServer.start(case)
    directory = os.path.abspath(case.mktemp())
    os.makedirs(directory)
    config = {
        "state": {"backend": "redis", "url": redis.url, **state},
        "files": {"dir": directory, **(files or {})},
        "batches": {**STAGES, **(batches or {})},
    }
    a = await start(case, config)
    b = await start(case, config)
    clock = Clock()
    clock.advance(T0)
    for live in (a, b):
        assert live.server.shared is not None
        await live.server.shared.store.wait_connected()
        live.server.use_clock(clock)
    return Two(redis, a, b, clock)


async def got(live: Live, method: str, path: str, body: Any = None) -> Any:
    response, answer = await live.json(method, path, body)
    assert response.code == 200, (response.code, answer)
    return answer


async def submit(both: Two, lines: list[Any]) -> dict[str, Any]:
    """The input uploaded through B, the batch created on A (which runs it)."""
    code, made = await upload(both.b, jsonl(lines))
    assert code == 200, made
    body = {"input_file_id": made["id"], "endpoint": CHAT, "completion_window": "24h"}
    created: dict[str, Any] = await got(both.a, "POST", "/v1/batches", body)
    batch_ok(created)
    return created


async def polled(live: Live, batch_id: str) -> dict[str, Any]:
    body: dict[str, Any] = await got(live, "GET", f"/v1/batches/{batch_id}")
    batch_ok(body)
    return body


class SharedFilesTests(TestCase):
    async def test_uploaded_on_one_is_read_listed_and_deleted_on_the_other(
        self,
    ) -> None:
        both = await two(self)
        data = b'{"a": 1}\n' * 50
        client = both.a.sdk()
        made = await both.a.in_thread(
            lambda: client.files.create(file=("in.jsonl", data), purpose="batch")
        )
        self.assertEqual(await both.used(), len(data))
        shown = await got(both.b, "GET", f"/v1/files/{made.id}")
        validate(present(shown), "OpenAIFile")
        self.assertEqual(
            (shown["bytes"], shown["filename"], shown["created_at"]),
            (len(data), "in.jsonl", int(T0)),
        )
        page = await got(both.b, "GET", "/v1/files")
        validate(page, "ListFilesResponse")
        self.assertEqual([f["id"] for f in page["data"]], [made.id])
        other = both.b.sdk()
        content = await both.b.in_thread(lambda: other.files.content(made.id).content)
        self.assertEqual(content, data)
        deleted = await got(both.b, "DELETE", f"/v1/files/{made.id}")
        validate(deleted, "DeleteFileResponse")
        response, error = await both.a.json("GET", f"/v1/files/{made.id}")
        self.assertEqual(response.code, 404, error)
        self.assertEqual(error["error"]["message"], f"No such File object: {made.id}")
        response, _ = await both.a.json("DELETE", f"/v1/files/{made.id}")
        self.assertEqual(response.code, 404)
        self.assertEqual((await got(both.a, "GET", "/v1/files"))["data"], [])
        self.assertEqual(await both.used(), 0)
        self.assertEqual(os.listdir(both.a.server.files.dir or ""), [])

    async def test_the_bounds_are_the_fleets(self) -> None:
        both = await two(self, {"max_files": 2, "total_bytes": 10})
        self.assertEqual((await upload(both.a, b"1234"))[0], 200)
        self.assertEqual((await upload(both.b, b"5678"))[0], 200)
        code, error = await upload(both.a, b"9")
        self.assertEqual(code, 400, error)
        self.assertEqual(error["error"]["code"], "file_storage_limit_exceeded")
        self.assertIn("files.max_files", error["error"]["message"])
        first = (await got(both.a, "GET", "/v1/files?order=asc"))["data"][0]
        await got(both.b, "DELETE", f"/v1/files/{first['id']}")
        code, error = await upload(both.a, b"1234567")
        self.assertEqual(code, 400, error)
        self.assertIn("files.total_bytes", error["error"]["message"])
        self.assertEqual(await both.used(), 4)

    async def test_an_expired_file_is_gone_everywhere(self) -> None:
        both = await two(self)
        code, made = await upload(
            both.a,
            b"x",
            **{"expires_after[anchor]": "created_at", "expires_after[seconds]": "3600"},
        )
        self.assertEqual(code, 200, made)
        self.assertEqual(made["expires_at"], int(T0) + 3600)
        both.clock.advance(3600)
        response, _ = await both.b.json("GET", f"/v1/files/{made['id']}")
        self.assertEqual(response.code, 404)
        self.assertEqual(await both.used(), 0)


class SharedUploadsTests(TestCase):
    async def test_parts_sent_to_both_are_completed_on_either(self) -> None:
        both = await two(self)
        one, two_ = b"a" * 1000, b"b" * 500
        code, made = await create(both.a, len(one) + len(two_))
        self.assertEqual(code, 200, made)
        upload_ok(made)
        code, first = await part(both.a, made["id"], one)
        self.assertEqual(code, 200, first)
        validate(first, "UploadPart")
        code, second = await part(both.b, made["id"], two_)
        self.assertEqual(code, 200, second)
        self.assertEqual(await both.used(), 1500)
        md5 = hashlib.md5(two_ + one, usedforsecurity=False).hexdigest()
        done = await got(
            both.b,
            "POST",
            f"/v1/uploads/{made['id']}/complete",
            {"part_ids": [second["id"], first["id"]], "md5": md5},
        )
        upload_ok(done)
        self.assertEqual(done["status"], "completed")
        file_id = done["file"]["id"]
        client = both.a.sdk()
        content = await both.a.in_thread(lambda: client.files.content(file_id).content)
        self.assertEqual(content, two_ + one)
        self.assertEqual(await both.used(), 1500)
        # The parts' content went; only the file is left.
        self.assertEqual(os.listdir(both.a.server.files.dir or ""), [file_id])
        response, error = await both.a.json("POST", f"/v1/uploads/{made['id']}/cancel")
        self.assertEqual(response.code, 400, error)

    async def test_two_completes_at_once_make_one_file(self) -> None:
        both = await two(self)
        data = b"c" * 300
        _, made = await create(both.a, len(data))
        _, sent = await part(both.a, made["id"], data)
        path = f"/v1/uploads/{made['id']}/complete"
        # A refused complete (a wrong md5) leaves the Upload open to retry.
        response, refused = await both.b.json(
            "POST", path, {"part_ids": [sent["id"]], "md5": "0" * 32}
        )
        self.assertEqual(response.code, 400, refused)
        body = {"part_ids": [sent["id"]]}
        answers = await defer.gatherResults(
            [
                defer.ensureDeferred(both.a.json("POST", path, body)),
                defer.ensureDeferred(both.b.json("POST", path, body)),
            ]
        )
        codes = sorted(r.code for r, _ in answers)
        self.assertEqual(codes, [200, 400], answers)
        ((_, done),) = [(r, b) for r, b in answers if r.code == 200]
        ((_, lost),) = [(r, b) for r, b in answers if r.code == 400]
        self.assertIn("accepts no more changes", lost["error"]["message"])
        page = await got(both.b, "GET", "/v1/files")
        self.assertEqual([f["id"] for f in page["data"]], [done["file"]["id"]])
        self.assertEqual(await both.used(), len(data))

    async def test_cancelled_on_the_other_gives_the_bytes_back(self) -> None:
        both = await two(self)
        _, made = await create(both.a, 10)
        await part(both.a, made["id"], b"0123456789")
        cancelled = await got(both.b, "POST", f"/v1/uploads/{made['id']}/cancel")
        upload_ok(cancelled)
        self.assertEqual(cancelled["status"], "cancelled")
        self.assertEqual(await both.used(), 0)
        code, error = await part(both.a, made["id"], b"x")
        self.assertEqual(code, 400, error)


class SharedBatchesTests(TestCase):
    async def test_run_on_one_polled_on_the_other_through_completed(self) -> None:
        both = await two(self)
        created = await submit(both, [line(i) for i in range(4)])
        self.assertEqual((await polled(both.b, created["id"]))["status"], "validating")
        await both.advance(10)
        body = await polled(both.b, created["id"])
        self.assertEqual(body["status"], "in_progress")
        self.assertEqual(body["in_progress_at"], int(T0) + 10)
        self.assertEqual(
            body["request_counts"], {"total": 4, "completed": 0, "failed": 0}
        )
        await both.advance(4)
        body = await polled(both.b, created["id"])
        self.assertEqual(body["request_counts"]["completed"], 2)
        await both.advance(4)
        body = await polled(both.b, created["id"])
        self.assertEqual(body["status"], "finalizing")
        await both.advance(5)
        body = await polled(both.b, created["id"])
        self.assertEqual(body["status"], "completed")
        self.assertEqual(body["completed_at"], int(T0) + 23)
        lines = await output(both.b, body["output_file_id"])
        self.assertEqual(
            [x["custom_id"] for x in lines], [f"req-{i}" for i in range(4)]
        )
        for answer in lines:
            ChatCompletion.model_validate(answer["response"]["body"])
        page = await got(both.b, "GET", "/v1/batches")
        self.assertEqual([x["id"] for x in page["data"]], [created["id"]])
        batch_ok(page["data"][0])
        # Finished: the running process holds it no longer, the store does.
        self.assertEqual(both.a.server.batches.runs, {})
        self.assertEqual((await polled(both.a, created["id"]))["status"], "completed")

    async def test_one_advance_steps_through_every_stage(self) -> None:
        both = await two(self)
        created = await submit(both, [line(i) for i in range(3)])
        await both.advance(1000)
        body = await polled(both.b, created["id"])
        self.assertEqual(body["status"], "completed")
        self.assertEqual(
            (body["in_progress_at"], body["finalizing_at"], body["completed_at"]),
            (int(T0) + 10, int(T0) + 16, int(T0) + 21),
        )

    async def test_a_cancel_on_the_other_stops_the_running_one(self) -> None:
        both = await two(self)
        created = await submit(both, [line(i) for i in range(4)])
        await both.advance(12)
        self.assertEqual(
            (await polled(both.b, created["id"]))["request_counts"]["completed"], 1
        )
        client = both.b.sdk()
        cancelling = await both.b.in_thread(
            lambda: client.batches.cancel(created["id"])
        )
        self.assertEqual(cancelling.status, "cancelling")
        self.assertEqual(cancelling.cancelling_at, int(T0) + 12)
        await both.advance(4)
        body = await polled(both.a, created["id"])
        self.assertEqual(body["status"], "cancelling")
        # A read the cancel before its next slice: no line ran after it.
        self.assertEqual(body["request_counts"]["completed"], 1)
        await both.advance(5)
        body = await polled(both.b, created["id"])
        self.assertEqual(body["status"], "cancelled")
        self.assertEqual(body["cancelled_at"], int(T0) + 17)
        self.assertEqual(body["request_counts"]["completed"], 1)
        lines = await output(both.b, body["output_file_id"])
        self.assertEqual([x["custom_id"] for x in lines], ["req-0"])
        response, error = await both.a.json(
            "POST", f"/v1/batches/{created['id']}/cancel"
        )
        self.assertEqual(response.code, 400, error)

    async def test_a_dead_runners_batch_reads_expired_after_expires_at(self) -> None:
        both = await two(self)
        created = await submit(both, [line(0)])
        # Its process stops (its timers with it): the record stays as written.
        both.a.server.batches.stop()
        await both.advance(3600)
        self.assertEqual((await polled(both.b, created["id"]))["status"], "validating")
        both.clock.advance(86_400)
        body = await polled(both.b, created["id"])
        self.assertEqual(body["status"], "expired")
        self.assertEqual(body["expired_at"], created["expires_at"])

    async def test_the_input_file_is_checked_on_create_on_any(self) -> None:
        both = await two(self)
        code, made = await upload(both.a, b"x", purpose="vision")
        self.assertEqual(code, 200)
        body = {
            "input_file_id": made["id"],
            "endpoint": CHAT,
            "completion_window": "24h",
        }
        response, error = await both.b.json("POST", "/v1/batches", body)
        self.assertEqual(response.code, 400, error)
        self.assertEqual(error["error"]["param"], "input_file_id")
        body["input_file_id"] = "file-nope"
        response, error = await both.b.json("POST", "/v1/batches", body)
        self.assertEqual(response.code, 404, error)

    async def test_max_batches_is_the_fleets(self) -> None:
        both = await two(self, batches={"max_batches": 1})
        first = await submit(both, [line(0)])
        _, made = await upload(both.b, jsonl([line(0)]))
        body = {
            "input_file_id": made["id"],
            "endpoint": CHAT,
            "completion_window": "24h",
        }
        response, error = await both.b.json("POST", "/v1/batches", body)
        self.assertEqual(response.code, 429, error)
        self.assertEqual(error["error"]["code"], "batch_limit_exceeded")
        await both.advance(1000)
        # The first finished: it makes room for the next, wherever it is made.
        second = await got(both.b, "POST", "/v1/batches", body)
        response, _ = await both.a.json("GET", f"/v1/batches/{first['id']}")
        self.assertEqual(response.code, 404)
        self.assertEqual((await polled(both.a, second["id"]))["status"], "validating")


class SharedOutageTests(TestCase):
    async def test_redis_lost_is_503_with_on_error_fail(self) -> None:
        both = await two(self)
        lost = connection(both.a, False)
        await both.redis.kill()
        await lost
        for method, path in (
            ("GET", "/v1/files"),
            ("GET", "/v1/files/file-x"),
            ("GET", "/v1/batches"),
            ("POST", "/v1/batches/batch_x/cancel"),
        ):
            response, error = await both.a.json(method, path)
            self.assertEqual(response.code, 503, (path, error))
            self.assertEqual(error["error"]["code"], "mock_state_unavailable")
        code, error = await upload(both.a, b"x")
        self.assertEqual(code, 503, error)

    async def test_on_error_local_serves_this_processs_own(self) -> None:
        both = await two(self, on_error="local")
        lost = connection(both.a, False)
        await both.redis.kill()
        await lost
        code, made = await upload(both.a, b"x")
        self.assertEqual(code, 200, made)
        page = await got(both.a, "GET", "/v1/files")
        self.assertEqual([f["id"] for f in page["data"]], [made["id"]])

    def test_memory_content_cannot_be_shared(self) -> None:
        with self.assertRaises(ConfigError) as caught:
            build_config(
                {
                    "access_token": "sk-x",
                    "state": {"backend": "redis"},
                    "files": {"backend": "memory"},
                }
            )
        self.assertTrue(str(caught.exception).startswith("files.backend: "))


class SharedFilesDaemonTests(ConfiguredDaemon):
    """The real ``twistd mockai --workers=2``: one files.dir chosen by the
    parent, the index in Redis."""

    async def test_uploaded_through_one_worker_is_read_through_both(self) -> None:
        redis = await RedisServer.start(self)
        protocol = self.spawn(
            SEED_CONFIG + f"state: {{backend: redis, url: '{redis.url}'}}\n",
            "--workers=2",
        )
        port = await protocol.port
        base = f"http://127.0.0.1:{port}/v1/files"
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        raw, ctype = form({"purpose": "batch"}, content=b"shared\n")
        response = await treq.post(
            base, data=raw, headers={**AUTH, "Content-Type": ctype}, pool=pool
        )
        made = json.loads(await treq.content(response))
        self.assertEqual(response.code, 200, made)
        seen: dict[str, int] = {}
        # Until both workers have answered (the second may still be starting).
        while set(seen) != {"0", "1"}:
            self.assertLess(sum(seen.values()), 200, seen)
            response = await treq.get(
                f"{base}/{made['id']}/content", headers=AUTH, pool=pool
            )
            self.assertEqual(await treq.content(response), b"shared\n")
            self.assertEqual(response.code, 200)
            worker = (response.headers.getRawHeaders("x-mockai-worker") or ["?"])[0]
            seen[worker] = seen.get(worker, 0) + 1
            response = await treq.get(base, headers=AUTH, pool=pool)
            page = json.loads(await treq.content(response))
            self.assertEqual([f["id"] for f in page["data"]], [made["id"]])
