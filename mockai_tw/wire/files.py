"""The Files, Uploads and Batches objects as the API sends them.

``OpenAIFile``, ``Upload``, ``UploadPart``, ``Batch`` and their lists, from
the records the store and the batch engine keep (read by attribute only,
so this module imports neither).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from mockai_tw.wire.pages import cursor_page

if TYPE_CHECKING:
    from mockai_tw.engine.batches import BatchRecord
    from mockai_tw.files_store import FileRecord


def file_json(record: FileRecord) -> dict[str, Any]:
    """``OpenAIFile``: ``expires_at`` only when the file expires (the schema
    types it as an integer), no deprecated ``status_details``."""
    body: dict[str, Any] = {
        "id": record.id,
        "object": "file",
        "bytes": record.bytes,
        "created_at": record.created_at,
        "filename": record.filename,
        "purpose": record.purpose,
        "status": record.status,
    }
    if record.expires_at is not None:
        body["expires_at"] = record.expires_at
    return body


def file_body(record: FileRecord) -> bytes:
    return orjson.dumps(file_json(record))


page = cursor_page


def deleted_body(file_id: str) -> bytes:
    return orjson.dumps({"id": file_id, "object": "file", "deleted": True})


def upload_json(upload: Any) -> dict[str, Any]:
    return {
        "id": upload.id,
        "object": "upload",
        "bytes": upload.bytes,
        "created_at": upload.created_at,
        "filename": upload.filename,
        "purpose": upload.purpose,
        "status": upload.status,
        "expires_at": upload.expires_at,
        "file": None if upload.file is None else file_json(upload.file),
    }


def upload_body(upload: Any) -> bytes:
    return orjson.dumps(upload_json(upload))


def part_body(part: Any, upload_id: str) -> bytes:
    return orjson.dumps(
        {
            "id": part.id,
            "object": "upload.part",
            "created_at": part.created_at,
            "upload_id": upload_id,
        }
    )


def batch_json(batch: BatchRecord) -> dict[str, Any]:
    errors = None
    if batch.errors:
        errors = {"object": "list", "data": [dict(e) for e in batch.errors]}
    return {
        "id": batch.id,
        "object": "batch",
        "endpoint": batch.endpoint,
        "model": batch.model,
        "errors": errors,
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
        "status": batch.status,
        "output_file_id": batch.output_file_id,
        "error_file_id": batch.error_file_id,
        "created_at": batch.created_at,
        "in_progress_at": batch.in_progress_at,
        "expires_at": batch.expires_at,
        "finalizing_at": batch.finalizing_at,
        "completed_at": batch.completed_at,
        "failed_at": batch.failed_at,
        "expired_at": batch.expired_at,
        "cancelling_at": batch.cancelling_at,
        "cancelled_at": batch.cancelled_at,
        "request_counts": {
            "total": batch.total,
            "completed": batch.completed,
            "failed": batch.failed,
        },
        "usage": {
            "input_tokens": batch.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": batch.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": batch.input_tokens + batch.output_tokens,
        },
        "metadata": None if batch.metadata is None else dict(batch.metadata),
    }


def batch_body(batch: BatchRecord) -> bytes:
    return orjson.dumps(batch_json(batch))


def output_line(
    line_id: str,
    custom_id: str,
    status: int,
    request_id: str,
    body: bytes,
) -> bytes:
    """One line of a batch's output or error file (``BatchRequestOutput``)."""
    return (
        b'{"id":'
        + orjson.dumps(line_id)
        + b',"custom_id":'
        + orjson.dumps(custom_id)
        + b',"response":{"status_code":%d,"request_id":' % status
        + orjson.dumps(request_id)
        + b',"body":'
        + body
        + b'},"error":null}\n'
    )


def unrun_line(line_id: str, custom_id: str, code: str, message: str) -> bytes:
    """A line that never ran (cancelled, expired): ``error`` set, no response."""
    return (
        orjson.dumps(
            {
                "id": line_id,
                "custom_id": custom_id,
                "response": None,
                "error": {"code": code, "message": message},
            }
        )
        + b"\n"
    )
