"""The Resource tree's plumbing: JSON 404/405, auth gate, health, readiness."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, cast

import orjson
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.resource import IResource, Resource

from mockai_tw.errors import ApiError, server_error
from mockai_tw.metrics import merge
from mockai_tw.web.site import ApiRequest, send_error, send_json
from mockai_tw.wire.errors import error_body

if TYPE_CHECKING:
    from mockai_tw.web.face import Face

log = Logger()

_NO_KEY = (
    "You didn't provide an API key. You need to provide your API key in an"
    " Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY),"
    " or as the password field (with blank username) if you're accessing the API"
    " from your browser and are prompted for a username and password. You can"
    " obtain an API key from https://platform.openai.com/account/api-keys."
)


def _path(request: server.Request) -> str:
    return request.path.decode("utf-8", "replace")


def invalid_url(request: server.Request) -> ApiError:
    method = request.method.decode("ascii", "replace")
    return ApiError(404, f"Invalid URL ({method} {_path(request)})")


def finish_late(request: server.Request, result: bytes | int) -> None:
    """Write what ``render`` would have returned, for an answer that came
    after ``render`` (the shared store, a capacity slot)."""
    if request.finished or result == server.NOT_DONE_YET:
        return
    data = cast(bytes, result)
    request.setHeader(b"content-length", b"%d" % len(data))
    if request.method != b"HEAD":
        request.write(data)
    request.finish()


def fail_late(
    request: server.Request,
    error: ApiError | None,
    render: Callable[[ApiError], bytes],
) -> None:
    """A late failure: the error body (a 500 when it is not an API error),
    or, once the headers are out, a cut connection, the only honest signal."""
    if request.finished:
        return
    if request.startedWriting:
        request.channel.forceAbortClient()
        return
    send_error(request, error if error is not None else server_error(), render)


# The usual methods' names and handler names, not formatted per request.
_METHODS = {m.encode(): m for m in ("GET", "POST", "DELETE", "PUT", "PATCH", "HEAD")}
_RENDERERS = {m: f"render_{m}" for m in _METHODS.values()}


class ApiResource(Resource):
    """Routes by method to ``render_<METHOD>``; every failure becomes an error body."""

    # The provider's error shape for what this resource answers.
    error_body: Callable[[ApiError], bytes] = staticmethod(error_body)

    def __init__(self, face: Face) -> None:
        super().__init__()
        self.state = face

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        return ErrorResource(invalid_url(request))

    def allowed(self) -> list[bytes]:
        return [
            m.encode()
            for m in ("GET", "POST", "DELETE", "PUT", "PATCH")
            if hasattr(self, f"render_{m}")
        ]

    def render(self, request: server.Request) -> bytes | int:
        method = _METHODS.get(request.method)
        if method is None:
            method = request.method.decode("ascii", "replace").upper()
        handler: Callable[[server.Request], bytes | int] | None = getattr(
            self, _RENDERERS.get(method) or f"render_{method}", None
        )
        if handler is None and method == "HEAD":
            handler = getattr(self, "render_GET", None)
        try:
            if handler is None:
                allowed = self.allowed()
                if not allowed:
                    raise invalid_url(request)
                request.setHeader(b"allow", b", ".join(allowed))
                names = ", ".join(m.decode() for m in allowed)
                raise ApiError(
                    405,
                    f"Invalid method for URL ({method} {_path(request)}): use {names}.",
                    code="method_not_allowed",
                )
            result = handler(request)
            if (
                isinstance(request, ApiRequest)
                and not request.journaled
                and not request.queued  # answered when it starts
            ):
                # Not through send_json: raw bytes, or no answer (a dropped line).
                request.answered(request.code if result != server.NOT_DONE_YET else 0)
            return result
        except ApiError as error:
            send_error(request, error, self.error_body)
        except Exception:
            log.failure(
                "Error answering {method} {path} (request {request_id})",
                method=method,
                path=_path(request),
                request_id=getattr(request, "request_id", None),
            )
            send_error(request, server_error(), self.error_body)
        return server.NOT_DONE_YET

    def later(
        self, request: server.Request, work: Coroutine[Any, Any, bytes | int]
    ) -> int:
        """Answer when ``work`` is done (it waits on the shared store), as
        ``render`` would have answered its result or its error."""
        if isinstance(request, ApiRequest):
            request.queued = True  # answered when the work is done
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def done(result: bytes | int) -> None:
            if isinstance(request, ApiRequest):
                request.queued = False
                if not request.journaled:
                    code = request.code if result != server.NOT_DONE_YET else 0
                    request.answered(code)
            if not gone:
                finish_late(request, result)

        def failed(failure: Failure) -> None:
            if isinstance(request, ApiRequest):
                request.queued = False
            if gone:
                return
            error = failure.value if isinstance(failure.value, ApiError) else None
            if error is None and not request.finished:
                log.failure(
                    "Error answering {method} {path} (request {request_id})",
                    failure,
                    method=request.method.decode("ascii", "replace"),
                    path=_path(request),
                    request_id=getattr(request, "request_id", None),
                )
            fail_late(request, error, self.error_body)

        defer.ensureDeferred(work).addCallbacks(done, failed)
        return server.NOT_DONE_YET


class Branch(ApiResource):
    """An interior path segment: it has children, no methods of its own."""


class ErrorResource(Resource):
    isLeaf = True

    def __init__(
        self, error: ApiError, render: Callable[[ApiError], bytes] = error_body
    ) -> None:
        super().__init__()
        self.error = error
        self.error_body = render

    def render(self, request: server.Request) -> int:
        send_error(request, self.error, self.error_body)
        return server.NOT_DONE_YET


def _mask(token: str) -> str:
    if len(token) < 8:
        return "*" * len(token)
    return token[:3] + "*" * (len(token) - 7) + token[-4:]


def bearer(request: server.Request) -> bytes:
    """The token of an ``Authorization: Bearer`` header, or ``b""``."""
    # (twisted.web's own store, by its spelling of the name: what getHeader
    # would find, without encoding the name per request)
    values = request.requestHeaders._rawHeaders.get(b"Authorization")
    header = values[-1] if values else None
    if not header:
        return b""
    if header.startswith(b"Bearer "):
        return header[7:].strip()
    scheme, _, rest = header.strip().partition(b" ")
    return rest.strip() if scheme.lower() == b"bearer" else b""


def check_token(
    request: server.Request,
    state: Face,
    *,
    api_key_header: bool = False,
    key_header: bytes | None = None,
    query_key: bytes | None = None,
) -> ApiError | None:
    """None if the bearer token is accepted; otherwise the 401 to send.

    With ``api_key_header`` (the Azure tree) an ``api-key`` header counts too;
    ``key_header`` names another such header (Anthropic's ``x-api-key``),
    ``query_key`` a query parameter that may carry the key (Gemini's ``?key=``).
    The accepted key is kept on the request: budgets are per key, and the
    header is parsed once.
    """
    token = b""
    if api_key_header:
        key_header = b"api-key"
    if key_header is not None:
        token = (request.getHeader(key_header) or b"").strip()
    if not token and query_key is not None and request.args:
        token = (request.args.get(query_key) or [b""])[0].strip()
    if not token:
        token = bearer(request)
    if not token:
        return ApiError(401, _NO_KEY)
    config = state.config
    if isinstance(request, ApiRequest):
        request.api_key = token.decode("latin-1")
    if config.accept_any_token:
        return None
    ok = False
    for known in state.token_bytes:
        ok |= hmac.compare_digest(token, known)
    if ok:
        return None
    return ApiError(
        401,
        f"Incorrect API key provided: {_mask(token.decode('utf-8', 'replace'))}."
        " You can find your API key at https://platform.openai.com/account/api-keys.",
        code="invalid_api_key",
    )


class Gated(Protocol):
    """A child of ``/v1`` that checks its own provider's credentials and
    headers (Anthropic's ``x-api-key``), answering in its own error shape."""

    def gate(self, request: server.Request) -> ApiError | None: ...

    def error_body(self, error: ApiError) -> bytes: ...


class V1(Branch):
    """``/v1``: nothing below it answers without a valid token.

    ``diverts`` may claim a request for another provider's tree first (a
    Gemini SDK, whose default version is ``v1``, calls
    ``/v1/models/{model}:generateContent``): each returns the resource to
    route to, or None.
    """

    def __init__(self, face: Face) -> None:
        super().__init__(face)
        self.diverts: list[Callable[[bytes, server.Request], IResource | None]] = []

    def getChildWithDefault(self, path: bytes, request: server.Request) -> IResource:
        for divert in self.diverts:
            diverted = divert(path, request)
            if diverted is not None:
                return diverted
        child = self.children.get(path)
        if hasattr(child, "gate"):
            gated = cast(Gated, child)
            error = gated.gate(request)
            if error is not None:
                return ErrorResource(error, gated.error_body)
            return cast(IResource, child)
        error = check_token(request, self.state)
        if error is not None:
            return ErrorResource(error)
        if child is None or not self.fast_routes:
            return super().getChildWithDefault(path, request)
        return _through(child, request)

    # Off: each segment below is looked up by twisted.web's own walk
    # (``getChildForRequest``), one call each (the tests compare).
    fast_routes = True


_CHILD_WITH_DEFAULT = Resource.getChildWithDefault


def _through(resource: IResource, request: server.Request) -> IResource:
    """Where ``getChildForRequest``'s walk, which called us, goes next from
    ``resource`` through plain branches (``putChild`` children, twisted.web's
    own lookup), taken here: each a segment moved from ``postpath`` to
    ``prepath`` as the walk moves it, without a call per segment.  The walk
    goes on from what this returns."""
    postpath = request.postpath
    prepath: Any = request.prepath
    here: Any = resource
    while (
        postpath
        and type(here).getChildWithDefault is _CHILD_WITH_DEFAULT
        and not here.isLeaf
    ):
        child = here.children.get(postpath[0])
        if child is None:
            break
        prepath.append(postpath.pop(0))
        here = child
    return here


class Health(ApiResource):
    """``GET /health``: no token, for ``curl -f`` and container health checks."""

    def render_GET(self, request: server.Request) -> bytes:
        state = self.state
        body: dict[str, Any] = {
            "status": "ok",
            "version": state.version,
            "uptime_s": round(state.clock.seconds() - state.started, 3),
            "worker": state.worker or 0,
            "open_streams": len(state.ticker.streams),
            "faults": dict(state.faults.counts),
            "state": (
                {"backend": "memory"}
                if state.shared is None
                else {
                    "backend": "redis",
                    "connected": state.shared.connected,
                    "url": state.shared.url.redacted,
                }
            ),
        }
        return send_json(request, 200, orjson.dumps(body))


# Why ``/ready`` says no while the shared state is away (on_error: fail).
_STATE_LOST = ApiError(
    503,
    "The server's shared state (Redis) is unavailable; it is not accepting"
    " requests until it is back.",
    type="server_error",
    code="mock_state_unavailable",
)

# Why ``/ready`` says no, by readiness state (drain.py names them).
_NOT_READY = {
    "starting": ApiError(
        503,
        "The server is starting and not yet accepting requests. Please retry shortly.",
        type="server_error",
        code="server_starting",
    ),
    "draining": ApiError(
        503,
        "The server is shutting down and accepts no new requests. Please send"
        " them to another instance.",
        type="server_error",
        code="server_draining",
    ),
}


class Ready(ApiResource):
    """``GET /ready``: readiness, no token. 503 with an error body while the
    server is starting or draining, so a load balancer sends new work
    elsewhere; ``/health`` (liveness) stays 200 meanwhile."""

    def render_GET(self, request: server.Request) -> bytes:
        state = self.state
        refusal = _NOT_READY.get(state.readiness.state)
        if refusal is not None:
            raise refusal
        shared = state.shared
        if shared is not None and not shared.connected and not shared.local:
            raise _STATE_LOST
        body: dict[str, Any] = {
            "status": "ready",
            "version": state.version,
            "uptime_s": round(state.clock.seconds() - state.started, 3),
            "open_streams": len(state.ticker.streams),
        }
        return send_json(request, 200, orjson.dumps(body))


class MetricsPage(ApiResource):
    """``GET /metrics``: Prometheus text format. A 404 like any unknown path
    while ``metrics.enabled`` is off; with ``metrics.token`` a scrape needs
    ``Authorization: Bearer <token>``."""

    def render_GET(self, request: server.Request) -> bytes | int:
        config = self.state.config.metrics
        if not config.enabled:
            raise invalid_url(request)
        if config.token is not None:
            sent = bearer(request)
            if not sent:
                raise ApiError(401, _NO_KEY)
            if not hmac.compare_digest(sent, config.token.encode()):
                raise ApiError(
                    401,
                    "Incorrect metrics token provided.",
                    code="invalid_api_key",
                )
        own = self.state.metrics.exposition()
        peers = self.state.peers
        if peers is None:
            return _exposed(request, own)
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def answer(others: list[bytes]) -> None:
            if not gone:
                request.write(_exposed(request, merge([own, *others])))
                request.finish()

        def failed(failure: Failure) -> None:
            log.failure("merging the workers' metrics", failure)
            if not gone:
                request.write(_exposed(request, own))
                request.finish()

        peers.gather().addCallback(answer).addErrback(failed)
        return server.NOT_DONE_YET


def _exposed(request: server.Request, body: bytes) -> bytes:
    request.setResponseCode(200)
    request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
    request.setHeader(b"content-length", b"%d" % len(body))
    return body
