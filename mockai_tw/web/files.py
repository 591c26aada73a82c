"""``/v1/files`` and ``/v1/uploads``: the routes joining the store and the wire.

A file upload's body arrives spooled to a temporary file (``spool_limit``
names the paths, ``site.BoundedBody.spooled`` holds them); its multipart is read in
pieces in a thread, straight into the store's writer, so neither the body
nor the file is ever held whole.  The store itself is only touched on the
reactor thread; the index of files and Uploads is web/files_index.py's
(this process's, or the shared store's).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from twisted.internet import threads
from twisted.web import server
from twisted.web.resource import IResource
from twisted.web.static import NoRangeStaticProducer

from mockai_tw.config import FilesConfig
from mockai_tw.errors import ApiError
from mockai_tw.files_store import MAX_PART_BYTES, FileRecord, Writer, too_large
from mockai_tw.request.files import (
    FILES_LIMIT,
    Form,
    form_expiry,
    parse_complete_upload,
    parse_create_upload,
    parse_list_query,
    purpose_of,
    read_form,
)
from mockai_tw.web.face import Face
from mockai_tw.web.files_index import FileIndex, UploadIndex
from mockai_tw.web.resources import ApiResource, ErrorResource, invalid_url
from mockai_tw.web.site import ApiRequest, BoundedBody, send_json
from mockai_tw.wire import files as wire

#: Room for a form's boundaries, headers and plain fields around the file.
FORM_OVERHEAD = 1024 * 1024


def spool_limit(
    config: Callable[[], FilesConfig],
) -> Callable[[bytes, bytes], int | None]:
    """The site's ``spooled``: the body limit of the upload paths (spooled
    to disk), None for every other path (``http.max_body_bytes``)."""

    def limit(method: bytes, path: bytes) -> int | None:
        # (every other request asks too: answered at the first test)
        if method != b"POST" or not path.startswith((b"/v1/files", b"/v1/uploads/")):
            return None
        path = path.split(b"?", 1)[0].rstrip(b"/")
        if path == b"/v1/files":
            return config().max_bytes + FORM_OVERHEAD
        if path.startswith(b"/v1/uploads/") and path.endswith(b"/parts"):
            return min(MAX_PART_BYTES, config().max_bytes) + FORM_OVERHEAD
        return None

    return limit


def file_index(face: Face) -> FileIndex:
    """The files as every process sees them (web/files_index.py)."""
    return FileIndex(face.files, lambda: face.shared)


def upload_index(face: Face) -> UploadIndex:
    return UploadIndex(face.uploads, file_index(face))


def not_found(file_id: str) -> ApiError:
    return ApiError(404, f"No such File object: {file_id}", param="id")


def _spooled(request: ApiRequest, limit: int) -> BoundedBody:
    content: Any = request.content
    if not (isinstance(content, BoundedBody) and content.on_disk):
        # Only the spooling paths route here; a bare Site in a test may not.
        raise ApiError(400, "The request must be multipart/form-data.")
    if content.overflow:
        raise too_large(limit)
    return content


async def _receive(
    face: Face, request: ApiRequest, field: str, writer: Writer, limit: int
) -> Form:
    """The form of an upload, its file part written to ``writer`` (in a
    thread: parsing and copying hundreds of MB must not stall the reactor)."""
    content_type = request.getHeader(b"content-type")
    text = content_type.decode("latin-1") if content_type else None
    try:
        content = _spooled(request, limit)
        form: Form = await threads.deferToThread(
            read_form, content, text, field, writer.write
        )
    except BaseException:
        writer.abort()
        raise
    return form


class Files(ApiResource):
    """``POST /v1/files`` (upload) and ``GET /v1/files`` (list)."""

    def render_POST(self, request: server.Request) -> int:
        return self.later(request, self._create(cast(ApiRequest, request)))

    async def _create(self, request: ApiRequest) -> bytes:
        store = self.state.files
        index = file_index(self.state)
        # Redis away (on_error: fail): refused before the body is read.
        index.store()
        writer = store.writer()
        form = await _receive(self.state, request, "file", writer, store.max_bytes)
        try:
            purpose = purpose_of(form.fields.get("purpose"))
            expiry = form_expiry(form.fields)
        except ApiError:
            writer.abort()
            raise
        record = await index.add(writer, form.filename or "file", purpose, expiry)
        return send_json(request, 200, wire.file_body(record))

    def render_GET(self, request: server.Request) -> int:
        query = parse_list_query(request.args or {}, FILES_LIMIT, orders=True)
        return self.later(request, self._list(request, query))

    async def _list(self, request: server.Request, query: Any) -> bytes:
        records, more = await file_index(self.state).listed(
            query.purpose, query.order, query.after, query.limit
        )
        body = wire.page([wire.file_json(r) for r in records], more)
        return send_json(request, 200, body)

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if not path:
            return self
        return FileItem(self.state, path.decode("utf-8", "replace"))


class _OneFile(ApiResource):
    def __init__(self, face: Face, file_id: str) -> None:
        super().__init__(face)
        self.file_id = file_id

    async def record(self) -> FileRecord:
        record = await file_index(self.state).get(self.file_id)
        if record is None:
            raise not_found(self.file_id)
        return record


class FileItem(_OneFile):
    """``GET`` / ``DELETE /v1/files/{id}``, and its ``/content``."""

    def render_GET(self, request: server.Request) -> int:
        return self.later(request, self._get(request))

    async def _get(self, request: server.Request) -> bytes:
        return send_json(request, 200, wire.file_body(await self.record()))

    def render_DELETE(self, request: server.Request) -> int:
        return self.later(request, self._delete(request))

    async def _delete(self, request: server.Request) -> bytes:
        if not await file_index(self.state).delete(self.file_id):
            raise not_found(self.file_id)
        return send_json(request, 200, wire.deleted_body(self.file_id))

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if path == b"content":
            return FileContent(self.state, self.file_id)
        return ErrorResource(invalid_url(request))


class FileContent(_OneFile):
    """``GET /v1/files/{id}/content``: the bytes, written as the client reads."""

    def render_GET(self, request: server.Request) -> int:
        return self.later(request, self._send(request))

    async def _send(self, request: server.Request) -> int:
        record = await self.record()
        try:
            content = self.state.files.open(record)
        except FileNotFoundError:
            # Deleted by another process since its record was read.
            raise not_found(self.file_id) from None
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"application/octet-stream")
        request.setHeader(b"content-length", b"%d" % record.bytes)
        name = record.filename.replace('"', "").encode("utf-8", "replace")
        request.setHeader(b"content-disposition", b'attachment; filename="%s"' % name)
        if isinstance(request, ApiRequest):
            request.setHeader(b"openai-processing-ms", request.processing_ms())
            request.answered(200)
        NoRangeStaticProducer(request, content).start()
        return server.NOT_DONE_YET


# --- the Uploads API -----------------------------------------------------------


class UploadsRoot(ApiResource):
    """``POST /v1/uploads``; ``/v1/uploads/{id}/parts|complete|cancel`` below."""

    def render_POST(self, request: server.Request) -> int:
        asked = parse_create_upload(cast(ApiRequest, request).body())
        return self.later(request, self._create(request, asked))

    async def _create(self, request: server.Request, asked: Any) -> bytes:
        upload = await upload_index(self.state).create(
            asked.filename,
            asked.purpose,
            asked.bytes,
            asked.mime_type,
            asked.expires_after_s,
        )
        return send_json(request, 200, wire.upload_body(upload))

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        return UploadItem(self.state, path.decode("utf-8", "replace"))


class UploadItem(ApiResource):
    def __init__(self, face: Face, upload_id: str) -> None:
        super().__init__(face)
        self.upload_id = upload_id

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        step = _UPLOAD_STEPS.get(path)
        if step is None:
            return ErrorResource(invalid_url(request))
        return step(self.state, self.upload_id)


class UploadParts(UploadItem):
    """``POST /v1/uploads/{id}/parts``: one part (multipart field ``data``)."""

    def render_POST(self, request: server.Request) -> int:
        return self.later(request, self._add(cast(ApiRequest, request)))

    async def _add(self, request: ApiRequest) -> bytes:
        uploads = upload_index(self.state)
        upload = await uploads.pending(self.upload_id)
        limit = uploads.part_limit()
        writer = self.state.files.writer(limit=limit)
        await _receive(self.state, request, "data", writer, limit)
        try:
            # It may have been completed or cancelled while this part came in.
            upload = await uploads.pending(self.upload_id)
        except BaseException:
            writer.abort()
            raise
        part = await uploads.add_part(upload, writer)
        return send_json(request, 200, wire.part_body(part, upload.id))


class UploadComplete(UploadItem):
    """``POST /v1/uploads/{id}/complete``: the parts joined, in the order given."""

    def render_POST(self, request: server.Request) -> int:
        asked = parse_complete_upload(cast(ApiRequest, request).body())
        return self.later(request, self._complete(request, asked))

    async def _complete(self, request: server.Request, asked: Any) -> bytes:
        uploads = upload_index(self.state)
        upload = await uploads.pending(self.upload_id)
        await uploads.complete(upload, asked.part_ids, asked.md5)
        return send_json(request, 200, wire.upload_body(upload))


class UploadCancel(UploadItem):
    def render_POST(self, request: server.Request) -> int:
        return self.later(request, self._cancel(request))

    async def _cancel(self, request: server.Request) -> bytes:
        uploads = upload_index(self.state)
        upload = await uploads.pending(self.upload_id)
        await uploads.cancel(upload)
        return send_json(request, 200, wire.upload_body(upload))


_UPLOAD_STEPS: dict[bytes, Callable[[Face, str], IResource]] = {
    b"parts": UploadParts,
    b"complete": UploadComplete,
    b"cancel": UploadCancel,
}
