"""Batches as the API runs them: the record, its stages, and input validation.

Pure: the input file arrives as an iterator of lines, time as numbers, and
each line's answer from whoever runs it (the web layer, through the same
endpoint descriptions a live request takes).  The record moves
``validating -> in_progress -> finalizing -> completed`` (or ``failed``,
``expired``, ``cancelling -> cancelled``), stamping each ``*_at``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

#: Where a line's ``url`` may point, per batch endpoint (the pipeline's name).
ENDPOINT_NAMES = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/responses": "responses",
    "/v1/embeddings": "embeddings",
    "/v1/moderations": "moderations",
}
#: Statuses a batch never leaves.
FINAL = frozenset({"completed", "failed", "expired", "cancelled"})
#: At most this many validation errors are reported (the API reports a few).
MAX_ERRORS = 100


@dataclass(frozen=True)
class BatchLine:
    """One request of the input file: its ``custom_id`` and where its line
    is (read again when it runs, so a large file is never held whole)."""

    custom_id: str
    offset: int
    length: int


@dataclass
class BatchRecord:
    """A batch as the API shows it, plus what running it needs."""

    id: str
    endpoint: str
    input_file_id: str
    created_at: int
    expires_at: int
    completion_window: str = "24h"
    metadata: Mapping[str, str] | None = None
    output_expires_after_s: int | None = None
    status: str = "validating"
    model: str | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def final(self) -> bool:
        return self.status in FINAL


# --- a record as the shared store keeps it (JSON, never pickled) -------------

_FIELDS = tuple(f.name for f in dataclasses.fields(BatchRecord))


def batch_blob(record: BatchRecord) -> bytes:
    value = {name: getattr(record, name) for name in _FIELDS}
    if record.metadata is not None:
        value["metadata"] = dict(record.metadata)
    return orjson.dumps(value)


def batch_from(blob: bytes | None) -> BatchRecord | None:
    if blob is None:
        return None
    try:
        value = orjson.loads(blob)
        return BatchRecord(**{k: value[k] for k in _FIELDS if k in value})
    except (orjson.JSONDecodeError, TypeError, KeyError):
        return None


def cancelled_at(blob: bytes | None) -> float | None:
    """When a cancel flag (``{"id", "at"}``) says the batch was cancelled."""
    if blob is None:
        return None
    try:
        return float(orjson.loads(blob)["at"])
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError):
        return None


def _error(
    code: str, message: str, line: int | None, param: str | None = None
) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def validate_input(
    lines: Iterable[tuple[int, bytes]],
    endpoint: str,
    max_requests: int,
    max_bytes: int,
) -> tuple[list[BatchLine], list[dict[str, Any]], str | None]:
    """The requests of a batch input file, the API's errors (each naming its
    line, counted from 1), and the one model the lines ask for.

    A file with any error runs nothing: the batch fails with those errors.
    """
    out: list[BatchLine] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    model: str | None = None
    size = 0
    number = 0
    for number, (offset, raw) in enumerate(lines, 1):
        size += len(raw)
        if size > max_bytes:
            return (
                [],
                [
                    _error(
                        "file_too_large",
                        f"The batch input file is larger than the {max_bytes} bytes"
                        " allowed.",
                        None,
                    )
                ],
                None,
            )
        if not raw.strip():
            continue
        if len(out) >= max_requests:
            return (
                [],
                [
                    _error(
                        "too_many_tasks",
                        f"The batch input file has more than the {max_requests}"
                        " requests allowed.",
                        None,
                    )
                ],
                None,
            )
        found = _line(raw, number, endpoint, seen, offset)
        if isinstance(found, dict):
            errors.append(found)
        else:
            line, line_model = found
            if model is None:
                model = line_model
            elif line_model is not None and line_model != model:
                errors.append(
                    _error(
                        "model_mismatch",
                        "The provided model does not match the model of the"
                        " other requests in this batch: every request of a batch"
                        " must use the same model.",
                        number,
                        "body.model",
                    )
                )
            out.append(line)
        if len(errors) >= MAX_ERRORS:
            break
    if not out and not errors:
        errors.append(
            _error(
                "empty_file",
                "The batch input file is empty. Please ensure that the batch"
                " contains at least one request.",
                None,
            )
        )
    if errors:
        return [], errors, None
    return out, [], model


def _line(
    raw: bytes, number: int, endpoint: str, seen: set[str], offset: int
) -> tuple[BatchLine, str | None] | dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _error(
            "invalid_json_line", "This line is not parseable as valid JSON.", number
        )
    if not isinstance(value, dict):
        return _error("invalid_json_line", "This line is not a JSON object.", number)
    for key in ("custom_id", "method", "url", "body"):
        if key not in value:
            return _error(
                "missing_required_parameter",
                f"Missing required parameter: '{key}'.",
                number,
                key,
            )
    custom_id = value["custom_id"]
    if not isinstance(custom_id, str) or not custom_id:
        return _error(
            "invalid_request",
            "The 'custom_id' must be a non-empty string.",
            number,
            "custom_id",
        )
    if custom_id in seen:
        return _error(
            "duplicate_custom_id",
            "The custom_id for this request is a duplicate of another request."
            " The custom_id parameter must be unique for each request in a batch.",
            number,
            "custom_id",
        )
    seen.add(custom_id)
    if value["method"] != "POST":
        return _error(
            "invalid_request",
            "The 'method' of a batch request must be 'POST'.",
            number,
            "method",
        )
    if value["url"] != endpoint:
        return _error(
            "url_mismatch",
            f"The provided URL does not match the batch endpoint '{endpoint}': every"
            " request of a batch must use the batch's endpoint.",
            number,
            "url",
        )
    body = value["body"]
    if not isinstance(body, dict):
        return _error(
            "invalid_request",
            "The 'body' of a batch request must be a JSON object.",
            number,
            "body",
        )
    model = body.get("model")
    return BatchLine(custom_id, offset, len(raw)), (
        model if isinstance(model, str) else None
    )


def split_lines(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """The lines of a file read in chunks: each one's offset and bytes
    (without its ``\\n``)."""
    buffer = bytearray()
    start = 0
    for chunk in chunks:
        searched = len(buffer)
        buffer += chunk
        begin = 0
        while (end := buffer.find(b"\n", max(begin, searched))) >= 0:
            yield start, bytes(buffer[begin:end])
            start += end - begin + 1
            begin = end + 1
        if begin:
            del buffer[:begin]
    if buffer:
        yield start, bytes(buffer)


def line_body(raw: bytes) -> bytes:
    """The ``body`` of a validated input line, as a request's JSON body."""
    return orjson.dumps(orjson.loads(raw)["body"])


def usage_of(body: bytes) -> tuple[int, int]:
    """Input and output tokens of a rendered answer (any endpoint's names)."""
    try:
        usage = orjson.loads(body).get("usage") or {}
    except (orjson.JSONDecodeError, AttributeError):
        return 0, 0
    if not isinstance(usage, dict):
        return 0, 0
    into = usage.get("input_tokens", usage.get("prompt_tokens", 0))
    out = usage.get("output_tokens", usage.get("completion_tokens", 0))
    return (
        into if isinstance(into, int) else 0,
        out if isinstance(out, int) else 0,
    )
