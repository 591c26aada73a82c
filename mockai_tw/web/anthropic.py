"""Anthropic's Messages API under ``/v1/messages``: its own gate, same pipeline.

What differs from the OpenAI side is here: the key comes in ``x-api-key``
(or ``Authorization: Bearer``), checked against the same tokens; the
``anthropic-version`` header is required; every answer carries
``request-id``; and every error below ``/v1/messages`` -- the gate's, a 404,
a 405 -- is Anthropic's shape (``wire/anthropic.py``).  The endpoints are
pipeline descriptions (``MESSAGES``, ``COUNT_TOKENS``): rules, timing, rate
limits, capacity and faults apply exactly as on ``/v1/chat/completions``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.web import server
from twisted.web.resource import IResource

from mockai_tw.errors import ApiError
from mockai_tw.web.endpoints import COUNT_TOKENS, MESSAGES
from mockai_tw.web.pipeline import EndpointResource
from mockai_tw.web.resources import ErrorResource, check_token
from mockai_tw.wire import anthropic

if TYPE_CHECKING:
    from mockai_tw.web.face import Face

REQUEST_ID = b"request-id"


def stamp(request: server.Request) -> None:
    """Anthropic's ``request-id`` (the same id as ``x-request-id``)."""
    ident = getattr(request, "request_id", "")
    if ident:
        request.setHeader(REQUEST_ID, ident.encode())


def not_found(request: server.Request) -> ApiError:
    return ApiError(404, "Not Found", type="not_found_error")


class Messages(EndpointResource):
    """``POST /v1/messages``; ``/count_tokens`` below it."""

    def __init__(self, face: Face) -> None:
        super().__init__(face, MESSAGES)
        self.putChild(b"count_tokens", CountTokens(face))

    def gate(self, request: server.Request) -> ApiError | None:
        """What ``/v1`` asks of this tree before routing into it."""
        stamp(request)
        error = check_token(request, self.state, key_header=b"x-api-key")
        if error is not None:
            if error.code == "invalid_api_key":
                return ApiError(401, "invalid x-api-key", type="authentication_error")
            return ApiError(
                401, "x-api-key header is required", type="authentication_error"
            )
        version = request.getHeader(b"anthropic-version")
        if not version or not version.strip():
            return ApiError(400, "anthropic-version: header is required")
        return None

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        return ErrorResource(not_found(request), anthropic.error_body)


class CountTokens(EndpointResource):
    """``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``."""

    def __init__(self, face: Face) -> None:
        super().__init__(face, COUNT_TOKENS)

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        return ErrorResource(not_found(request), anthropic.error_body)
