"""Files and Uploads as every process sees them.

With ``state.backend: memory`` (or Redis away under ``on_error: local``)
this is this process's ``FileStore`` and ``Uploads``, as before.  With
``redis`` the store's ``kv`` namespaces are the index (state/files.py: adds
refused past ``files.max_files`` and a byte total every process charges)
and the content is on ``files.dir``, which every process must read: a file
uploaded through one worker or replica is listed, read and deleted through
any other.  Records are JSON, never pickled; a content path is never
shared, only the name in ``files.dir``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from twisted.internet import defer

from mockai_tw.engine.ids import new_id
from mockai_tw.errors import ApiError
from mockai_tw.files_store import (
    MAX_PARTS,
    FileRecord,
    FileStore,
    PartRecord,
    UploadRecord,
    Uploads,
    Writer,
    storage_full,
    too_many,
)
from mockai_tw.state.types import StoreUnavailable
from mockai_tw.web.shared import Shared, json_record, unavailable

if TYPE_CHECKING:
    from mockai_tw.state.files import SharedFiles

T = TypeVar("T")

FILES = "files"
UPLOADS = "uploads"


async def call(d: defer.Deferred[T]) -> T:
    """``d``'s result; the store lost on the way is the API's 503."""
    try:
        return await d
    except StoreUnavailable:
        raise unavailable() from None


def store_of(shared: Shared | None) -> SharedFiles | None:
    """The shared files store to use now: None for this process's own
    (no Redis, or Redis away under ``on_error: local``); Redis away under
    ``on_error: fail`` is the API's 503."""
    if shared is None or shared.local:
        return None
    if not shared.connected:
        raise unavailable()
    return shared.files


# --- records as JSON -------------------------------------------------------------


def file_json(record: FileRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "bytes": record.bytes,
        "created_at": record.created_at,
        "filename": record.filename,
        "purpose": record.purpose,
        "status": record.status,
        "expires_at": record.expires_at,
    }


def file_from(value: dict[str, Any], local: FileStore) -> FileRecord:
    return FileRecord(
        id=str(value["id"]),
        bytes=int(value["bytes"]),
        created_at=int(value["created_at"]),
        filename=str(value["filename"]),
        purpose=str(value["purpose"]),
        status=str(value.get("status", "processed")),
        expires_at=value.get("expires_at"),
        path=local.path_of(str(value["id"])),
    )


def _expired(expires_at: int | None, now: float) -> bool:
    return expires_at is not None and expires_at <= now


class FileIndex:
    """The files of the server (``face.files`` stays this process's store:
    the content and the writers are always local)."""

    def __init__(self, local: FileStore, shared: Callable[[], Shared | None]) -> None:
        self.local = local
        self._shared = shared

    def store(self) -> SharedFiles | None:
        return store_of(self._shared())

    @property
    def config(self) -> Any:
        return self.local.config

    async def add(
        self,
        writer: Writer,
        filename: str,
        purpose: str,
        expires_after_s: int | None = None,
    ) -> FileRecord:
        """A new file from ``writer``, or the API's 400 past the bounds."""
        shared = self.store()
        if shared is None:
            return self.local.add(writer, filename, purpose, expires_after_s)
        record = self.local.place(writer, filename, purpose, expires_after_s)
        try:
            for retry in (True, False):
                got = await call(self._add(shared, record))
                if got == 0:
                    return record
                if retry:
                    # Expired files still hold room until something reads them.
                    await self.sweep(shared)
            config = self.config
            if got == 1:
                raise too_many(config.max_files)
            raise storage_full(config.total_bytes)
        except BaseException:
            self.local.discard(record)
            raise

    def _add(
        self, shared: SharedFiles, record: FileRecord, force: bool = False
    ) -> defer.Deferred[int]:
        config = self.config
        blob = orjson.dumps(file_json(record))
        return shared.add(
            FILES,
            record.id,
            blob,
            config.max_files,
            record.bytes,
            config.total_bytes,
            force,
        )

    def keep(
        self, writer: Writer, filename: str, purpose: str, expires_after_s: int | None
    ) -> tuple[FileRecord, defer.Deferred[Any] | None]:
        """A batch's output file, always kept and counted; with shared state
        its index entry is written in the background (the Deferred), before
        whatever this process writes next."""
        shared = self._shared()
        if shared is None or not shared.connected:
            made = self.local.add(writer, filename, purpose, expires_after_s, True)
            return made, None
        files = store_of(shared)
        assert files is not None
        record = self.local.place(writer, filename, purpose, expires_after_s)
        return record, self._add(files, record, force=True)

    async def get(self, file_id: str) -> FileRecord | None:
        shared = self.store()
        if shared is None:
            return self.local.get(file_id)
        value = json_record(await call(shared.store.kv_get(FILES, file_id)))
        if value is None:
            return None
        record = file_from(value, self.local)
        if _expired(record.expires_at, self.local.now()):
            await call(self._drop(shared, record))
            return None
        return record

    def _drop(self, shared: SharedFiles, record: FileRecord) -> defer.Deferred[bool]:
        def dropped(there: bool) -> bool:
            if there:
                self.local.discard(record)
            return there

        return shared.drop(FILES, record.id, record.bytes).addCallback(dropped)

    async def delete(self, file_id: str) -> bool:
        shared = self.store()
        if shared is None:
            return self.local.delete(file_id)
        value = json_record(await call(shared.store.kv_get(FILES, file_id)))
        if value is None:
            return False
        return await call(self._drop(shared, file_from(value, self.local)))

    async def sweep(self, shared: SharedFiles) -> list[FileRecord]:
        """Every file kept, the expired ones dropped on the way."""
        blobs = await call(shared.store.kv_all(FILES))
        now = self.local.now()
        kept: list[FileRecord] = []
        for blob in blobs:
            value = json_record(blob)
            if value is None:
                continue
            record = file_from(value, self.local)
            if _expired(record.expires_at, now):
                await call(self._drop(shared, record))
            else:
                kept.append(record)
        return kept

    async def listed(
        self, purpose: str | None, order: str, after: str | None, limit: int
    ) -> tuple[list[FileRecord], bool]:
        shared = self.store()
        if shared is None:
            return self.local.listed(purpose, order, after, limit)
        records = [r for r in await self.sweep(shared) if purpose in (None, r.purpose)]
        # Creation order, as this process's own list has it (ties by id).
        records.sort(key=lambda r: (r.created_at, r.id), reverse=order == "desc")
        if after is not None:
            ids = [r.id for r in records]
            records = records[ids.index(after) + 1 :] if after in ids else []
        return records[:limit], len(records) > limit


# --- Uploads -----------------------------------------------------------------------


def upload_json(upload: UploadRecord) -> dict[str, Any]:
    return {
        "id": upload.id,
        "filename": upload.filename,
        "purpose": upload.purpose,
        "bytes": upload.bytes,
        "mime_type": upload.mime_type,
        "created_at": upload.created_at,
        "expires_at": upload.expires_at,
        "expires_after_s": upload.expires_after_s,
        "status": upload.status,
        "file": None if upload.file is None else file_json(upload.file),
    }


def _not_found(upload_id: str) -> ApiError:
    return ApiError(404, f"No such Upload: {upload_id}", param="upload_id", code=None)


class UploadIndex:
    """The Uploads of the server; their parts' content is local like a
    file's (``files.dir``), their list in the store."""

    def __init__(self, local: Uploads, files: FileIndex) -> None:
        self.local = local
        self.files = files

    def part_limit(self) -> int:
        return self.local.part_limit()

    def _put(self, shared: SharedFiles, upload: UploadRecord) -> defer.Deferred[int]:
        blob = orjson.dumps(upload_json(upload))
        return shared.store.kv_put(
            UPLOADS, upload.id, blob, self.files.config.max_files
        )

    async def create(
        self,
        filename: str,
        purpose: str,
        size: int,
        mime_type: str,
        expires_after_s: int | None,
    ) -> UploadRecord:
        shared = self.files.store()
        if shared is None:
            return self.local.create(
                filename, purpose, size, mime_type, expires_after_s
            )
        upload = self.local.make(filename, purpose, size, mime_type, expires_after_s)
        most = self.files.config.max_files
        blob = orjson.dumps(upload_json(upload))
        if await call(shared.add(UPLOADS, upload.id, blob, most)) != 0:
            raise too_many(most)
        return upload

    async def get(self, upload_id: str) -> UploadRecord:
        shared = self.files.store()
        if shared is None:
            return self.local.get(upload_id)
        value = json_record(await call(shared.store.kv_get(UPLOADS, upload_id)))
        if value is None:
            raise _not_found(upload_id)
        found = value.get("file")
        upload = UploadRecord(
            id=str(value["id"]),
            filename=str(value["filename"]),
            purpose=str(value["purpose"]),
            bytes=int(value["bytes"]),
            mime_type=str(value["mime_type"]),
            created_at=int(value["created_at"]),
            expires_at=int(value["expires_at"]),
            expires_after_s=value.get("expires_after_s"),
            status=str(value["status"]),
            file=None if found is None else file_from(found, self.files.local),
        )
        if upload.status == "pending" and upload.expires_at <= self.local.store.now():
            await self._drop_parts(shared, upload)
            upload.status = "expired"
            await call(self._put(shared, upload))
        return upload

    async def pending(self, upload_id: str) -> UploadRecord:
        if self.files.store() is None:
            return self.local.pending(upload_id)
        upload = await self.get(upload_id)
        if upload.status != "pending":
            raise ApiError(
                400,
                f"Upload {upload_id} is {upload.status}: it accepts no more changes.",
                param="upload_id",
            )
        return upload

    async def _close(self, shared: SharedFiles, upload: UploadRecord) -> None:
        """Only one process completes or cancels an Upload: the other of two
        at once is told it accepts no more changes (as once it has ended)."""
        if not await call(shared.close(upload.id)):
            raise ApiError(
                400,
                f"Upload {upload.id} is being completed or cancelled: it accepts"
                " no more changes.",
                param="upload_id",
            )

    async def _parts(self, shared: SharedFiles, upload: UploadRecord) -> None:
        """The Upload's parts, from the store, into ``upload.parts``."""
        store = self.files.local
        parts = []
        for blob in await call(shared.parts(upload.id)):
            value = json_record(blob)
            if value is None:
                continue
            name = value.get("name")
            parts.append(
                PartRecord(
                    id=str(value["id"]),
                    created_at=int(value["created_at"]),
                    bytes=int(value["bytes"]),
                    path=None if name is None else store.path_of(str(name)),
                )
            )
        parts.sort(key=lambda p: (p.created_at, p.id))
        upload.parts = {p.id: p for p in parts}

    async def add_part(self, upload: UploadRecord, writer: Writer) -> PartRecord:
        shared = self.files.store()
        if shared is None:
            return self.local.add_part(upload, writer)
        try:
            held: Sequence[bytes] = await call(shared.parts(upload.id))
            count = len(held)
            if count >= MAX_PARTS:
                raise ApiError(
                    400, f"An Upload has at most {MAX_PARTS} parts.", param="data"
                )
            total = self.files.config.total_bytes
            if not await call(shared.charge(writer.size, total)):
                raise storage_full(total)
        except BaseException:
            writer.abort()
            raise
        part = PartRecord(
            id=new_id("part_", 24),
            created_at=int(self.local.store.now()),
            bytes=writer.size,
            path=writer.path,
        )
        writer.closed = True
        writer.sink.close()
        blob = orjson.dumps(
            {
                "id": part.id,
                "created_at": part.created_at,
                "bytes": part.bytes,
                "name": None if part.path is None else os.path.basename(part.path),
            }
        )
        await call(shared.part_add(upload.id, part.id, blob))
        return part

    async def complete(
        self, upload: UploadRecord, part_ids: tuple[str, ...], md5: str | None
    ) -> FileRecord:
        shared = self.files.store()
        if shared is None:
            return self.local.complete(upload, part_ids, md5)
        await self._close(shared, upload)
        try:
            await self._parts(shared, upload)
            writer = self.local.join(upload, part_ids, md5)
        except BaseException:
            # A refused complete (parts, size, md5) leaves it open to retry.
            await call(shared.reopen(upload.id))
            raise
        # The joined file takes the place of the parts it was made of.
        held = sum(p.bytes for p in upload.parts.values())
        await call(shared.charge(-held, 0))
        try:
            file = await self.files.add(
                writer, upload.filename, upload.purpose, upload.expires_after_s
            )
        except BaseException:
            await call(shared.charge(held, 1 << 62))
            raise
        await self._drop_parts(shared, upload, loaded=True, give_back=False)
        upload.status = "completed"
        upload.file = file
        await call(self._put(shared, upload))
        return file

    async def cancel(self, upload: UploadRecord) -> None:
        shared = self.files.store()
        if shared is None:
            self.local.cancel(upload)
            return
        await self._close(shared, upload)
        await self._drop_parts(shared, upload)
        upload.status = "cancelled"
        await call(self._put(shared, upload))

    async def _drop_parts(
        self,
        shared: SharedFiles,
        upload: UploadRecord,
        loaded: bool = False,
        give_back: bool = True,
    ) -> None:
        if not loaded:
            await self._parts(shared, upload)
        held = sum(p.bytes for p in upload.parts.values())
        for part in upload.parts.values():
            if part.path is not None:
                self.files.local.unlink(part.path)
        upload.parts.clear()
        await call(shared.parts_drop(upload.id))
        if held and give_back:
            await call(shared.charge(-held, 0))
