"""The Site and Request: JSON by default, bounded bodies, no tracebacks."""

from __future__ import annotations

import dataclasses
import io
import tempfile
from collections.abc import Callable
from typing import IO, Any, cast
from urllib.parse import unquote_to_bytes

from twisted.internet import defer
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource, _IEncodingResource, getChildForRequest

from mockai_tw.engine.ids import request_id
from mockai_tw.errors import ApiError, server_error
from mockai_tw.hooks import Hooks
from mockai_tw.logs import redacted_uri
from mockai_tw.web.connections import (
    ConnectionCap,
    GuardedChannel,
    HttpLimits,
    channel_factory,
    default_limits,
    response_head,
)
from mockai_tw.web.heads import canonical_name
from mockai_tw.wire.errors import error_body

log = Logger()

# Statuses that carry no body (twisted.web's NO_BODY_CODES).
_NO_BODY_CODES = frozenset(http.NO_BODY_CODES)


class BoundedBody:
    """A request body that stops keeping bytes past ``limit``.

    In memory by default; a file upload's path hands it a temporary file
    (``spooled``), so hundreds of MB never sit in the process.
    """

    def __init__(
        self, limit: int, declared: int | None, file: IO[bytes] | None = None
    ) -> None:
        self.file: IO[bytes] = io.BytesIO() if file is None else file
        self.limit = limit
        self.received = 0
        self.overflow = declared is not None and declared > limit

    @classmethod
    def spooled(
        cls, limit: int, declared: int | None, directory: str | None = None
    ) -> BoundedBody:
        # In the files directory when there is one: a tmpfs /tmp would hold
        # the body in memory after all.
        spool = tempfile.TemporaryFile(prefix=".body-", dir=directory)  # noqa: SIM115
        return cls(limit, declared, spool)

    @property
    def on_disk(self) -> bool:
        return not isinstance(self.file, io.BytesIO)

    def write(self, data: Any) -> int:
        self.received += len(data)
        if self.overflow or self.received > self.limit:
            self.overflow = True
            return len(data)
        return self.file.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self.file.seek(offset, whence)

    def tell(self) -> int:
        return self.file.tell()

    def read(self, size: int = -1) -> bytes:
        return self.file.read(size)

    def close(self) -> None:
        self.file.close()


def _chunk(data: bytes) -> bytes:
    """``data`` framed as one HTTP/1.1 chunk (twisted.web's ``toChunk``, joined)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


def put(headers: Headers, name: bytes, value: bytes) -> None:
    """``headers.setRawHeaders(name, [value])`` for one bytes value, without
    re-encoding a name seen before: a response sets a dozen headers, and
    each call through ``setRawHeaders`` cost more than a microsecond."""
    canonical = canonical_name(name)
    if canonical is None or 13 in value or 10 in value:  # CR, LF
        # (an invalid name is refused there, as twisted.web refuses it)
        headers.setRawHeaders(name, [value])
        return
    # A tuple, not Headers' list: a tuple of bytes leaves the garbage
    # collector's lists at its first collection (an open stream holds a dozen
    # of these), and nothing appends to a response header's values.
    headers._rawHeaders[canonical] = (value,)  # type: ignore[assignment]


_GET_RESOURCE_FOR = server.Site.getResourceFor


def _common_headers(site: Any, now: float) -> dict[bytes, tuple[bytes, ...]]:
    """The headers every response starts with after its ``x-request-id``,
    by twisted.web's spelling: rebuilt when the ``Date`` (once a second) or
    the worker changes, not set one by one per request."""
    date: bytes = site.date_header(now)
    worker: bytes | None = site.worker_header
    kept = getattr(site, "_common_headers", None)
    if kept is not None and kept[0] is date and kept[1] is worker:
        return cast("dict[bytes, tuple[bytes, ...]]", kept[2])
    headers = Headers()
    put(headers, b"openai-version", b"2020-10-01")
    if worker is not None:
        put(headers, b"x-mockai-worker", worker)
    put(headers, b"server", server.version)
    put(headers, b"date", date)
    common = dict(headers._rawHeaders)
    site._common_headers = (date, worker, common)
    return common  # type: ignore[return-value]


# What every request sets, twisted.web's and ours, held in slots: as instance
# keys they were 40, past the 30 a key-sharing dict takes, so each request's
# dict was a dict of its own (1.6 kB, held by every open stream).  The rest
# (rarely set) stays in the instance dict.
_TWISTED_SLOTS = (
    # http.Request.__init__ and Componentized.__init__
    "notifications",
    "channel",
    "client",
    "host",
    "requestHeaders",
    "received_cookies",
    "responseHeaders",
    "cookies",
    "transport",
    "queued",
    "_parsePOSTFormSubmission",
    "_adapterCache",
    # requestReceived, gotLength, Site.getResourceFor, the response
    "content",
    "args",
    "method",
    "uri",
    "clientproto",
    "path",
    "site",
    "prepath",
    "postpath",
    "sitepath",
    "code",
    "code_message",
    "streamingProducer",
    "producer",
    "startedWriting",
    "chunked",
    "sentLength",
    "finished",
    "_disconnected",
)
_OWN_SLOTS = (
    "request_id",
    "started",
    "fault",
    "body_bytes",
    "reply",
    "journaled",
    "api_key",
    "stream",
    "endpoint",
    "model",
    "parsed",
    "raw_head",
    "error",
    "api",
)


# The paths of the APIs (Azure's among them): a request under one is
# journaled and counted.
API_PATHS = (b"/v1/", b"/openai/")
# A path's segments, unquoted, and whether it is an API's, by path: the same
# few paths come again and again, and every open stream would hold its own
# copies of their bytes.  Bounded (paths that name an object are each seen
# once).
_ROUTES: dict[bytes, tuple[tuple[bytes, ...], bool]] = {}
_MAX_ROUTES = 256


def _route(path: bytes) -> tuple[tuple[bytes, ...], bool]:
    found = _ROUTES.get(path)
    if found is None:
        segments = tuple(unquote_to_bytes(s) for s in path[1:].split(b"/"))
        found = (segments, path.startswith(API_PATHS))
        if len(_ROUTES) < _MAX_ROUTES:
            _ROUTES[path] = found
    return found


class ApiRequest(server.Request):
    """A request that answers JSON and never shows a traceback."""

    __slots__ = _TWISTED_SLOTS + _OWN_SLOTS

    defaultContentType = b"application/json"
    # How long the request waited for a capacity slot (engine/capacity.py;
    # None: capacity off).  (``queued``, a slot, says it is waiting: its
    # answer comes when it starts.)
    queue_s: float | None = None
    # A stream framed otherwise than as SSE (Gemini's JSON array) names its
    # content type here: it stands in for the SSE type the stream is given.
    stream_type: bytes | None = None

    request_id: str
    started: float
    # The fault this request was dealt, if any (for the journal).
    fault: str | None
    # For the journal: the body as read, the reply plan.
    body_bytes: bytes | None
    reply: object
    journaled: bool
    # The API key the auth gate accepted (parsed once, for budgets).
    api_key: str
    # The paced response delivery holds for this request, if any.
    stream: Any
    # The pipeline endpoint's name and the model the parsed body asked for
    # (web/pipeline.py serve), so logs and metrics never parse the body again.
    endpoint: str | None
    model: str | None
    # The pipeline's parsed request (its ``kept`` hook reads it).
    parsed: Any
    # The head as it came, when it was read in one pass (web/heads.py): the
    # journal keeps it as it is. Let go once the response is decided.
    raw_head: bytes | None
    # The error sent, for the journal (a slot: it reads it for every request).
    error: ApiError | None
    # Whether the path is under API_PATHS (found with its segments, so the
    # journal and the metrics need not look for every request).
    api: bool

    def __init__(self, channel: Any, *args: Any, **kw: Any) -> None:
        # What http.Request, server.Request and Componentized set, set here
        # in one step (their three ``__init__``s cost a microsecond or two per
        # request). A slot hides its name's class default: twisted.web's
        # defaults are set here too, as are ours.
        self.notifications = []
        self.channel = channel
        self.client = channel.getPeer()
        self.host = channel.getHost()
        self.requestHeaders = Headers()
        self.received_cookies = {}
        self.responseHeaders = Headers()
        self.cookies = []
        self.transport = channel.transport
        # (channel, queued, parsePOSTFormSubmission=), as twisted.web's.
        self.queued = bool(args[0] if args else kw.get("queued", False))
        parse = kw.get("parsePOSTFormSubmission")
        self._parsePOSTFormSubmission = (
            channel.site._parsePOSTFormSubmission if parse is None else parse
        )
        self._adapterCache = {}
        self.content = None
        self.args = None  # type: ignore[assignment]  # twisted.web's default
        self.method = b"(no method yet)"
        self.uri = b"(no uri yet)"
        self.clientproto = b"(no clientproto yet)"
        self.path = None  # type: ignore[assignment]  # twisted.web's default
        self.site = None
        self.prepath = None
        self.postpath = None
        self.code = 200  # http.OK (an attribute of a deprecation proxy: slow)
        self.code_message = b"OK"
        self.producer = None
        self.startedWriting = 0
        self.chunked = 0
        self.sentLength = 0
        self.finished = 0
        self._disconnected = False
        self.request_id = ""
        self.started = 0.0
        self.fault = None
        self.body_bytes = None
        self.reply = None
        self.journaled = False
        self.api_key = ""
        self.stream = None
        self.endpoint = None
        self.model = None
        self.parsed = None
        self.raw_head = None
        self.error = None
        self.api = False

    def setHeader(self, name: bytes | str, value: bytes | str) -> None:
        if type(value) is bytes and type(name) is bytes:
            if self.stream_type is not None and value.startswith(b"text/event-stream"):
                value = self.stream_type
            put(self.responseHeaders, name, value)
            return
        super().setHeader(name, value)

    @property
    def mock_site(self) -> MockSite:
        return cast(MockSite, self.site)

    # The channel hands over the head as it came (``raw_head``).
    keeps_raw_head = True

    # Off: every request goes through twisted.web's requestReceived (the
    # tests compare).
    fast_receive = True

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        # twisted.web's own, less what a site that never parses form bodies
        # (``parsePOSTFormSubmission=False``, MockSite's) skips anyway.
        if self._parsePOSTFormSubmission or not self.fast_receive:
            super().requestReceived(command, path, version)
            return
        content: Any = self.content
        content.seek(0, 0)
        self.method = command
        self.uri = path
        self.clientproto = version
        if b"?" in path:
            self.path, query = path.split(b"?", 1)
            self.args = http.parse_qs(query, 1)
        else:
            self.path = path
            self.args = {}
        self.process()

    def process(self) -> None:
        # twisted.web's own process, less its per-request Date formatting
        # (the site formats it once per second of its clock).
        self.site = site = cast(Any, self.channel).site
        self.started = now = site.clock.seconds()
        self.request_id = rid = request_id()
        headers: Any = self.responseHeaders
        # (after any set already: a ``Connection: close`` checkPersistence
        # decided)
        headers._rawHeaders = {
            **headers._rawHeaders,
            b"X-Request-Id": (rid.encode(),),
            **_common_headers(site, now),
        }
        self.prepath = []
        path = self.path
        segments, self.api = _route(path)
        self.postpath = list(segments)
        if path == b"*":
            self._handleStar()
            return
        try:
            if type(site).getResourceFor is _GET_RESOURCE_FOR:
                # server.Site's own, less its copy of an empty prepath.
                self.sitepath: list[bytes] = []
                resource = getChildForRequest(site.resource, self)
            else:
                resource = site.getResourceFor(self)
            if _IEncodingResource.providedBy(resource):
                encoder = resource.getEncoder(self)
                if encoder is not None:
                    self._encoder = encoder
            self.render(resource)
        except BaseException:
            self.processingFailed(Failure())

    def gotLength(self, length: int | None) -> None:
        # The request line is in: a file upload's path spools to disk.
        site = getattr(self.channel, "site", None)
        spooled = getattr(site, "spooled", None)
        if spooled is not None:
            method = getattr(self.channel, "_command", b"")
            limit = spooled(method, getattr(self.channel, "_path", b""))
            if limit is not None:
                where = getattr(site, "spool_dir", None)
                directory = where() if where is not None else None
                self.content = BoundedBody.spooled(limit, length, directory)
                return
        super().gotLength(length)

    def write(self, data: bytes) -> None:
        if self.startedWriting:
            if (
                self.chunked
                and not self.finished
                and not self._disconnected
                and self._encoder is None
            ):
                # A stream's chunk: framed here, as http.Request.write would,
                # and once the head is out handed straight to the channel (four
                # calls less per chunk).
                size = len(data)
                self.sentLength += size
                if size:
                    data = b"%x\r\n%b\r\n" % (size, data)
                    sender: Any = self.channel
                    if type(sender) is GuardedChannel and sender._head is None:
                        sender.send_now(data)
                    else:
                        sender.write(data)
                return
            super().write(data)
            return
        if not data:
            super().write(data)
            return
        # The first body bytes carry the head in the same send (the channel
        # holds it: GuardedChannel.hold_head).
        channel: Any = self.channel
        if getattr(channel, "hold_head", None) is None:
            super().write(data)
            return
        if self.fast_first_write and self._plain_response():
            self._first_write(channel, data)
            return
        channel.hold_head()
        try:
            super().write(data)
        finally:
            channel.release_head()

    # Off: every first write goes through twisted.web's (the tests compare).
    fast_first_write = True

    def _plain_response(self) -> bool:
        """Nothing twisted.web's first write would treat specially: no HEAD,
        no 204/304, no encoder, cookies, ETag or Last-Modified."""
        return (
            self.method != b"HEAD"
            and self.code not in _NO_BODY_CODES
            and not self.finished
            and not self._disconnected
            and self._encoder is None
            and not self._inFakeHead
            and not self.cookies
            and self.etag is None
            and self.lastModified is None
        )

    def _first_write(self, channel: Any, data: bytes) -> None:
        """server.Request's and http.Request's first write in one step, for
        a plain response: the default content type, chunked framing unless
        there is a length (HTTP/1.1), then head and body in one send."""
        raw: dict[bytes, Any] = self.responseHeaders._rawHeaders
        length = raw.get(b"Content-Length")
        if (
            raw.get(b"Content-Type") is None
            and self.defaultContentType is not None
            and not (length and length[0] == b"0")
        ):
            raw[b"Content-Type"] = (self.defaultContentType,)
        self.startedWriting = 1
        version = self.clientproto
        self.sentLength += len(data)
        if length is None and version == b"HTTP/1.1":
            raw[b"Transfer-Encoding"] = (b"chunked",)
            self.chunked = 1
            data = _chunk(data)
        head = response_head(
            version, b"%d" % self.code, self.code_message, self.responseHeaders
        )
        channel.write(head + data)

    def processing_ms(self) -> bytes:
        site: Any = self.site
        elapsed = round((site.clock.seconds() - self.started) * 1000)
        return b"%d" % elapsed if elapsed > 0 else b"0"

    def processingFailed(self, reason: Failure) -> None:
        log.failure(
            "Unhandled error in {uri} (request {request_id})",
            failure=reason,
            uri=redacted_uri(self.uri),
            request_id=self.request_id,
        )
        if self.finished or self._disconnected:
            return
        if self.startedWriting:
            # Headers are out: the only honest signal left is a broken connection.
            self.channel.forceAbortClient()
            return
        send_error(self, server_error())

    def body(self) -> bytes:
        content: Any = self.content
        if content is None and self.body_bytes is not None:
            return self.body_bytes  # released under a stream (registerProducer)
        if isinstance(content, BoundedBody) and content.overflow:
            raise ApiError(
                413,
                f"Request body too large: the limit is {content.limit} bytes.",
                code="request_too_large",
            )
        content.seek(0)
        data = cast(bytes, content.read())
        self.body_bytes = data
        return data

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        super().registerProducer(producer, streaming)
        # A paced stream may stay open for minutes: the in-memory body it was
        # parsed from is in ``body_bytes`` already, so its buffer goes.
        content = self.content
        if (
            self.body_bytes is not None
            and type(content) is BoundedBody
            and not content.on_disk
        ):
            content.close()
            self.content = None

    def answered(self, status: int) -> None:
        """The response is decided: its first byte goes out (once per request)."""
        if self.journaled:
            return
        self.journaled = True
        hooks = self.hooks
        if hooks is not None:
            hooks.emit("first_byte", self, status)
        self.raw_head = None

    @property
    def hooks(self) -> Hooks | None:
        # None before process() (a connection lost mid-headers has no site).
        return getattr(self.site, "hooks", None)

    def finish(self) -> None:
        if (
            self.startedWriting
            and not self.chunked
            and not self.finished
            and not self._disconnected
            and self._encoder is None
            and not self.queued
        ):
            self._done()
        else:
            super().finish()
        hooks = self.hooks
        if hooks is not None:
            hooks.emit("last_byte", self)

    def _done(self) -> None:
        """What server.Request's and http.Request's finish do once the body
        is written, in one step (not queued: ``_cleanup`` now)."""
        factory = getattr(self.channel, "factory", None)
        if factory is not None:
            factory.log(self)
        self.finished = 1
        self._cleanup()

    # Off: a stream's last write and its finish are two steps (the tests compare).
    fast_finish_with = True

    def finish_with(self, data: bytes) -> None:
        """Write ``data`` and finish: for a chunked body, the last chunk and
        the body's end in one send (a stream's last events: one packet, not
        two); otherwise ``write`` then ``finish``."""
        channel: Any = self.channel
        if (
            self.fast_finish_with
            and data
            and self.startedWriting
            and self.chunked
            and not self.finished
            and not self._disconnected
            and self._encoder is None
            and not self.queued
            and type(channel) is GuardedChannel
            and channel._head is None
        ):
            # http.Request's write and finish, in one step.
            self.sentLength += len(data)
            channel.send_now(_chunk(data) + b"0\r\n\r\n")
            self._done()
            hooks = self.hooks
            if hooks is not None:
                hooks.emit("last_byte", self)
            return
        self.write(data)
        self.finish()

    def connectionLost(self, reason: Failure) -> None:
        finished = self.finished
        super().connectionLost(reason)
        stream = self.stream
        if stream is not None and not finished:
            # As a ``notifyFinish`` errback would, after those (a held
            # request's capacity release first), without a Deferred held by
            # every open stream.
            stream.connectionLost(reason)
        hooks = self.hooks
        if not finished and hooks is not None:
            hooks.emit("disconnected", self)


def send_json(request: server.Request, status: int, body: bytes) -> bytes:
    """Set status and headers for a JSON body; return it for ``render`` to write."""
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    if isinstance(request, ApiRequest):
        request.setHeader(b"openai-processing-ms", request.processing_ms())
        request.answered(status)
    return body


def send_error(
    request: server.Request,
    error: ApiError,
    render: Callable[[ApiError], bytes] = error_body,
) -> None:
    """Answer with the provider's error body and finish the request."""
    if isinstance(request, ApiRequest):
        if request.request_id and error.request_id is None:
            error = dataclasses.replace(error, request_id=request.request_id)
        request.error = error
        hooks = request.hooks
        if hooks is not None:
            hooks.emit("error", request, error)
    for name, value in error.headers.items():
        request.setHeader(name.encode(), value.encode())
    body = send_json(request, error.status, render(error))
    request.setHeader(b"content-length", b"%d" % len(body))
    if request.method != b"HEAD":
        request.write(body)
    request.finish()


class MockSite(server.Site):
    """Tracks open channels (so tests can wait for a quiet server)."""

    requestFactory = ApiRequest
    # The pipeline's events (the server sets them; None in bare tests).
    hooks: Hooks | None = None
    # A graceful stop has begun (mockai_tw/drain.py): from now on no response
    # keeps its connection alive (GuardedChannel.checkPersistence).
    draining = False
    # ``x-mockai-worker`` on every response, with several workers (workers.py).
    worker_header: bytes | None = None
    # (method, path) -> the body limit of a path whose body spools to disk
    # (file uploads), or None for the in-memory ``max_body_bytes``.
    spooled: Callable[[bytes, bytes], int | None] | None = None
    # Where those bodies are spooled (None, or a None from it: the system's
    # temporary directory).
    spool_dir: Callable[[], str | None] | None = None

    def __init__(
        self,
        resource: IResource,
        clock: IReactorTime,
        max_body_bytes: Callable[[], int],
        limits: Callable[[], HttpLimits] = default_limits,
    ) -> None:
        super().__init__(resource, parsePOSTFormSubmission=False, reactor=clock)
        # Connection limits (web/connections.py) replace Twisted's idle timer,
        # which every trickled byte resets; their timers run on ``clock``.
        self.timeOut = None
        self.protocol = channel_factory(limits, clock)  # type: ignore[method-assign]
        self.cap = ConnectionCap(lambda: limits().max_connections)
        self.clock = clock
        self.max_body_bytes = max_body_bytes
        self.channels: set[Any] = set()
        self._idle: list[defer.Deferred[None]] = []

    _date_second: int | None = None
    _date: bytes = b""

    def date_header(self, now: float) -> bytes:
        """The ``Date`` header for ``now`` (seconds on the site's clock),
        formatted once per second."""
        second = int(now)
        if second != self._date_second:
            self._date = http.datetimeToString(second)
            self._date_second = second
        return self._date

    def getContentFile(self, length: int | None) -> BoundedBody:
        return BoundedBody(self.max_body_bytes(), length)

    def log(self, request: http.Request) -> None:
        """Twisted's access log, never: ours listens to the pipeline's hooks
        while ``http.access_log`` is on (``mockai_tw.logs.AccessLog``)."""

    def buildProtocol(self, addr: IAddress | None) -> Any:
        if not self.cap.admit(len(self.channels)):
            return None  # refused: the port closes the socket unread
        protocol = super().buildProtocol(addr)
        self.channels.add(protocol)
        protocol.connectionLost = _Untracked(self, protocol, protocol.connectionLost)
        return protocol

    def untracked(self, protocol: Any) -> None:
        """``protocol``'s connection is gone: it no longer counts."""
        self.channels.discard(protocol)

    def released(self) -> None:
        """A tracked connection's own ``connectionLost`` has run."""
        self.cap.released(len(self.channels))
        if not self.channels:
            waiting, self._idle = self._idle, []
            for d in waiting:
                d.callback(None)

    def quiet(self) -> defer.Deferred[None]:
        """Fires once no connection is open."""
        if not self.channels:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._idle.append(d)
        return d


class _Untracked:
    """A channel's ``connectionLost`` that also untracks it on the site.

    Slotted rather than a closure: every open connection holds one (a
    function and its three cells were ~270 B).
    """

    __slots__ = ("lost", "protocol", "site")

    def __init__(
        self, site: MockSite, protocol: Any, lost: Callable[[Failure], None]
    ) -> None:
        self.site = site
        self.protocol = protocol
        self.lost = lost

    def __call__(self, reason: Failure) -> None:
        site = self.site
        protocol = self.protocol
        site.untracked(protocol)
        try:
            self.lost(reason)
        finally:
            # The channel holds this and this the channel: let go of it, or
            # every closed connection is a cycle left for the collector.
            vars(protocol).pop("connectionLost", None)
            site.released()
