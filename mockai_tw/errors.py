"""The one exception every layer raises to mean "answer with an OpenAI error".

Pure data: the web layer renders it (through the wire format) with its status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ApiError(Exception):
    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    # The answered request's id, stamped when the error is sent (a provider
    # whose error body names it, Anthropic's, reads it from here).
    request_id: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.status} {self.type}: {self.message}"


def server_error() -> ApiError:
    """The 500 OpenAI sends when something broke on its side."""
    return ApiError(
        500,
        "The server had an error while processing your request. Sorry about that!",
        type="server_error",
    )


def invalid(
    message: str, param: str | None = None, code: str | None = None
) -> ApiError:
    """A 400 ``invalid_request_error``: the commonest error by far."""
    return ApiError(400, message, param=param, code=code)
