"""Request models of the Files, Uploads and Batches APIs, and the multipart reader.

``read_form`` parses a ``multipart/form-data`` body from a file in pieces
(``multipart.PushMultipartParser``, sans-io), handing the file part's bytes to
a sink as they come, so a large upload is never held whole.  Knows nothing
of the store or of HTTP beyond the body's bytes and its Content-Type.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import multipart  # type: ignore[import-untyped]

from mockai_tw import checks
from mockai_tw.errors import invalid
from mockai_tw.request.common import Fields, missing, parse_body, worded

#: Read the spooled body in pieces of this size.
CHUNK = 64 * 1024
#: The plain (non-file) fields of a form, each and together.
MAX_FIELD_BYTES = 64 * 1024
MAX_FIELDS = 32
#: The OpenAPI's bounds on ``expires_after.seconds``.
MIN_EXPIRY_S = 3600
MAX_EXPIRY_S = 2_592_000

FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
BATCH_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
)
#: Pagination: ``limit`` bounds per list (the API's).
FILES_LIMIT = (1, 10_000, 10_000)
BATCHES_LIMIT = (1, 100, 20)


class Body(Protocol):
    """A spooled request body: read in pieces from the start."""

    def seek(self, offset: int, whence: int = 0) -> int: ...

    def read(self, size: int = -1) -> bytes: ...


@dataclass(frozen=True)
class Form:
    """A parsed form: its plain fields, and the one file part's name and size."""

    fields: Mapping[str, str]
    filename: str | None
    file_bytes: int


def _boundary(content_type: str | None) -> str:
    if not content_type:
        raise invalid(
            "The request must be multipart/form-data (no Content-Type was sent)."
        )
    kind, options = multipart.parse_options_header(content_type)
    if kind != "multipart/form-data" or not options.get("boundary"):
        raise invalid(
            f"Invalid Content-Type header ({kind or content_type!r}): expected"
            " multipart/form-data with a boundary."
        )
    return str(options["boundary"])


def read_form(
    body: Body,
    content_type: str | None,
    file_field: str,
    sink: Callable[[bytes | bytearray | memoryview], None],
) -> Form:
    """Parse the form in ``body``; the part named ``file_field`` goes to ``sink``.

    Malformed multipart, a second file part, or too many or too large plain
    fields: a 400 naming what is wrong.  ``sink`` may raise (a size limit).
    """
    parser = multipart.PushMultipartParser(_boundary(content_type), max_header_count=16)
    fields: dict[str, str] = {}
    filename: str | None = None
    size = 0
    seen_file = False
    current: Any = None
    buffer = bytearray()
    body.seek(0)
    try:
        while True:
            chunk = body.read(CHUNK)
            for event in parser.parse(chunk):
                if isinstance(event, multipart.MultipartSegment):
                    current = event
                    if event.name == file_field:
                        if seen_file:
                            raise invalid(
                                f"Only one '{file_field}' may be sent.",
                                param=file_field,
                            )
                        seen_file = True
                        filename = event.filename or file_field
                    elif len(fields) >= MAX_FIELDS:
                        raise invalid(f"Too many form fields (at most {MAX_FIELDS}).")
                    buffer.clear()
                elif event is None:
                    if current is not None and current.name != file_field:
                        fields[current.name or ""] = _text(buffer, current.name)
                    current = None
                elif current is not None and current.name == file_field:
                    size += len(event)
                    sink(event)
                else:
                    buffer += event
                    if len(buffer) > MAX_FIELD_BYTES:
                        raise invalid(
                            f"The form field {current.name!r} is larger than"
                            f" {MAX_FIELD_BYTES} bytes.",
                            param=current.name if current is not None else None,
                        )
            if not chunk:
                break
        parser.close(check_complete=True)
    except multipart.ParserError as error:
        raise invalid(f"The multipart body could not be parsed: {error}") from None
    if not seen_file:
        raise missing(file_field)
    return Form(fields, filename, size)


def _text(data: bytearray, name: str | None) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid(
            f"The form field {name!r} is not UTF-8 text.", param=name
        ) from None


def purpose_of(value: str | None, allowed: tuple[str, ...] = FILE_PURPOSES) -> str:
    if value is None or value == "":
        raise missing("purpose")
    if value not in allowed:
        raise invalid(
            f"Invalid value: '{value}'. Supported values are: "
            + ", ".join(f"'{p}'" for p in allowed)
            + ".",
            param="purpose",
            code="invalid_value",
        )
    return value


def _expiry(anchor: Any, seconds: Any, param: str) -> int:
    if anchor != "created_at":
        raise invalid(
            f"Invalid value for '{param}.anchor': expected 'created_at'.",
            param=f"{param}.anchor",
            code="invalid_value",
        )
    try:
        value = int(seconds)
    except (TypeError, ValueError):
        raise invalid(
            f"Invalid '{param}.seconds': expected an integer.",
            param=f"{param}.seconds",
            code="invalid_type",
        ) from None
    if isinstance(seconds, bool) or not MIN_EXPIRY_S <= value <= MAX_EXPIRY_S:
        raise invalid(
            f"Invalid '{param}.seconds': must be between {MIN_EXPIRY_S} and"
            f" {MAX_EXPIRY_S}.",
            param=f"{param}.seconds",
            code="invalid_value",
        )
    return value


def form_expiry(fields: Mapping[str, str]) -> int | None:
    """``expires_after`` as the SDKs send it in a form (bracketed keys)."""
    anchor = fields.get("expires_after[anchor]")
    seconds = fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    return _expiry(anchor, seconds, "expires_after")


def json_expiry(value: Any, param: str) -> int | None:
    if value is None:
        return None
    spec = checks.mapping(value, param)
    return _expiry(spec.get("anchor"), spec.get("seconds"), param)


@dataclass(frozen=True)
class CreateUpload:
    filename: str
    purpose: str
    bytes: int
    mime_type: str
    expires_after_s: int | None


@worded
def parse_create_upload(body: bytes) -> CreateUpload:
    fields = Fields(parse_body(body))
    filename = fields.string("filename", required=True) or ""
    purpose = purpose_of(fields.string("purpose", required=True))
    size = fields.integer("bytes", low=0, high=2**62)
    if size is None:
        raise missing("bytes")
    mime = fields.string("mime_type", required=True) or ""
    expiry = json_expiry(fields.body.get("expires_after"), "expires_after")
    return CreateUpload(filename, purpose, size, mime, expiry)


@dataclass(frozen=True)
class CompleteUpload:
    part_ids: tuple[str, ...]
    md5: str | None


@worded
def parse_complete_upload(body: bytes) -> CompleteUpload:
    fields = Fields(parse_body(body))
    parts = fields.array("part_ids")
    if parts is None:
        raise missing("part_ids")
    ids = tuple(checks.string(p, f"part_ids[{i}]") for i, p in enumerate(parts))
    return CompleteUpload(ids, fields.string("md5") or None)


@dataclass(frozen=True)
class CreateBatch:
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: Mapping[str, str] | None
    output_expires_after_s: int | None


@worded
def parse_create_batch(body: bytes) -> CreateBatch:
    fields = Fields(parse_body(body))
    file_id = fields.string("input_file_id", required=True) or ""
    endpoint = fields.string("endpoint", required=True) or ""
    if endpoint not in BATCH_ENDPOINTS:
        raise invalid(
            f"Invalid value: '{endpoint}'. Supported values are: "
            + ", ".join(f"'{e}'" for e in BATCH_ENDPOINTS)
            + ".",
            param="endpoint",
            code="invalid_value",
        )
    window = fields.string("completion_window", required=True)
    if window != "24h":
        raise invalid(
            f"Invalid value: '{window}'. Supported values are: '24h'.",
            param="completion_window",
            code="invalid_value",
        )
    metadata = fields.obj("metadata")
    if metadata is not None:
        if len(metadata) > 16:
            raise invalid(
                "Invalid 'metadata': too many properties (at most 16).",
                param="metadata",
                code="object_above_max_properties",
            )
        for key, value in metadata.items():
            if len(key) > 64:
                raise invalid(
                    "Invalid 'metadata': keys are at most 64 characters.",
                    param="metadata",
                )
            checks.string(value, f"metadata.{key}")
            if len(value) > 512:
                raise invalid(
                    "Invalid 'metadata': values are at most 512 characters.",
                    param=f"metadata.{key}",
                )
    expiry = json_expiry(
        fields.body.get("output_expires_after"), "output_expires_after"
    )
    return CreateBatch(file_id, endpoint, "24h", metadata, expiry)


@dataclass(frozen=True)
class ListQuery:
    limit: int
    after: str | None
    order: str
    purpose: str | None


def _arg(args: Mapping[bytes, list[bytes]], name: str) -> str | None:
    values = args.get(name.encode())
    if not values:
        return None
    return values[0].decode("utf-8", "replace")


def parse_list_query(
    args: Mapping[bytes, list[bytes]], bounds: tuple[int, int, int], orders: bool
) -> ListQuery:
    """``limit``, ``after`` (and ``order``, ``purpose`` for files) of a list."""
    low, high, default = bounds
    text = _arg(args, "limit")
    limit = default
    if text is not None:
        try:
            limit = int(text)
        except ValueError:
            raise invalid(
                f"Invalid 'limit': expected an integer, got {text!r}.",
                param="limit",
                code="invalid_type",
            ) from None
        if not low <= limit <= high:
            raise invalid(
                f"Invalid 'limit': must be between {low} and {high}, got {limit}.",
                param="limit",
                code="invalid_value",
            )
    order = (_arg(args, "order") or "desc") if orders else "desc"
    if order not in ("asc", "desc"):
        raise invalid(
            f"Invalid value: '{order}'. Supported values are: 'asc' and 'desc'.",
            param="order",
            code="invalid_value",
        )
    purpose = _arg(args, "purpose") if orders else None
    return ListQuery(limit, _arg(args, "after") or None, order, purpose or None)
