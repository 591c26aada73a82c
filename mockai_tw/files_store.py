"""Uploaded files: their metadata, and their content on disk or in memory.

This process's own (see README, "Files, Uploads and Batches"): the metadata
is a dict, the content a file under ``files.dir`` (written in chunks, never
held whole) or, with ``files.backend: memory``, bytes.  With shared state
the index is the store's (web/files_index.py) and only the content is here.
Bounds: ``files.max_bytes`` a file, ``files.total_bytes`` all of them,
``files.max_files`` how many.  Knows nothing of HTTP or Twisted; time comes
from the ``now`` it is given.
"""

from __future__ import annotations

import builtins
import contextlib
import hashlib
import io
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from mockai_tw.config import FilesConfig
from mockai_tw.engine.ids import new_id
from mockai_tw.errors import ApiError

#: Read and copy in pieces of this size.
CHUNK = 64 * 1024


@dataclass
class FileRecord:
    """One file as the API shows it (``OpenAIFile``)."""

    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str = "processed"
    expires_at: int | None = None
    # Where the content is: a path (disk) or the bytes (memory).
    path: str | None = field(default=None, repr=False)
    data: builtins.bytes | None = field(default=None, repr=False)


def too_large(limit: int, param: str = "file") -> ApiError:
    return ApiError(
        413,
        f"File is too large: the limit is {limit} bytes.",
        param=param,
        code="file_too_large",
    )


def storage_full(limit: int) -> ApiError:
    return ApiError(
        400,
        f"Storing this file would exceed the server's file storage limit of"
        f" {limit} bytes (files.total_bytes). Delete files to make room.",
        code="file_storage_limit_exceeded",
    )


def too_many(limit: int) -> ApiError:
    return ApiError(
        400,
        f"The server keeps at most {limit} files (files.max_files)."
        " Delete files to make room.",
        code="file_storage_limit_exceeded",
    )


class Writer:
    """Content being written: counted, hashed, bounded by ``limit``."""

    def __init__(self, sink: BinaryIO, path: str | None, limit: int) -> None:
        self.sink = sink
        self.path = path
        self.limit = limit
        self.size = 0
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise too_large(self.limit)
        self.md5.update(data)
        self.sink.write(data)

    def abort(self) -> None:
        """Throw the content away (a failed or refused upload)."""
        if self.closed:
            return
        self.closed = True
        self.sink.close()
        if self.path is not None:
            _remove(self.path)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class FileStore:
    """The files of this process, in creation order."""

    def __init__(self, config: FilesConfig, now: Callable[[], float]) -> None:
        self.config = config
        self.now = now
        self.files: dict[str, FileRecord] = {}
        # Bytes held by files and by content still being written (parts).
        self.used = 0
        self.made_dir = False
        self._dir: str | None = None
        if config.backend == "disk" and config.dir is not None:
            self._dir = config.dir
            os.makedirs(self._dir, exist_ok=True)

    @property
    def dir(self) -> str | None:
        """Where content goes (None: in memory). A directory of its own is
        made at first use, so a process that never stores a file (or a test
        that never stops its server) leaves none behind."""
        if self._dir is None and self.config.backend == "disk":
            self._dir = tempfile.mkdtemp(prefix="mockai-files-")
            self.made_dir = True
        return self._dir

    @property
    def max_bytes(self) -> int:
        return self.config.max_bytes

    def close(self) -> None:
        """At stop: a directory this store made goes, with what is in it."""
        if self.made_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self.made_dir = False
            self._dir = None

    # --- writing ------------------------------------------------------------

    def writer(self, limit: int | None = None) -> Writer:
        """Somewhere to write new content (``limit``: default files.max_bytes)."""
        limit = self.max_bytes if limit is None else limit
        if self.dir is None:
            return Writer(io.BytesIO(), None, limit)
        fd, path = tempfile.mkstemp(prefix=".incoming-", dir=self.dir)
        return Writer(os.fdopen(fd, "wb"), path, limit)

    def reserve(self, size: int) -> None:
        """Count ``size`` bytes against files.total_bytes, or refuse."""
        if self.used + size > self.config.total_bytes:
            raise storage_full(self.config.total_bytes)
        self.used += size

    def release(self, size: int) -> None:
        self.used = max(0, self.used - size)

    def add(
        self,
        writer: Writer,
        filename: str,
        purpose: str,
        expires_after_s: int | None = None,
        force: bool = False,
    ) -> FileRecord:
        """The written content as a new file.

        Refused past files.total_bytes or files.max_files (the content goes),
        unless ``force``: a batch's output is kept and counted, and new
        uploads are refused until room is made.
        """
        try:
            self._sweep()
            if not force:
                if len(self.files) >= self.config.max_files:
                    raise too_many(self.config.max_files)
                self.reserve(writer.size)
        except ApiError:
            writer.abort()
            raise
        if force:
            self.used += writer.size
        record = self.place(writer, filename, purpose, expires_after_s)
        self.files[record.id] = record
        return record

    def place(
        self,
        writer: Writer,
        filename: str,
        purpose: str,
        expires_after_s: int | None = None,
    ) -> FileRecord:
        """The written content put where a file's goes (``files.dir``/id), as
        a record nobody keeps yet: the shared store's index adds it."""
        created = int(self.now())
        record = FileRecord(
            id=new_id("file-", 22),
            bytes=writer.size,
            created_at=created,
            filename=filename,
            purpose=purpose,
            expires_at=None if expires_after_s is None else created + expires_after_s,
        )
        sink = writer.sink
        writer.closed = True
        if writer.path is None:
            record.data = sink.getvalue()  # type: ignore[attr-defined]
            sink.close()
        else:
            sink.close()
            record.path = self.path_of(record.id)
            os.replace(writer.path, record.path)
        return record

    def path_of(self, name: str) -> str:
        """Where content named ``name`` is in ``files.dir`` (only a bare
        name: a record read from the store names no directory)."""
        assert self.dir is not None
        return os.path.join(self.dir, os.path.basename(name))

    def discard(self, record: FileRecord) -> None:
        """The content of a file no index keeps (refused, or deleted)."""
        if record.path is not None:
            _remove(record.path)

    def unlink(self, path: str) -> None:
        _remove(path)

    # --- reading ------------------------------------------------------------

    def get(self, file_id: str) -> FileRecord | None:
        self._sweep()
        return self.files.get(file_id)

    def open(self, record: FileRecord) -> BinaryIO:
        if record.path is not None:
            return open(record.path, "rb")
        return io.BytesIO(record.data or b"")

    def chunks(self, record: FileRecord) -> Iterator[bytes]:
        with self.open(record) as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def delete(self, file_id: str) -> bool:
        record = self.files.pop(file_id, None)
        if record is None:
            return False
        self.release(record.bytes)
        if record.path is not None:
            _remove(record.path)
        return True

    def listed(
        self, purpose: str | None, order: str, after: str | None, limit: int
    ) -> tuple[list[FileRecord], bool]:
        """A page of files (newest first for ``desc``) and whether more follow."""
        self._sweep()
        records = [r for r in self.files.values() if purpose in (None, r.purpose)]
        if order == "desc":
            records.reverse()
        if after is not None:
            ids = [r.id for r in records]
            records = records[ids.index(after) + 1 :] if after in ids else []
        return records[:limit], len(records) > limit

    def _sweep(self) -> None:
        """Expired files go (``expires_at`` passed on the service's clock)."""
        now = self.now()
        for record in [
            r
            for r in self.files.values()
            if r.expires_at is not None and r.expires_at <= now
        ]:
            self.delete(record.id)


# --- the Uploads API: a file sent in parts ------------------------------------

#: An Upload must be completed within an hour (the API's).
UPLOAD_TTL_S = 3600
#: A part is at most 64 MB (the API's), and an Upload has at most this many.
MAX_PART_BYTES = 64 * 1024 * 1024
MAX_PARTS = 10_000


@dataclass
class PartRecord:
    id: str
    created_at: int
    bytes: int
    path: str | None = field(default=None, repr=False)
    data: builtins.bytes | None = field(default=None, repr=False)


@dataclass
class UploadRecord:
    """An ``Upload``: the file it will be, and the parts sent so far."""

    id: str
    filename: str
    purpose: str
    bytes: int
    mime_type: str
    created_at: int
    expires_at: int
    expires_after_s: int | None = None
    status: str = "pending"
    file: FileRecord | None = None
    parts: dict[str, PartRecord] = field(default_factory=dict)


def _not_found(kind: str, key: str, param: str) -> ApiError:
    return ApiError(404, f"No such {kind}: {key}", param=param, code=None)


class Uploads:
    """The Uploads of one store: parts are counted against its total."""

    def __init__(self, store: FileStore) -> None:
        self.store = store
        self.uploads: dict[str, UploadRecord] = {}

    def create(
        self,
        filename: str,
        purpose: str,
        size: int,
        mime_type: str,
        expires_after_s: int | None,
    ) -> UploadRecord:
        self._sweep()
        if len(self.uploads) >= self.store.config.max_files:
            raise too_many(self.store.config.max_files)
        upload = self.make(filename, purpose, size, mime_type, expires_after_s)
        self.uploads[upload.id] = upload
        return upload

    def make(
        self,
        filename: str,
        purpose: str,
        size: int,
        mime_type: str,
        expires_after_s: int | None,
    ) -> UploadRecord:
        """A new pending Upload nobody keeps yet (the caller's index adds it)."""
        if size > self.store.max_bytes:
            raise too_large(self.store.max_bytes, "bytes")
        now = int(self.store.now())
        upload = UploadRecord(
            id=new_id("upload_", 24),
            filename=filename,
            purpose=purpose,
            bytes=size,
            mime_type=mime_type,
            created_at=now,
            expires_at=now + UPLOAD_TTL_S,
            expires_after_s=expires_after_s,
        )
        return upload

    def get(self, upload_id: str) -> UploadRecord:
        self._sweep()
        upload = self.uploads.get(upload_id)
        if upload is None:
            raise _not_found("Upload", upload_id, "upload_id")
        return upload

    def pending(self, upload_id: str) -> UploadRecord:
        upload = self.get(upload_id)
        if upload.status != "pending":
            raise ApiError(
                400,
                f"Upload {upload_id} is {upload.status}: it accepts no more changes.",
                param="upload_id",
            )
        return upload

    def part_limit(self) -> int:
        return min(MAX_PART_BYTES, self.store.max_bytes)

    def add_part(self, upload: UploadRecord, writer: Writer) -> PartRecord:
        """The written content as the next part (counted against the total)."""
        try:
            if len(upload.parts) >= MAX_PARTS:
                raise ApiError(
                    400, f"An Upload has at most {MAX_PARTS} parts.", param="data"
                )
            self.store.reserve(writer.size)
        except ApiError:
            writer.abort()
            raise
        part = PartRecord(
            id=new_id("part_", 24), created_at=int(self.store.now()), bytes=writer.size
        )
        writer.closed = True
        if writer.path is None:
            part.data = writer.sink.getvalue()  # type: ignore[attr-defined]
        else:
            part.path = writer.path
        writer.sink.close()
        upload.parts[part.id] = part
        return part

    def complete(
        self, upload: UploadRecord, part_ids: tuple[str, ...], md5: str | None
    ) -> FileRecord:
        """The parts joined in the order given, checked, as a new file."""
        writer = self.join(upload, part_ids, md5)
        # The joined file takes the place of the parts it was made of.
        held = sum(p.bytes for p in upload.parts.values())
        self.store.release(held)
        try:
            file = self.store.add(
                writer, upload.filename, upload.purpose, upload.expires_after_s
            )
        except ApiError:
            self.store.used += held
            raise
        self.store.used += held
        self._drop_parts(upload)
        upload.status = "completed"
        upload.file = file
        return file

    def join(
        self, upload: UploadRecord, part_ids: tuple[str, ...], md5: str | None
    ) -> Writer:
        """The parts named, checked against the Upload, written as one."""
        for i, part_id in enumerate(part_ids):
            if part_id not in upload.parts:
                raise ApiError(
                    400,
                    f"Part {part_id} does not belong to Upload {upload.id}.",
                    param=f"part_ids[{i}]",
                )
        if len(set(part_ids)) != len(part_ids):
            raise ApiError(400, "A part may be named only once.", param="part_ids")
        total = sum(upload.parts[p].bytes for p in part_ids)
        if total != upload.bytes:
            raise ApiError(
                400,
                f"The parts hold {total} bytes, but the Upload was created with"
                f" bytes={upload.bytes}.",
                param="part_ids",
            )
        writer = self.store.writer(limit=self.store.max_bytes)
        try:
            for part_id in part_ids:
                for chunk in self._chunks(upload.parts[part_id]):
                    writer.write(chunk)
        except BaseException:
            writer.abort()
            raise
        if md5 is not None and writer.md5.hexdigest() != md5.lower():
            writer.abort()
            raise ApiError(
                400,
                "The md5 checksum given does not match the content of the parts.",
                param="md5",
            )
        return writer

    def cancel(self, upload: UploadRecord) -> None:
        self._drop_parts(upload)
        upload.status = "cancelled"

    def _chunks(self, part: PartRecord) -> Iterator[bytes]:
        if part.path is None:
            yield part.data or b""
            return
        with open(part.path, "rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk

    def _drop_parts(self, upload: UploadRecord) -> None:
        for part in upload.parts.values():
            self.store.release(part.bytes)
            if part.path is not None:
                _remove(part.path)
        upload.parts.clear()

    def _sweep(self) -> None:
        """Pending Uploads past ``expires_at`` expire; their parts go."""
        now = self.store.now()
        for upload in self.uploads.values():
            if upload.status == "pending" and upload.expires_at <= now:
                self._drop_parts(upload)
                upload.status = "expired"
