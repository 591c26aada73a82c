"""The OpenAI error body."""

from __future__ import annotations

import orjson

from mockai_tw.errors import ApiError


def error_body(error: ApiError) -> bytes:
    return orjson.dumps(
        {
            "error": {
                "message": error.message,
                "type": error.type,
                "param": error.param,
                "code": error.code,
            }
        }
    )
