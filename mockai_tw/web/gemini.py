"""Google's Gemini API under ``/v1beta``: its own gate, same pipeline.

What differs from the OpenAI side is here: the key comes in
``x-goog-api-key`` (or ``?key=``, or ``Authorization: Bearer``), checked
against the same tokens; the model and the method share one path segment
(``models/{model}:generateContent``); and every error below ``/v1beta`` --
the gate's, a 404, a 405 -- is Google's ``{"error": {"code", "message",
"status"}}`` (``wire/gemini.py``).  The endpoints are pipeline descriptions
(``GENERATE_CONTENT`` and its stream, ``GEMINI_COUNT_TOKENS``): rules,
timing, rate limits, capacity and faults apply exactly as on
``/v1/chat/completions``.

As the real API does, a missing key is a 403 ``PERMISSION_DENIED`` and a
key not accepted a 400 ``INVALID_ARGUMENT`` ("API key not valid").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast
from urllib.parse import unquote

from twisted.web import server
from twisted.web.resource import IResource

from mockai_tw.engine.models import catalog, describe
from mockai_tw.errors import ApiError
from mockai_tw.web.endpoints import (
    GEMINI_BATCH_EMBED,
    GEMINI_COUNT_TOKENS,
    GEMINI_EMBED,
    GENERATE_CONTENT,
    STREAM_GENERATE_CONTENT,
    STREAM_GENERATE_CONTENT_ARRAY,
)
from mockai_tw.web.pipeline import EndpointResource
from mockai_tw.web.resources import ApiResource, Branch, ErrorResource, check_token
from mockai_tw.web.site import ApiRequest, send_json
from mockai_tw.wire import gemini

if TYPE_CHECKING:
    from mockai_tw.web.face import Face

_NO_KEY = (
    "Method doesn't allow unregistered callers (callers without established"
    " identity). Please use API Key or other form of API consumer identity to"
    " call this API."
)
_BAD_KEY = "API key not valid. Please pass a valid API key."


def not_found(request: server.Request) -> ApiError:
    path = request.path.decode("utf-8", "replace")
    return ApiError(404, f"The requested URL {path} was not found on this server.")


class GeminiBranch(Branch):
    """An interior segment below ``/v1beta``: errors in Google's shape."""

    error_body = staticmethod(gemini.error_body)

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        return ErrorResource(not_found(request), gemini.error_body)


class GeminiRoot(GeminiBranch):
    """``/v1beta``: nothing below it answers without an accepted key."""

    def gate(self, request: server.Request) -> ApiError | None:
        error = check_token(
            request, self.state, key_header=b"x-goog-api-key", query_key=b"key"
        )
        if error is None:
            return None
        if error.code == "invalid_api_key":
            return ApiError(400, _BAD_KEY, code="API_KEY_INVALID")
        return ApiError(403, _NO_KEY, type="permission_error")

    def getChildWithDefault(self, path: bytes, request: server.Request) -> IResource:
        error = self.gate(request)
        if error is not None:
            return ErrorResource(error, gemini.error_body)
        return super().getChildWithDefault(path, request)


class Models(GeminiBranch):
    """``GET /v1beta/models``; below it ``{model}`` and ``{model}:{method}``."""

    def render_GET(self, request: server.Request) -> bytes:
        infos = catalog(self.state.config)
        return send_json(request, 200, gemini.models_body(infos))

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if request.postpath:
            return ErrorResource(not_found(request), gemini.error_body)
        name, _, method = unquote(path.decode("utf-8", "replace")).partition(":")
        if not name:
            return ErrorResource(not_found(request), gemini.error_body)
        if not method:
            return Model(self.state, name)
        if method == "generateContent":
            return GeminiEndpoint(self.state, GENERATE_CONTENT, name)
        if method == "streamGenerateContent":
            return StreamEndpoint(self.state, STREAM_GENERATE_CONTENT, name)
        if method == "countTokens":
            return GeminiEndpoint(self.state, GEMINI_COUNT_TOKENS, name)
        if method == "embedContent":
            return GeminiEndpoint(self.state, GEMINI_EMBED, name)
        if method == "batchEmbedContents":
            return GeminiEndpoint(self.state, GEMINI_BATCH_EMBED, name)
        return ErrorResource(not_found(request), gemini.error_body)


class Model(ApiResource):
    """``GET /v1beta/models/{model}``: the model resource, or a 404."""

    isLeaf = True
    error_body = staticmethod(gemini.error_body)

    def __init__(self, face: Face, name: str) -> None:
        super().__init__(face)
        self.name = name

    def render_GET(self, request: server.Request) -> bytes:
        config = self.state.config
        if self.name not in config.models:
            raise ApiError(
                404,
                f"models/{self.name} is not found for API version v1beta, or is not"
                " supported for generateContent. Call ListModels to see the list of"
                " available models and their supported methods.",
            )
        return send_json(request, 200, gemini.model_body(describe(self.name)))


class GeminiEndpoint(EndpointResource):
    """A method on a model: the model named in the path, the rest in the body."""

    isLeaf = True


class StreamEndpoint(GeminiEndpoint):
    """``:streamGenerateContent``: SSE with ``?alt=sse`` (what the SDKs ask
    for); without it, as the real API, one JSON array that grows as the
    chunks are due (``application/json``, paced the same way)."""

    def render_POST(self, request: server.Request) -> bytes | int:
        args = request.args or {}
        alt = (args.get(b"alt") or [b"json"])[0]
        if alt == b"json":
            # A resource per request (``Models.getChild``): its own choice.
            self.endpoint = STREAM_GENERATE_CONTENT_ARRAY
            cast(ApiRequest, request).stream_type = b"application/json; charset=UTF-8"
        elif alt != b"sse":
            cast(ApiRequest, request).endpoint = self.endpoint.name
            raise ApiError(
                400,
                f"Invalid value at 'alt' ({alt.decode('utf-8', 'replace')}): this"
                " mock streams as json or sse.",
            )
        return super().render_POST(request)


_METHODS = (
    b":generateContent",
    b":streamGenerateContent",
    b":countTokens",
    b":embedContent",
    b":batchEmbedContents",
)


def is_gemini(request: server.Request) -> bool:
    """A Gemini call below ``/v1/models``: a Gemini method in the path, or the
    key sent Google's way."""
    postpath = request.postpath or []
    if postpath and postpath[0].endswith(_METHODS):
        return True
    if request.getHeader(b"x-goog-api-key"):
        return True
    return bool(request.args and b"key" in request.args)


def gemini_tree(face: Face) -> GeminiRoot:
    """The ``/v1beta`` resource, for the root to mount (and for ``/v1`` to
    divert Gemini calls below ``/v1/models`` to: ``v1`` is the SDK's default)."""
    root = GeminiRoot(face)
    root.putChild(b"models", Models(face))
    return root


def divert(root: GeminiRoot) -> Callable[[bytes, server.Request], IResource | None]:
    """What ``/v1`` asks: ``/v1/models…`` from a Gemini client goes to ``root``."""

    def claim(path: bytes, request: server.Request) -> IResource | None:
        if path != b"models" or not is_gemini(request):
            return None
        return root.getChildWithDefault(path, request)

    return claim
