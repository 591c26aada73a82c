"""The Uploads API: a file sent in parts, joined in the order given, checked."""

from __future__ import annotations

import hashlib
import json
from functools import partial
from typing import Any

import openai

import treq
from twisted.trial.unittest import TestCase

from tests.openapi import validate
from tests.support import Live
from tests.test_files import T0, form, present, started


async def create(live: Live, size: int, **extra: Any) -> tuple[int, Any]:
    body = {
        "filename": "train.jsonl",
        "purpose": "batch",
        "bytes": size,
        "mime_type": "application/jsonl",
        **extra,
    }
    response, got = await live.json("POST", "/v1/uploads", body)
    return response.code, got


async def part(live: Live, upload_id: str, data: bytes) -> tuple[int, Any]:
    raw, ctype = form({}, name="data", filename="blob", content=data)
    response = await live.request(
        "POST",
        f"/v1/uploads/{upload_id}/parts",
        raw=raw,
        headers={"Content-Type": ctype},
    )
    return response.code, json.loads(await treq.content(response))


def upload_ok(body: dict[str, Any]) -> None:
    """Validate an Upload (its file, when set, without null keys)."""
    shown = dict(body)
    if shown.get("file") is not None:
        shown["file"] = present(shown["file"])
    else:
        shown.pop("file", None)
    validate(shown, "Upload")


class UploadsSdkTests(TestCase):
    async def test_parts_joined_in_the_order_given_with_md5(self) -> None:
        live, _ = await started(self)
        client = live.sdk()
        pieces = [b"first-" * 1000, b"second-" * 700, b"third"]
        joined = pieces[2] + pieces[0] + pieces[1]
        upload = await live.in_thread(
            lambda: client.uploads.create(
                bytes=len(joined),
                filename="joined.txt",
                mime_type="text/plain",
                purpose="assistants",
            )
        )
        self.assertEqual((upload.status, upload.created_at), ("pending", int(T0)))
        self.assertEqual(upload.expires_at, int(T0) + 3600)
        parts = []
        for piece in pieces:
            made = await live.in_thread(
                partial(client.uploads.parts.create, upload.id, data=piece)
            )
            self.assertEqual(made.upload_id, upload.id)
            self.assertTrue(made.id.startswith("part_"))
            parts.append(made.id)
        order = [parts[2], parts[0], parts[1]]
        done = await live.in_thread(
            lambda: client.uploads.complete(
                upload.id, part_ids=order, md5=hashlib.md5(joined).hexdigest()
            )
        )
        self.assertEqual(done.status, "completed")
        assert done.file is not None
        self.assertEqual(
            (done.file.bytes, done.file.filename), (len(joined), "joined.txt")
        )
        content = await live.in_thread(
            lambda: client.files.content(done.file.id).content
        )
        self.assertEqual(content, joined)
        # The parts are gone: only the joined file counts against the total.
        self.assertEqual(live.server.files.used, len(joined))

    async def test_sdk_chunked_helper(self) -> None:
        live, _ = await started(self)
        client = live.sdk()
        data = bytes(range(256)) * 400
        done = await live.in_thread(
            lambda: client.uploads.upload_file_chunked(
                file=data,
                filename="chunked.bin",
                bytes=len(data),
                mime_type="application/octet-stream",
                purpose="batch",
                part_size=30_000,
                md5=hashlib.md5(data).hexdigest(),
            )
        )
        assert done.file is not None
        content = await live.in_thread(
            lambda: client.files.content(done.file.id).content
        )
        self.assertEqual(content, data)


class UploadsWireTests(TestCase):
    async def test_bodies_match_the_schemas(self) -> None:
        live, _ = await started(self)
        code, upload = await create(live, 5)
        self.assertEqual(code, 200)
        upload_ok(upload)
        self.assertIsNone(upload["file"])
        code, made = await part(live, upload["id"], b"hello")
        self.assertEqual(code, 200)
        validate(made, "UploadPart")
        response, done = await live.json(
            "POST", f"/v1/uploads/{upload['id']}/complete", {"part_ids": [made["id"]]}
        )
        self.assertEqual(response.code, 200)
        upload_ok(done)
        validate(done["file"], "OpenAIFile")

    async def test_md5_bytes_and_part_checks(self) -> None:
        live, _ = await started(self)
        _, upload = await create(live, 10)
        path = f"/v1/uploads/{upload['id']}/complete"
        _, one = await part(live, upload["id"], b"12345")
        response, body = await live.json("POST", path, {"part_ids": [one["id"]]})
        self.assertEqual((response.code, body["error"]["param"]), (400, "part_ids"))
        self.assertIn("bytes=10", body["error"]["message"])
        _, two = await part(live, upload["id"], b"67890")
        ids = [one["id"], two["id"]]
        response, body = await live.json(
            "POST", path, {"part_ids": ids, "md5": "0" * 32}
        )
        self.assertEqual((response.code, body["error"]["param"]), (400, "md5"))
        response, body = await live.json(
            "POST", path, {"part_ids": [one["id"], "part_nope"]}
        )
        self.assertEqual((response.code, body["error"]["param"]), (400, "part_ids[1]"))
        response, body = await live.json(
            "POST", path, {"part_ids": [one["id"], one["id"]]}
        )
        self.assertEqual(response.code, 400)
        response, body = await live.json("POST", path, {})
        self.assertEqual((response.code, body["error"]["param"]), (400, "part_ids"))
        md5 = hashlib.md5(b"1234567890").hexdigest()
        response, body = await live.json("POST", path, {"part_ids": ids, "md5": md5})
        self.assertEqual((response.code, body["status"]), (200, "completed"))
        response, body = await live.json("POST", path, {"part_ids": ids})
        self.assertEqual(response.code, 400)
        self.assertIn("completed", body["error"]["message"])

    async def test_cancel(self) -> None:
        live, _ = await started(self)
        _, upload = await create(live, 3)
        await part(live, upload["id"], b"abc")
        self.assertEqual(live.server.files.used, 3)
        response, body = await live.json("POST", f"/v1/uploads/{upload['id']}/cancel")
        self.assertEqual((response.code, body["status"]), (200, "cancelled"))
        upload_ok(body)
        self.assertEqual(live.server.files.used, 0)
        code, body = await part(live, upload["id"], b"abc")
        self.assertEqual(code, 400)
        response, body = await live.json("POST", "/v1/uploads/upload_nope/cancel")
        self.assertEqual((response.code, body["error"]["param"]), (404, "upload_id"))

    async def test_expires_after_an_hour_on_the_service_clock(self) -> None:
        live, clock = await started(self)
        _, upload = await create(live, 3)
        await part(live, upload["id"], b"abc")
        clock.advance(3600)
        code, body = await part(live, upload["id"], b"abc")
        self.assertEqual(code, 400)
        self.assertIn("expired", body["error"]["message"])
        self.assertEqual(live.server.files.used, 0)

    async def test_limits(self) -> None:
        live, _ = await started(self, {"files": {"max_bytes": 100}})
        code, body = await create(live, 101)
        self.assertEqual((code, body["error"]["param"]), (413, "bytes"))
        _, upload = await create(live, 100)
        code, body = await part(live, upload["id"], b"x" * 101)
        self.assertEqual((code, body["error"]["code"]), (413, "file_too_large"))
        code, body = await create(live, 10, purpose="nothing")
        self.assertEqual((code, body["error"]["param"]), (400, "purpose"))
        code, body = await create(live, 10, mime_type=None)
        self.assertEqual((code, body["error"]["param"]), (400, "mime_type"))

    async def test_sdk_errors(self) -> None:
        live, _ = await started(self)
        client = live.sdk()
        with self.assertRaises(openai.NotFoundError):
            await live.in_thread(lambda: client.uploads.cancel("upload_nope"))
