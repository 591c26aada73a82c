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

from mockai_tw.engine.models import catalog, describe
from mockai_tw.errors import ApiError
from mockai_tw.web.endpoints import COUNT_TOKENS, MESSAGES
from mockai_tw.web.pipeline import EndpointResource
from mockai_tw.web.resources import ApiResource, ErrorResource, check_token
from mockai_tw.web.site import send_json
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


def is_anthropic(request: server.Request) -> bool:
    """An Anthropic client's call below a path OpenAI shares (``/v1/models``):
    it carries ``anthropic-version`` or its key in ``x-api-key``."""
    return bool(
        request.getHeader(b"anthropic-version") or request.getHeader(b"x-api-key")
    )


def gate(request: server.Request, face: Face) -> ApiError | None:
    """Anthropic's checks: a key (``x-api-key`` or bearer), a version."""
    stamp(request)
    error = check_token(request, face, key_header=b"x-api-key")
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


class Messages(EndpointResource):
    """``POST /v1/messages``; ``/count_tokens`` below it."""

    def __init__(self, face: Face) -> None:
        super().__init__(face, MESSAGES)
        self.putChild(b"count_tokens", CountTokens(face))

    def gate(self, request: server.Request) -> ApiError | None:
        """What ``/v1`` asks of this tree before routing into it."""
        return gate(request, self.state)

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        return ErrorResource(not_found(request), anthropic.error_body)


class CountTokens(EndpointResource):
    """``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``."""

    def __init__(self, face: Face) -> None:
        super().__init__(face, COUNT_TOKENS)

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        return ErrorResource(not_found(request), anthropic.error_body)


def _limit(request: server.Request) -> int:
    raw = ((request.args or {}).get(b"limit") or [b"20"])[0]
    try:
        limit = int(raw)
    except ValueError:
        raise ApiError(400, "limit: Input should be a valid integer") from None
    if not 1 <= limit <= 1000:
        raise ApiError(400, "limit: Input should be between 1 and 1000")
    return limit


class ModelList(ApiResource):
    """``GET /v1/models`` for an Anthropic client: the configured Claude
    models, a page at a time (``limit``, ``after_id``, ``before_id``)."""

    isLeaf = True
    error_body = staticmethod(anthropic.error_body)

    def render_GET(self, request: server.Request) -> bytes:
        error = gate(request, self.state)
        if error is not None:
            raise error
        args = request.args or {}
        # The newest first, as the real listing; every model here is active.
        infos = sorted(
            (i for i in catalog(self.state.config) if i.id.startswith("claude")),
            key=lambda i: -i.created,
        )
        asked = args.get(b"lifecycle") or args.get(b"lifecycle[]")
        ids = [] if asked and b"active" not in asked else [i.id for i in infos]
        limit = _limit(request)
        after = (args.get(b"after_id") or [b""])[0].decode("utf-8", "replace")
        before = (args.get(b"before_id") or [b""])[0].decode("utf-8", "replace")
        if before:
            end = ids.index(before) if before in ids else 0
            page = ids[max(0, end - limit) : end]
            more = end - limit > 0
        else:
            begin = ids.index(after) + 1 if after in ids else 0
            page = ids[begin : begin + limit]
            more = begin + limit < len(ids)
        body = anthropic.models_page([describe(i) for i in page], more)
        return send_json(request, 200, body)


class ModelEntry(ApiResource):
    """``GET /v1/models/{id}`` for an Anthropic client, or its 404."""

    isLeaf = True
    error_body = staticmethod(anthropic.error_body)

    def __init__(self, face: Face, model_id: str) -> None:
        super().__init__(face)
        self.model_id = model_id

    def render_GET(self, request: server.Request) -> bytes:
        error = gate(request, self.state)
        if error is not None:
            raise error
        if self.model_id not in self.state.config.models:
            raise ApiError(404, f"model: {self.model_id}", type="not_found_error")
        body = anthropic.model_body(describe(self.model_id))
        return send_json(request, 200, body)
