"""Record, replay and passthrough on the reactor: the pipeline asks here first.

``Recorder.serve`` runs after the auth gate and before the rules.  Replay
answers from the recording book through the same admission as any request
(rate limit, fault) and delivers the recorded body or events on the shared
ticker; a miss is an error naming the key, or falls through to the rules.
Record and passthrough forward the request upstream with their own Agent
(TLS verified, no persistent connections) and relay the answer chunk by
chunk as it arrives -- never buffered whole -- while capturing each SSE
event with its offset, then write the recording (redacted) once the answer
is complete.  Upstream failures are the provider's error shape: 502
(refused, TLS, broken) or 504 (timeout).
"""

from __future__ import annotations

import datetime
import os
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from twisted.internet import defer
from twisted.internet import error as net_error
from twisted.internet.interfaces import IPushProducer, IReactorTCP, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.client import (
    Agent,
    FileBodyProducer,
    HTTPConnectionPool,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse
from zope.interface import implementer

from mockai_tw.config import Config
from mockai_tw.engine.faults import break_body, break_events
from mockai_tw.errors import ApiError
from mockai_tw.recording.files import Event, Recording, next_name, save, slug
from mockai_tw.recording.keys import MatchKey, parsed_body
from mockai_tw.recording.promote import promote
from mockai_tw.recording.providers import (
    CREDENTIAL_HEADERS,
    HOP_BY_HOP,
    RESPONSE_HOP_BY_HOP,
    Provider,
    prompt_text,
    provider_for,
)
from mockai_tw.recording.replay import (
    Book,
    Fresh,
    miss_message,
    replay_body,
    replay_events,
    scaled,
)
from mockai_tw.recording.setup import policy_of
from mockai_tw.request.common import parse_body
from mockai_tw.web.face import Face
from mockai_tw.web.pipeline import Endpoint, admit_recorded, fault_error, open_stream
from mockai_tw.web.site import ApiRequest, send_error, send_json

log = Logger()

#: Query parameters that carry a key (Gemini's ``?key=``): never written.
SECRET_PARAMS = frozenset({"key", "api_key", "api-key"})
_SEPARATORS = (b"\r\n\r\n", b"\n\n")


def upstream_url(base: str, uri: bytes) -> bytes:
    """``uri`` under ``base``: a base ending in the route's first part
    (``.../v1`` for ``/v1/...``) takes the rest, any other the whole path."""
    path, _, query = uri.decode("utf-8", "replace").partition("?")
    base = base.rstrip("/")
    first = "/" + path.lstrip("/").split("/", 1)[0]
    if urlsplit(base).path.endswith(first) and first != "/":
        path = path[len(first) :]
    return (base + path + (f"?{query}" if query else "")).encode("utf-8")


def _safe_query(uri: bytes) -> str:
    query = uri.partition(b"?")[2].decode("utf-8", "replace")
    pairs = [
        (k, "[redacted]" if k.lower() in SECRET_PARAMS else v)
        for k, v in parse_qsl(query, keep_blank_values=True)
    ]
    return urlencode(pairs)


def _without_key(uri: bytes) -> bytes:
    """``uri`` without a ``?key=`` (Gemini's key parameter)."""
    path, sep, query = uri.partition(b"?")
    if not sep:
        return uri
    pairs = parse_qsl(query.decode("utf-8", "replace"), keep_blank_values=True)
    kept = [(k, v) for k, v in pairs if k.lower() not in SECRET_PARAMS]
    return path + (b"?" + urlencode(kept).encode() if kept else b"")


def _upstream_error(failure: Failure, timeout_s: float) -> ApiError:
    """An upstream failure before its headers, as the client sees it."""
    reasons = [failure]
    if failure.check(ResponseNeverReceived, ResponseFailed):
        reasons = list(getattr(failure.value, "reasons", [])) or reasons
    for reason in reasons:
        if reason.check(
            defer.TimeoutError, defer.CancelledError, net_error.TimeoutError
        ):
            return ApiError(
                504,
                f"The upstream did not answer within {timeout_s:g} seconds.",
                type="server_error",
                code="upstream_timeout",
            )
        text = f"{type(reason.value).__module__}.{type(reason.value).__name__}"
        if "SSL" in text or "TLS" in text or "certificate" in str(reason.value):
            return ApiError(
                502,
                f"The upstream's TLS handshake failed: {reason.getErrorMessage()}",
                type="server_error",
                code="upstream_tls_error",
            )
    reason = reasons[0]
    return ApiError(
        502,
        f"The upstream could not be reached: {reason.getErrorMessage()}",
        type="server_error",
        code="upstream_unreachable",
    )


class Recorder:
    """The server's record and replay state; rebuilt when its config changes."""

    def __init__(self, config: Config, clock: IReactorTime) -> None:
        self.config = config.recording
        self.upstream = config.upstream
        self.policy = policy_of(self.config)
        self.book = Book(config.recordings)
        self.clock = clock
        self._agent: Agent | None = None

    @property
    def mode(self) -> str:
        return self.config.mode

    def matches(self, config: Config) -> bool:
        """Whether ``config`` leaves this recorder as it is (a reload)."""
        return (
            config.recording == self.config
            and config.upstream == self.upstream
            and config.recordings is self.book_source
        )

    book_source: tuple[Recording, ...] = ()

    @property
    def agent(self) -> Agent:
        if self._agent is None:
            reactor: Any = self.clock
            if not IReactorTCP.providedBy(reactor):  # pragma: no cover - a Clock
                from twisted.internet import reactor as global_reactor

                reactor = global_reactor
            # Not persistent: nothing outlives a request, so a reload or a
            # stop leaves no idle connection behind.
            pool = HTTPConnectionPool(reactor, persistent=False)
            self._agent = Agent(
                reactor, pool=pool, connectTimeout=self.upstream.timeout_s
            )
        return self._agent

    # --- the pipeline's question -------------------------------------------------

    def serve(
        self, face: Face, ep: Endpoint, request: ApiRequest, default_model: str | None
    ) -> bytes | int | None:
        """The answer from recording or upstream, or None for the pipeline's own."""
        mode = self.mode
        path = request.path.decode("utf-8", "replace")
        provider = provider_for(path)
        data = request.body()
        request.endpoint = ep.name
        replaying = mode in ("replay", "replay_or_record")
        if replaying:
            parse_body(data)  # a body that is not JSON is the usual 400
        body = parsed_body(data)
        model = body.get("model") if isinstance(body, dict) else None
        model = model if isinstance(model, str) else default_model
        request.model = model
        method = request.method.decode("ascii", "replace")
        key = self.policy.key(method, path, data, provider)
        if replaying:
            rec = self.book.take(key)
            if rec is not None:
                return self.replay(face, ep, request, rec, model or "")
            if mode == "replay":
                if self.config.on_miss == "default":
                    return None
                closest = self.book.closest(key)
                raise ApiError(
                    404,
                    miss_message(key, closest, len(self.book)),
                    code="recording_not_found",
                )
        return self.forward(
            face, ep, request, data, key, provider, mode != "passthrough"
        )

    # --- replay ------------------------------------------------------------------

    def replay(
        self, face: Face, ep: Endpoint, request: ApiRequest, rec: Recording, model: str
    ) -> bytes | int:
        """``rec`` admitted like any request (rate limit, fault), then delivered."""
        fault = admit_recorded(face, ep, request, model, rec.tokens)
        if fault is not None and fault.drop:
            request.transport.abortConnection()  # type: ignore[union-attr]
            return server.NOT_DONE_YET
        error = fault_error(ep, fault)
        if error is not None:
            raise error
        face.hooks.emit("admitted", request)
        now = int(face.clock.seconds())
        fresh = Fresh(now) if self.config.fresh_ids else None
        for name, value in rec.headers:
            if name == "x-request-id" and fresh is not None:
                continue
            limits = ("x-ratelimit-", "anthropic-ratelimit-", "retry-after")
            if name.startswith(limits) and request.responseHeaders.hasHeader(
                name.encode()
            ):
                continue  # the mock's own rate limit speaks
            request.setHeader(name.encode(), value.encode("latin-1", "replace"))
        elapsed = max(0.0, face.clock.seconds() - request.started)
        speed = self.config.speed
        content_type = rec.content_type.encode("latin-1", "replace")
        if rec.streamed:
            events = replay_events(rec, speed, elapsed, fresh)
            open_stream(
                face,
                ep,
                request,
                break_events(events, fault),
                content_type=content_type,
            )
            return server.NOT_DONE_YET
        data = replay_body(rec, fresh)
        delay = max(0.0, scaled(rec.duration_ms, speed) - elapsed)
        send_json(request, rec.status, data)
        request.setHeader(b"content-type", content_type)
        if fault is None and delay <= 0:
            return data
        request.setHeader(b"content-length", b"%d" % len(data))
        open_stream(
            face,
            ep,
            request,
            break_body(data, delay, fault),
            content_type=None,
            status=rec.status,
        )
        return server.NOT_DONE_YET

    # --- record and passthrough ----------------------------------------------------

    def _headers(self, request: ApiRequest, provider: Provider) -> Headers:
        out = Headers()
        dropped = set(HOP_BY_HOP)
        key_env = self.upstream.api_key_env
        if key_env is not None:
            dropped.update(CREDENTIAL_HEADERS)
        for name, values in request.requestHeaders.getAllRawHeaders():
            if name.decode("latin-1").lower() not in dropped:
                out.setRawHeaders(name, values)
        for extra, text in self.upstream.headers.items():
            out.setRawHeaders(extra.encode("latin-1"), [text.encode("latin-1")])
        out.setRawHeaders(b"accept-encoding", [b"identity"])
        if key_env is not None:
            key = os.environ.get(key_env)
            if not key:
                raise ApiError(
                    502,
                    f"The upstream key is missing: upstream.api_key_env names"
                    f" {key_env}, which is not set.",
                    type="server_error",
                    code="upstream_key_missing",
                )
            secret = (provider.key_prefix + key).encode("latin-1")
            out.setRawHeaders(provider.key_header.encode(), [secret])
        return out

    def forward(
        self,
        face: Face,
        ep: Endpoint,
        request: ApiRequest,
        data: bytes,
        key: MatchKey,
        provider: Provider,
        keep: bool,
    ) -> int:
        """Send ``request`` upstream; the relay answers as the answer arrives."""
        base = self.upstream.base_url
        assert base is not None  # the config requires it for these modes
        uri = request.uri
        if self.upstream.api_key_env is not None:
            uri = _without_key(uri)  # the mock's own key stays here
        url = upstream_url(base, uri)
        headers = self._headers(request, provider)
        relay = Relay(self, face, ep, request, data, key, provider, keep)
        producer = FileBodyProducer(_Bytes(data)) if data else None
        d = self.agent.request(request.method, url, headers, producer)
        d.addTimeout(self.upstream.timeout_s, self.clock)
        relay.pending = d
        # Answered when the upstream's headers come (the journal waits for them).
        request.queued = True
        request.notifyFinish().addErrback(relay.gone)
        d.addCallbacks(relay.response, relay.failed)
        d.addErrback(relay.broke)
        return server.NOT_DONE_YET

    def keep(self, rec: Recording) -> None:
        """Write a finished recording and make it replayable at once."""
        try:
            save(rec)
        except OSError as error:
            log.error(
                "mockai: recording not written to {file}: {why}",
                file=rec.file,
                why=error.strerror or str(error),
            )
            return
        self.book.add(rec)

    def promote(self, rec_id: str) -> dict[str, Any] | None:
        rec = self.book.get(rec_id)
        return None if rec is None else promote(rec)


class _Bytes:
    """A bytes reader for FileBodyProducer (which wants a file)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def read(self, size: int = -1) -> bytes:
        end = len(self.data) if size < 0 else self.pos + size
        chunk = self.data[self.pos : end]
        self.pos += len(chunk)
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        self.pos = offset if whence == 0 else len(self.data) + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def close(self) -> None:
        pass


@implementer(IPushProducer)
class Relay(Protocol):
    """One forwarded request: relays the upstream answer and captures it.

    It is the client response's producer too: a client that stops reading
    pauses the upstream connection (backpressure end to end).
    """

    def __init__(
        self,
        recorder: Recorder,
        face: Face,
        ep: Endpoint,
        request: ApiRequest,
        data: bytes,
        key: MatchKey,
        provider: Provider,
        keep: bool,
    ) -> None:
        self.recorder = recorder
        self.face = face
        self.ep = ep
        self.request = request
        self.data = data
        self.key = key
        self.provider = provider
        self.keep = keep
        self.pending: defer.Deferred[IResponse] | None = None
        self.closed = False
        self.streamed = False
        self.status = 0
        self.headers: list[tuple[str, str]] = []
        self.body: list[bytes] = []
        self.buffer = b""
        self.events: list[Event] = []
        self.size = 0
        self.too_big = False
        self.events_sent = 0
        self.idle: Any = None

    @property
    def clock(self) -> IReactorTime:
        return self.recorder.clock

    def _upstream(self) -> Any:
        """The upstream body's transport (a producer: pause, resume, stop)."""
        return self.transport

    def _ms(self) -> float:
        return (self.clock.seconds() - self.request.started) * 1000.0

    # --- before the upstream's headers ------------------------------------------

    def failed(self, failure: Failure) -> None:
        self.request.queued = False
        if self.closed:
            return
        self.closed = True
        error = _upstream_error(failure, self.recorder.upstream.timeout_s)
        log.warn(
            "mockai: upstream request failed ({code}): {why}",
            code=error.code,
            why=failure.getErrorMessage(),
        )
        send_error(self.request, error, self.ep.error_body)

    def broke(self, failure: Failure) -> None:
        """A bug in the relay itself: logged, and the client not left hanging."""
        log.failure("mockai: relaying an upstream answer failed", failure)
        request = self.request
        if request.finished or request._disconnected:
            return
        if request.startedWriting:
            request.channel.forceAbortClient()
        else:
            self.closed = True
            send_error(
                request,
                ApiError(502, "The upstream answer broke.", type="server_error"),
                self.ep.error_body,
            )

    def gone(self, _: Failure) -> None:
        """The client went away: stop the upstream, save nothing."""
        self.closed = True
        self.keep = False
        if self.transport is not None:
            self._upstream().stopProducing()
        elif self.pending is not None and not self.pending.called:
            self.pending.cancel()

    def response(self, response: IResponse) -> None:
        self.request.queued = False
        if self.closed:
            response.deliverBody(_Discard())
            return
        request = self.request
        self.status = response.code
        request.setResponseCode(response.code, response.phrase)
        kept: list[tuple[str, str]] = []
        for name, values in response.headers.getAllRawHeaders():
            lower = name.decode("latin-1").lower()
            if lower in RESPONSE_HOP_BY_HOP:
                continue
            request.responseHeaders.setRawHeaders(name, values)
            if self.provider.keeps(lower):
                kept.extend((lower, v.decode("latin-1")) for v in values)
        self.headers = list(self.recorder.policy.header_map(kept).items())
        ctype = response.headers.getRawHeaders(b"content-type") or [b""]
        self.streamed = ctype[0].lower().startswith(b"text/event-stream")
        if self.streamed:
            no_delay = getattr(request.transport, "setTcpNoDelay", None)
            if no_delay is not None:
                no_delay(True)
        request.answered(response.code)
        request.registerProducer(self, True)
        self._arm()
        response.deliverBody(self)

    # --- the body ----------------------------------------------------------------

    def _arm(self) -> None:
        if self.idle is not None and self.idle.active():
            self.idle.cancel()
        self.idle = self.clock.callLater(self.recorder.upstream.timeout_s, self._silent)

    def _silent(self) -> None:
        self.idle = None
        self.silent = True
        if self.transport is not None:
            self._upstream().stopProducing()

    silent = False

    def dataReceived(self, data: bytes) -> None:
        self._arm()
        if not self.closed:
            self.request.write(data)
        self._capture(data)

    def _capture(self, data: bytes) -> None:
        if not self.keep or self.too_big:
            return
        self.size += len(data)
        if self.size > self.recorder.config.max_body_bytes:
            self.too_big = True
            self.body, self.events, self.buffer = [], [], b""
            log.warn(
                "mockai: an answer past recording.max_body_bytes ({limit}) is"
                " relayed but not recorded ({key})",
                limit=self.recorder.config.max_body_bytes,
                key=self.key.describe(),
            )
            return
        if not self.streamed:
            self.body.append(data)
            return
        self.buffer += data
        offset = self._ms()
        while True:
            ends = [
                (at, len(sep))
                for sep in _SEPARATORS
                if (at := self.buffer.find(sep)) >= 0
            ]
            if not ends:
                break
            at, length = min(ends)
            self.events.append(Event(offset, self.buffer[: at + length]))
            self.buffer = self.buffer[at + length :]

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self.idle is not None and self.idle.active():
            self.idle.cancel()
        self.idle = None
        complete = (
            reason.check(ResponseDone, http.PotentialDataLoss) and not self.silent
        )
        request = self.request
        if self.closed:
            return
        self.closed = True
        request.unregisterProducer()
        if not complete:
            self.keep = False
            error = (
                ApiError(
                    504,
                    "The upstream went silent mid-answer.",
                    type="server_error",
                    code="upstream_timeout",
                )
                if self.silent
                else ApiError(
                    502,
                    "The upstream connection broke mid-answer.",
                    type="server_error",
                    code="upstream_broken",
                )
            )
            log.warn(
                "mockai: {why} ({key})", why=error.message, key=self.key.describe()
            )
            if self.streamed:
                request.write(self.ep.error_event(error, len(self.events)))
            else:
                request.channel.forceAbortClient()
                return
        request.finish()
        if self.keep and not self.too_big:
            self.recorder.keep(self._recording())

    def _recording(self) -> Recording:
        policy = self.recorder.policy
        request = self.request
        if self.buffer:
            self.events.append(Event(self._ms(), self.buffer))
        events = tuple(Event(e.offset_ms, policy.body(e.data)) for e in self.events)
        directory = self.recorder.config.dir
        path = request.path.decode("utf-8", "replace")
        prompt = prompt_text(self.provider, parsed_body(self.data))
        file, seq = next_name(directory, slug(path, prompt), self.key.digest)
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, vs in request.requestHeaders.getAllRawHeaders()
            for v in vs
        ]
        stem = file.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        return Recording(
            id=stem,
            file=file,
            key=self.key,
            seq=seq,
            method=request.method.decode("ascii", "replace").upper(),
            path=path,
            query=_safe_query(request.uri),
            request_headers=policy.header_map(headers),
            request_body=policy.body(self.data),
            status=self.status,
            headers=tuple(self.headers),
            body=b"" if self.streamed else policy.body(b"".join(self.body)),
            events=events,
            duration_ms=self._ms(),
            recorded_at=datetime.datetime.now(datetime.UTC).isoformat(
                timespec="seconds"
            ),
        )

    # --- IPushProducer: the client's pace is the upstream's ------------------------

    def pauseProducing(self) -> None:
        if self.transport is not None:
            self._upstream().pauseProducing()

    def resumeProducing(self) -> None:
        if self.transport is not None:
            self._upstream().resumeProducing()

    def stopProducing(self) -> None:
        if self.transport is not None:
            self._upstream().stopProducing()


class _Discard(Protocol):
    def connectionMade(self) -> None:
        transport: Any = self.transport
        if transport is not None:
            transport.stopProducing()


def recorder_for(config: Config, clock: IReactorTime, old: Recorder | None) -> Recorder:
    """The recorder for ``config``: the old one when nothing it uses changed."""
    if old is not None and old.matches(config):
        return old
    recorder = Recorder(config, clock)
    recorder.book_source = config.recordings
    return recorder
