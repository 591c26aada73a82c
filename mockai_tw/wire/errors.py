"""The OpenAI error body, and the events that end a stream with an error."""

from __future__ import annotations

import orjson

from mockai_tw.errors import ApiError
from mockai_tw.wire.sse import data_event, named_event


def error_json(error: ApiError) -> dict[str, object]:
    return {
        "message": error.message,
        "type": error.type,
        "param": error.param,
        "code": error.code,
    }


def error_body(error: ApiError) -> bytes:
    return orjson.dumps({"error": error_json(error)})


def error_event(error: ApiError, sent: int = 0) -> bytes:
    """A chat or legacy-completion stream's end on failure: ``data: {"error"}``,
    which the SDKs raise as an APIError."""
    return data_event(error_body(error))


def response_error_event(error: ApiError, sent: int = 0) -> bytes:
    """A Responses stream's ``error`` event (``sent``: events before it)."""
    return named_event(
        "error",
        orjson.dumps(
            {
                "type": "error",
                "code": error.code or error.type,
                "message": error.message,
                "param": error.param,
                "sequence_number": sent,
            }
        ),
    )
