"""``/v1/files``: uploads streamed to disk (or memory), listed, read, deleted.

Against a live listener with the official ``openai`` SDK (in a thread) and
raw multipart through treq; every body checked against the OpenAPI schemas.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from typing import Any

import openai

import treq
from twisted.internet import task
from twisted.trial.unittest import TestCase

from mockai_tw.config import Config, FilesConfig
from mockai_tw.files_store import FileStore
from mockai_tw.request.files import read_form
from mockai_tw.server import MockServer
from mockai_tw.testing import start
from tests.openapi import validate
from tests.support import Live
from tests.support import start as start_live

#: Where the driven clock starts (a plausible Unix time).
T0 = 1_800_000_000.0


def present(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` without its null keys: the API sends null where the OpenAPI
    description types a field as non-nullable (``expires_at``...)."""
    return {k: v for k, v in body.items() if v is not None}


def form(
    fields: dict[str, str],
    name: str = "file",
    filename: str = "data.jsonl",
    content: bytes = b"",
) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type."""
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for key, value in fields.items():
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}";'
        f' filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
    )
    out.write(head.encode())
    out.write(content)
    out.write(f"\r\n--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


async def upload(
    live: Live, content: bytes, purpose: str = "batch", **fields: str
) -> tuple[int, Any]:
    body, ctype = form({"purpose": purpose, **fields}, content=content)
    response = await live.request(
        "POST", "/v1/files", raw=body, headers={"Content-Type": ctype}
    )
    return response.code, json.loads(await treq.content(response))


async def started(
    case: TestCase, config: dict[str, Any] | None = None
) -> tuple[Live, task.Clock]:
    """A live server whose service clock is a ``task.Clock`` the test drives."""
    live = await start_live(case, config)
    clock = task.Clock()
    clock.advance(T0)
    live.server.use_clock(clock)
    return live, clock


class FilesSdkTests(TestCase):
    async def test_upload_retrieve_list_content_delete(self) -> None:
        live, _ = await started(self)
        client = live.sdk()
        data = b'{"a": 1}\n' * 100
        made = await live.in_thread(
            lambda: client.files.create(file=("in.jsonl", data), purpose="batch")
        )
        self.assertTrue(made.id.startswith("file-"))
        self.assertEqual(
            (made.bytes, made.filename, made.purpose, made.status),
            (len(data), "in.jsonl", "batch", "processed"),
        )
        self.assertEqual(made.created_at, int(T0))
        raw = await live.json("GET", f"/v1/files/{made.id}")
        validate(present(raw[1]), "OpenAIFile")
        got = await live.in_thread(lambda: client.files.retrieve(made.id))
        self.assertEqual(got, made)
        content = await live.in_thread(lambda: client.files.content(made.id).content)
        self.assertEqual(content, data)
        gone = await live.in_thread(lambda: client.files.delete(made.id))
        self.assertTrue(gone.deleted)
        _, deleted = await live.json("DELETE", f"/v1/files/{made.id}")
        self.assertEqual(deleted["error"]["message"], f"No such File object: {made.id}")
        with self.assertRaises(openai.NotFoundError):
            await live.in_thread(lambda: client.files.retrieve(made.id))

    async def test_delete_body(self) -> None:
        live, _ = await started(self)
        code, made = await upload(live, b"x", purpose="user_data")
        self.assertEqual(code, 200)
        response, body = await live.json("DELETE", f"/v1/files/{made['id']}")
        self.assertEqual(response.code, 200)
        validate(body, "DeleteFileResponse")
        self.assertEqual(body, {"id": made["id"], "object": "file", "deleted": True})

    async def test_list_filters_orders_and_pages(self) -> None:
        live, clock = await started(self)
        ids = []
        for purpose in ("batch", "vision", "batch", "batch"):
            code, made = await upload(live, b"z", purpose=purpose)
            self.assertEqual(code, 200)
            ids.append(made["id"])
            clock.advance(1)
        _, page = await live.json("GET", "/v1/files")
        validate(page, "ListFilesResponse")
        self.assertEqual([f["id"] for f in page["data"]], ids[::-1])
        _, page = await live.json("GET", "/v1/files?purpose=batch&order=asc&limit=2")
        validate(page, "ListFilesResponse")
        self.assertEqual([f["id"] for f in page["data"]], [ids[0], ids[2]])
        self.assertTrue(page["has_more"])
        self.assertEqual((page["first_id"], page["last_id"]), (ids[0], ids[2]))
        after = page["last_id"]
        _, rest = await live.json(
            "GET", f"/v1/files?purpose=batch&order=asc&limit=2&after={after}"
        )
        self.assertEqual([f["id"] for f in rest["data"]], [ids[3]])
        self.assertFalse(rest["has_more"])
        client = live.sdk()
        every = await live.in_thread(
            lambda: [f.id for f in client.files.list(order="asc", limit=1)]
        )
        self.assertEqual(every, ids)
        response, bad = await live.json("GET", "/v1/files?limit=0")
        self.assertEqual((response.code, bad["error"]["param"]), (400, "limit"))
        response, bad = await live.json("GET", "/v1/files?order=up")
        self.assertEqual((response.code, bad["error"]["param"]), (400, "order"))

    async def test_expires_after_on_the_service_clock(self) -> None:
        live, clock = await started(self)
        client = live.sdk()
        made = await live.in_thread(
            lambda: client.files.create(
                file=("a.txt", b"hello"),
                purpose="user_data",
                expires_after={"anchor": "created_at", "seconds": 3600},
            )
        )
        self.assertEqual(made.expires_at, int(T0) + 3600)
        clock.advance(3599)
        await live.in_thread(lambda: client.files.retrieve(made.id))
        clock.advance(1)
        with self.assertRaises(openai.NotFoundError):
            await live.in_thread(lambda: client.files.retrieve(made.id))

    async def test_memory_backend(self) -> None:
        live, _ = await started(self, {"files": {"backend": "memory"}})
        self.assertIsNone(live.server.files.dir)
        client = live.sdk()
        made = await live.in_thread(
            lambda: client.files.create(
                file=("m.bin", b"\x00\x01" * 5000), purpose="vision"
            )
        )
        content = await live.in_thread(lambda: client.files.content(made.id).content)
        self.assertEqual(content, b"\x00\x01" * 5000)


class FilesRefusalTests(TestCase):
    async def test_bad_purpose_missing_file_and_bad_expiry(self) -> None:
        live, _ = await started(self)
        code, body = await upload(live, b"x", purpose="homework")
        self.assertEqual((code, body["error"]["param"]), (400, "purpose"))
        self.assertEqual(body["error"]["type"], "invalid_request_error")
        self.assertEqual(set(body["error"]), {"message", "type", "param", "code"})
        code, body = await upload(
            live,
            b"x",
            **{"expires_after[anchor]": "created_at", "expires_after[seconds]": "10"},
        )
        self.assertEqual((code, body["error"]["param"]), (400, "expires_after.seconds"))
        raw, ctype = form({"purpose": "batch"}, name="other")
        response = await live.request(
            "POST", "/v1/files", raw=raw, headers={"Content-Type": ctype}
        )
        body = json.loads(await treq.content(response))
        self.assertEqual((response.code, body["error"]["param"]), (400, "file"))
        self.assertEqual(body["error"]["code"], "missing_required_parameter")

    async def test_not_multipart_and_malformed(self) -> None:
        live, _ = await started(self)
        response, body = await live.json("POST", "/v1/files", {"purpose": "batch"})
        self.assertEqual(response.code, 400)
        self.assertIn("multipart/form-data", body["error"]["message"])
        response = await live.request(
            "POST",
            "/v1/files",
            raw=b"--abc\r\nnot a header line at all\r\n",
            headers={"Content-Type": "multipart/form-data; boundary=abc"},
        )
        body = json.loads(await treq.content(response))
        self.assertEqual(response.code, 400)
        self.assertIn("multipart", body["error"]["message"])

    async def test_max_bytes_is_the_apis_413(self) -> None:
        live, _ = await started(self, {"files": {"max_bytes": 1000}})
        code, body = await upload(live, b"x" * 1001)
        self.assertEqual((code, body["error"]["code"]), (413, "file_too_large"))
        code, _ = await upload(live, b"x" * 1000)
        self.assertEqual(code, 200)
        # Far past the limit: refused as it arrives, not after it is kept.
        code, body = await upload(live, b"x" * 3_000_000)
        self.assertEqual(code, 413)
        self.assertEqual(os.listdir(live.server.files.dir), [_single(live)])

    async def test_total_bytes_refuses_with_400_and_delete_makes_room(self) -> None:
        live, _ = await started(self, {"files": {"total_bytes": 1500}})
        code, first = await upload(live, b"a" * 1000)
        self.assertEqual(code, 200)
        code, body = await upload(live, b"b" * 1000)
        self.assertEqual(
            (code, body["error"]["code"]), (400, "file_storage_limit_exceeded")
        )
        await live.json("DELETE", f"/v1/files/{first['id']}")
        code, _ = await upload(live, b"b" * 1000)
        self.assertEqual(code, 200)

    async def test_uploads_get_a_larger_body_limit_than_json(self) -> None:
        # http.max_body_bytes bounds JSON bodies; an upload is spooled to
        # disk and bounded by files.max_bytes instead.
        live, _ = await started(self, {"http": {"max_body_bytes": 1024}})
        big = b"y" * 2_000_000
        code, made = await upload(live, big)
        self.assertEqual((code, made["bytes"]), (200, len(big)))
        response, body = await live.json(
            "POST",
            "/v1/chat/completions",
            {"model": "gpt-4o", "messages": [{"role": "user", "content": "x" * 2000}]},
        )
        self.assertEqual(
            (response.code, body["error"]["code"]), (413, "request_too_large")
        )

    async def test_unknown_file_and_method(self) -> None:
        live, _ = await started(self)
        response, body = await live.json("GET", "/v1/files/file-nope/content")
        self.assertEqual(response.code, 404)
        self.assertEqual(body["error"]["message"], "No such File object: file-nope")
        response, body = await live.json("PUT", "/v1/files")
        self.assertEqual(response.code, 405)


def _single(live: Live) -> str:
    store = live.server.files
    (record,) = store.files.values()
    assert record.path is not None
    return os.path.basename(record.path)


class StorageTests(TestCase):
    def test_made_dir_removed_at_close_given_dir_kept(self) -> None:
        server = MockServer(_config({"access_token": "k"}), task.Clock())
        made = server.files.dir
        assert made is not None
        self.assertTrue(os.path.isdir(made))
        server.close()
        self.assertFalse(os.path.exists(made))
        given = self.mktemp()
        store = FileStore(FilesConfig(dir=given), lambda: 0.0)
        writer = store.writer()
        writer.write(b"kept")
        record = store.add(writer, "k.txt", "user_data")
        store.close()
        with open(os.path.join(given, record.id), "rb") as f:
            self.assertEqual(f.read(), b"kept")

    async def test_stopping_the_helper_removes_its_files_dir(self) -> None:
        mock = await start({})
        made = mock.server.files.dir
        assert made is not None
        self.assertTrue(os.path.isdir(made))
        await mock.stop()
        self.assertFalse(os.path.exists(made))

    def test_form_parser_streams_the_file_part(self) -> None:
        content = os.urandom(300_000) + b"\r\n--not-the-boundary\r\n"
        body, ctype = form({"purpose": "batch"}, content=content)
        pieces: list[bytes] = []
        parsed = read_form(
            io.BytesIO(body), ctype, "file", lambda p: pieces.append(bytes(p))
        )
        self.assertEqual(b"".join(pieces), content)
        self.assertGreater(len(pieces), 1)
        self.assertEqual(parsed.fields, {"purpose": "batch"})
        self.assertEqual(
            (parsed.filename, parsed.file_bytes), ("data.jsonl", len(content))
        )


def _config(raw: dict[str, Any]) -> Config:
    from mockai_tw.config_load import parse_config

    return parse_config(raw, {})
