"""The one pipeline every endpoint runs, in one order, in one place.

An endpoint is an ``Endpoint`` description (request model, matcher,
planner, token reservation, renderers); ``EndpointResource`` serves any of
them.  The order is the contract:

    parse -> model check -> match rules (claimed, not committed)
      -> rate limit (plans first only when a token budget needs the reply)
      -> capacity (a slot, a place in the queue, or a refusal)
      -> fault (one decision) -> plan -> commit the claim -> deliver

so a request refused by the rate limit, by capacity, a fault before headers,
or a 400 raised while planning moves no rule counter and leaves nothing
behind.  A request that waits for capacity returns ``NOT_DONE_YET`` and is
delivered, slowed as the pool is full, when a slot frees (on the reactor: no
thread, no sleep); it holds its slot until its last byte or its disconnect.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from twisted.logger import Logger
from twisted.web import server

from mockai_tw.delivery import Event, Stream
from mockai_tw.engine.capacity import Ticket, slowed
from mockai_tw.engine.faults import Fault, break_body, break_events
from mockai_tw.engine.models import check_model
from mockai_tw.engine.ratelimit import Decision, Shown, shared_decision
from mockai_tw.engine.rules import Claim, ErrorAnswer, Hit, RuleBook, scripted_error
from mockai_tw.engine.timing import Override
from mockai_tw.errors import ApiError, invalid
from mockai_tw.journal import HeaderMap
from mockai_tw.state.types import UNLIMITED, BucketCharge, Candidate, StoreUnavailable
from mockai_tw.web.face import Face
from mockai_tw.web.heads import canonical_name
from mockai_tw.web.resources import ApiResource, fail_late, finish_late
from mockai_tw.web.shared import MAX_STALE, Shared, unavailable
from mockai_tw.web.site import ApiRequest, send_json
from mockai_tw.wire.errors import error_body, error_event

log = Logger()

SSE = b"text/event-stream; charset=utf-8"


def _canonical(name: bytes) -> bytes:
    found = canonical_name(name)
    assert found is not None
    return found


# What ``open_stream`` sets on an SSE response, by twisted.web's spelling,
# in the order it sets them (``fast_headers``; off: one ``setHeader`` each,
# the tests compare).
_SSE_HEADERS = {
    _canonical(b"content-type"): (SSE,),
    _canonical(b"cache-control"): (b"no-cache",),
    _canonical(b"x-accel-buffering"): (b"no",),
}
_PROCESSING_MS = _canonical(b"openai-processing-ms")
_SET_HEADER = ApiRequest.setHeader
fast_headers = True


@dataclass(frozen=True)
class Endpoint:
    """One endpoint, described once.

    ``match`` returns what ``plan`` needs (the parsed request, or a prepared
    form of it) and one rule hit per rule question (legacy completions ask
    once per prompt); ``reserve`` is the tokens to charge a budget with, given
    the parsed request and a thunk that plans (called only if needed).
    """

    # The endpoint as rules and the journal name it.
    name: str
    parse: Callable[[bytes, str | None], Any]
    match: Callable[
        [Face, Any, Mapping[str, str], float, Claim], tuple[Any, tuple[Hit | None, ...]]
    ]
    plan: Callable[[Face, Any, tuple[Hit | None, ...], float, Override | None], Any]
    reserve: Callable[[Any, Callable[[], Any]], int]
    body: Callable[[Any], bytes]
    # None: never streamed.
    stream: Callable[[Any], Iterator[Event]] | None = None
    # Whether x-mock-ttft-ms / x-mock-itl-ms apply.
    timed: bool = True
    # The provider's shapes: an error body, and the event that ends a stream.
    error_body: Callable[[ApiError], bytes] = error_body
    error_event: Callable[[ApiError, int], bytes] = error_event
    # After the reply is handed to delivery (the Responses store keeps it).
    sent: Callable[[Face, Any], None] | None = None
    # The ids of kept replies a request continues (previous_response_id):
    # with shared state they are fetched from the store first.
    continues: Callable[[Any], Sequence[str]] | None = None
    # With shared state: bring what the request reads (its conversation)
    # into this process before it is matched.
    fetch: Callable[[Face, Any], Awaitable[None]] | None = None
    # After ``sent``, with the parsed request (a stored chat completion).
    kept: Callable[[Face, Any, Any], None] | None = None
    # The provider's own rate-limit headers, from the budgets a decision
    # shows (kind, limit, available, seconds to full) and the time now;
    # None: OpenAI's ``x-ratelimit-*``.
    headers: Callable[[Sequence[Shown], float], Mapping[str, str]] | None = None
    # The status an ``overloaded`` fault answers with: 529 where the provider
    # has it (Anthropic; OpenAI clients retry it); Google answers with 503.
    overloaded_status: int = 529


def _header(request: server.Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1").strip() if value else None


def timing_override(face: Face, request: server.Request) -> Override | None:
    """``x-mock-ttft-ms`` / ``x-mock-itl-ms``, where the config allows them."""
    if not face.config.timing.header_overrides:
        return None
    values: dict[str, float | None] = {}
    for name in ("ttft", "itl"):
        header = f"x-mock-{name}-ms"
        text = _header(request, header.encode())
        if text is None:
            values[name] = None
            continue
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not 0 <= value <= 3_600_000:
            raise invalid(f"Invalid {header} header: {text!r} (0 to 3600000 ms).")
        values[name] = value
    if values["ttft"] is None and values["itl"] is None:
        return None
    return Override(values["ttft"], values["itl"])


def _refusal(hits: tuple[Hit | None, ...]) -> ApiError | None:
    """A rule's ``error`` answer: it is what this request gets, once admitted."""
    for hit in hits:
        if hit is not None and isinstance(hit.answer, ErrorAnswer):
            return scripted_error(hit)
    return None


class EndpointResource(ApiResource):
    """Serves one ``Endpoint`` (``default_model``: Azure names it in the path)."""

    def __init__(
        self, face: Face, endpoint: Endpoint, default_model: str | None = None
    ) -> None:
        super().__init__(face)
        self.endpoint = endpoint
        self.default_model = default_model
        self.error_body = endpoint.error_body

    def render_POST(self, request: server.Request) -> bytes | int:
        request = cast(ApiRequest, request)
        # Record and replay (web/proxy.py) answer first, after the auth gate.
        recorder = getattr(self.state, "recorder", None)
        if recorder is not None and recorder.mode != "off":
            answered = recorder.serve(
                self.state, self.endpoint, request, self.default_model
            )
            if answered is not None:
                return cast("bytes | int", answered)
        shared = self.state.shared
        if shared is not None and not shared.local:
            return self.later(
                request,
                serve_shared(self.state, self.endpoint, request, self.default_model),
            )
        return serve(self.state, self.endpoint, request, self.default_model)


@dataclass
class _Asked:
    """What the steps before admission found out about one request."""

    parsed: Any
    model: str
    timing: Override | None
    now: float


def _front(
    face: Face, ep: Endpoint, request: ApiRequest, default_model: str | None
) -> _Asked:
    """Parse, check the model, read the timing headers: no state is touched."""
    request.endpoint = ep.name
    parsed = ep.parse(request.body(), default_model)
    request.parsed = parsed
    model: str = parsed.model
    request.model = model
    config = face.config
    if config.strict_models:
        check_model(config, model)
    timing = (
        timing_override(face, request)
        if ep.timed and config.timing.header_overrides
        else None
    )
    return _Asked(parsed, model, timing, face.clock.seconds())


def _planner(
    face: Face, ep: Endpoint, asked: _Asked, prepared: Any, hits: tuple[Hit | None, ...]
) -> Callable[[], Any]:
    """The reply, planned once, when first asked for."""
    planned: list[Any] = []

    def plan() -> Any:
        if not planned:
            planned.append(ep.plan(face, prepared, hits, asked.now, asked.timing))
        return planned[0]

    return plan


def serve(
    face: Face, ep: Endpoint, request: ApiRequest, default_model: str | None
) -> bytes | int:
    """Run ``request`` through every step of ``ep``; errors raise ApiError."""
    asked = _front(face, ep, request, default_model)
    now = asked.now
    claim = Claim()
    # (an empty book claims nothing: its commit would be a no-op)
    ruled = bool(face.engine.rules)
    prepared, hits = ep.match(
        face, asked.parsed, HeaderMap(request.requestHeaders), now, claim
    )
    if not ruled and fast_admit and _unguarded(face):
        return _admitted(face, ep, request, asked, prepared, hits)
    refusal = _refusal(hits)
    plan = _planner(face, ep, asked, prepared, hits)
    if refusal is not None:
        reserve: Callable[[], int] = lambda: 0  # noqa: E731
    else:
        reserve = lambda: ep.reserve(asked.parsed, plan)  # noqa: E731
    decision = face.limiter.admit(request.api_key, asked.model, reserve, now)
    _limited(request, decision, ep, now)
    return _proceed(
        face,
        ep,
        request,
        asked,
        hits,
        plan,
        commit=lambda: face.engine.rules.commit(claim, now),
        release=_nothing,
    )


# Off: every request goes through each admission step (the tests compare).
fast_admit = True


def _unguarded(face: Face) -> bool:
    """No rate limit, no capacity, no fault header and no odds of a fault:
    admission would charge, hold and deal nothing, and draw nothing."""
    return (
        not face.limiter.config.enabled
        and not face.capacity.enabled
        and not face.config.faults.header
        and not face.faults.unprompted()
    )


def _admitted(
    face: Face,
    ep: Endpoint,
    request: ApiRequest,
    asked: _Asked,
    prepared: Any,
    hits: tuple[Hit | None, ...],
) -> bytes | int:
    """``serve``'s steps after matching for a request ``_unguarded`` admits
    with no rule in the book: what ``_proceed`` comes to with no refusal,
    no ticket, no fault and nothing claimed, in one step."""
    request.fault = None
    reply = ep.plan(face, prepared, hits, asked.now, asked.timing)
    face.hooks.emit("admitted", request)
    request.reply = reply
    streamed = ep.stream is not None and asked.parsed.stream
    result = _deliver(face, ep, request, streamed, reply, None)
    _sent(face, ep, request, reply)
    return result


def _nothing() -> None:
    """A claim with nothing to undo (no shared store)."""


def _times(times: int | None) -> int:
    return UNLIMITED if times is None else times


def _limited(request: ApiRequest, decision: Decision, ep: Endpoint, now: float) -> None:
    """The rate limit's headers (OpenAI's, or the endpoint's provider's own
    names); its 429 raises."""
    error = decision.error
    headers: Mapping[str, str] = decision.headers
    if ep.headers is not None and decision.budgets:
        headers = ep.headers(decision.budgets, now)
        if error is not None:
            # The 429 keeps its retry-after, under the provider's names.
            kept = {k: v for k, v in error.headers.items() if k not in decision.headers}
            error = dataclasses.replace(error, headers={**headers, **kept})
    for name, value in headers.items():
        request.setHeader(name.encode(), value.encode())
    if error is not None:
        raise error


def _proceed(
    face: Face,
    ep: Endpoint,
    request: ApiRequest,
    asked: _Asked,
    hits: tuple[Hit | None, ...],
    plan: Callable[[], Any],
    commit: Callable[[], None],
    release: Callable[[], None],
) -> bytes | int:
    """After the rate limit: capacity, the fault, the plan, then the rule's
    counters (``commit``; ``release`` undoes a store's claim refused here)."""
    now = asked.now
    refusal = _refusal(hits)
    # A rule's error answer is sent at once: it takes no capacity.
    limited = face.capacity.enabled and refusal is None
    ticket = None
    try:
        fault, ticket = _admit(face, request, asked.model, hits, now, limited)
        if fault is not None and fault.drop:
            request.transport.abortConnection()  # type: ignore[union-attr]
            if ticket is not None:
                face.capacity.release(ticket, now)
            release()
            return server.NOT_DONE_YET
        error = fault_error(ep, fault)
        if error is not None:
            raise error
        reply = None if refusal is not None else plan()
    except BaseException:
        if ticket is not None:
            face.capacity.release(ticket, now)
        release()
        raise
    # Admitted and planned: only now do the rule's counters move.
    commit()
    streamed = ep.stream is not None and asked.parsed.stream
    if ticket is not None:
        return _hold(face, ep, request, streamed, reply, fault, ticket)
    face.hooks.emit("admitted", request)
    if refusal is not None:
        raise refusal
    request.reply = reply
    result = _deliver(face, ep, request, streamed, reply, fault)
    _sent(face, ep, request, reply)
    return result


def _sent(face: Face, ep: Endpoint, request: ApiRequest, reply: Any) -> None:
    if ep.sent is not None:
        ep.sent(face, reply)
        if face.shared is not None and not face.shared.local:
            face.shared.keep(reply, face.config.responses.store_size)
    if ep.kept is not None:
        ep.kept(face, request.parsed, reply)
    if request.stream is not None:
        # Nothing reads it once the stream is under way.
        request.parsed = None


async def serve_shared(
    face: Face, ep: Endpoint, request: ApiRequest, default_model: str | None
) -> bytes | int:
    """``serve`` with the state every process shares: one round trip admits
    the request (rules version, budgets, rule counters) before the same
    steps as ``serve``.  A token budget that needs the reply is charged in a
    second trip, once the reply is planned."""
    shared = face.shared
    assert shared is not None
    asked = _front(face, ep, request, default_model)
    if not shared.connected:
        if shared.local:
            return serve(face, ep, request, default_model)
        raise unavailable()
    try:
        return await _serve_shared(face, ep, request, asked, shared)
    except StoreUnavailable:
        raise unavailable() from None


async def _serve_shared(
    face: Face, ep: Endpoint, request: ApiRequest, asked: _Asked, shared: Shared
) -> bytes | int:
    book = face.engine.rules
    if shared.version < 0:
        await shared.sync(book)
    if ep.continues is not None:
        # The kept replies this one follows, from whichever process kept them.
        ids = [i for i in ep.continues(asked.parsed) if face.responses.get(i) is None]
        for kept in (await shared.fetch(ids)).values():
            face.responses.keep(kept)
    if ep.fetch is not None:
        await ep.fetch(face, asked.parsed)
    budgets = face.limiter.charges(request.api_key, asked.model)
    requests = [b for b in budgets if b.kind == "requests"]
    tokens = [b for b in budgets if b.kind == "tokens"]
    headers = HeaderMap(request.requestHeaders)
    for _ in range(MAX_STALE):
        claim = Claim(recording=True)
        prepared, hits = ep.match(face, asked.parsed, headers, asked.now, claim)
        questions = [
            [
                Candidate(
                    e.counter, UNLIMITED if e.rule.times is None else e.rule.times
                )
                for e, _ctx, _captures in question
            ]
            for question in claim.questions
        ]
        charges = [BucketCharge(b.key, b.limit, b.capacity, 1) for b in requests]
        result = await shared.store.admit(shared.version, charges, questions)
        if not result.stale:
            break
        await shared.sync(book)
    else:
        raise unavailable()
    if claim.questions:
        hits = RuleBook.resolve(claim, result.picks)
    claimed = result.claimed(questions)

    def release() -> None:
        if claimed:
            shared.store.guard(shared.store.release(claimed), "rule release")

    states = [(s.available, s.wait, s.reset) for s in result.buckets]
    decision = shared_decision(requests, [1] * len(requests), states, asked.model)
    plan = _planner(face, ep, asked, prepared, hits)
    if decision.error is None and tokens and _refusal(hits) is None:
        try:
            amount = ep.reserve(asked.parsed, plan)
        except BaseException:
            release()
            raise
        charged = await shared.store.charge(
            [BucketCharge(b.key, b.limit, b.capacity, amount) for b in tokens]
        )
        both = shared_decision(
            [*requests, *tokens],
            [1] * len(requests) + [amount] * len(tokens),
            [*states, *((s.available, s.wait, s.reset) for s in charged.buckets)],
            asked.model,
        )
        if both.error is not None:
            release()
        decision = both
    _limited(request, decision, ep, asked.now)
    return _proceed(
        face, ep, request, asked, hits, plan, commit=lambda: None, release=release
    )


def fault_error(ep: Endpoint, fault: Fault | None) -> ApiError | None:
    """The HTTP error ``fault`` answers at ``ep`` with, if it is one, in the
    status the provider uses."""
    error = None if fault is None else fault.error
    if error is not None and error.status == 529 and ep.overloaded_status != 529:
        error = dataclasses.replace(error, status=ep.overloaded_status)
    return error


def admit_recorded(
    face: Face, ep: Endpoint, request: ApiRequest, model: str, tokens: int
) -> Fault | None:
    """A replayed answer's admission (web/proxy.py): the rate limit and the
    one fault decision, as for any request; rules and capacity do not apply."""
    now = face.clock.seconds()
    decision = face.limiter.admit(request.api_key, model, tokens, now)
    _limited(request, decision, ep, now)
    fault, _ticket = _admit(face, request, model, (), now, limited=False)
    return fault


def _enter(face: Face, model: str, now: float) -> Ticket:
    """A capacity slot or a place in the queue; a full queue refuses (before
    any header, before the rule's counters move)."""
    capacity = face.capacity
    ticket = capacity.enter(model, now)
    if ticket.running or ticket.waiting:
        return ticket
    raise capacity.refusal(ticket, model)


def _hold(
    face: Face,
    ep: Endpoint,
    request: ApiRequest,
    streamed: bool,
    reply: Any,
    fault: Fault | None,
    ticket: Ticket,
) -> bytes | int:
    """Deliver now or when a slot frees; the slot is held to the last byte
    (or the disconnect), and a client gone while waiting leaves the queue."""
    capacity = face.capacity

    def release(_: object) -> None:
        capacity.release(ticket, face.clock.seconds())

    request.notifyFinish().addBoth(release)
    if ticket.running:
        return _run(face, ep, request, streamed, reply, fault, ticket)

    def start(started: Ticket) -> None:
        request.queued = False
        try:
            result = _run(face, ep, request, streamed, reply, fault, started)
            finish_late(request, result)
        except Exception:
            log.failure(
                "mockai: a request that waited for capacity failed to start"
                " (request {request_id})",
                request_id=request.request_id,
            )
            fail_late(request, None, ep.error_body)

    ticket.on_start = start
    request.queued = True
    face.hooks.emit("queued", request)
    return server.NOT_DONE_YET


def _run(
    face: Face,
    ep: Endpoint,
    request: ApiRequest,
    streamed: bool,
    reply: Any,
    fault: Fault | None,
    ticket: Ticket,
) -> bytes | int:
    """Start a request that has its slot, paced as the pool is full."""
    request.queue_s = ticket.queue_s
    config = face.config
    if config.timing.enabled:
        prefill = config.capacity.prefill_ms_per_token
        reply = slowed(reply, ticket.factor, prefill, streamed)
    face.hooks.emit("admitted", request)
    request.reply = reply
    result = _deliver(face, ep, request, streamed, reply, fault)
    _sent(face, ep, request, reply)
    return result


def _admit(
    face: Face,
    request: ApiRequest,
    model: str,
    hits: tuple[Hit | None, ...],
    now: float,
    limited: bool,
) -> tuple[Fault | None, Ticket | None]:
    """Capacity when ``limited`` (a slot or a place in the queue, held from
    here; a full queue raises), then the one fault decision."""
    ticket = _enter(face, model, now) if limited else None
    first = next((h for h in hits if h is not None), None)
    asked = _header(request, b"x-mock-fault") if face.config.faults.header else None
    try:
        fault = face.faults.decide(
            model,
            asked,
            first.fault if first is not None else None,
            first.fault_probability if first is not None else 1.0,
        )
    except BaseException:
        if ticket is not None:
            face.capacity.release(ticket, now)
        raise
    request.fault = fault.kind if fault is not None else None
    return fault, ticket


def _deliver(
    face: Face,
    ep: Endpoint,
    request: ApiRequest,
    streamed: bool,
    reply: Any,
    fault: Fault | None,
) -> bytes | int:
    """The body now, later, or as a paced stream, broken as ``fault`` says."""
    if streamed and ep.stream is not None:
        events = ep.stream(reply)
        if fault is not None:
            events = break_events(events, fault)
        open_stream(face, ep, request, events)
        return server.NOT_DONE_YET
    data = ep.body(reply)
    delay_s: float = getattr(reply, "delay_s", 0.0)
    if fault is None and delay_s <= 0:
        return send_json(request, 200, data)
    send_json(request, 200, data)
    request.setHeader(b"content-length", b"%d" % len(data))
    open_stream(face, ep, request, break_body(data, delay_s, fault), content_type=None)
    return server.NOT_DONE_YET


def open_stream(
    face: Face,
    ep: Endpoint,
    request: ApiRequest,
    events: Iterator[Event],
    content_type: bytes | None = SSE,
    status: int = 200,
) -> None:
    """Start a paced response (SSE unless told otherwise); delivery takes it."""
    request.setResponseCode(status)
    if (
        content_type == SSE
        and fast_headers
        and type(request).setHeader is _SET_HEADER
        and request.stream_type is None
    ):
        # The four ``setHeader`` calls below, as ``site.put`` makes them
        # (canonical names, a tuple each), in one step: every value is a
        # constant or digits.
        raw: dict[bytes, Any] = request.responseHeaders._rawHeaders
        raw.update(_SSE_HEADERS)
        raw[_PROCESSING_MS] = (request.processing_ms(),)
    else:
        if content_type is not None:
            request.setHeader(b"content-type", content_type)
            if content_type.startswith(b"text/event-stream"):
                request.setHeader(b"cache-control", b"no-cache")
                request.setHeader(b"x-accel-buffering", b"no")
        request.setHeader(b"openai-processing-ms", request.processing_ms())
    # Small paced writes leave at once: twisted.web set TCP_NODELAY on the
    # connection when it was made (tests/test_connections.py NoDelayTests).
    transport = request.transport

    stream = Stream(
        request,
        events,
        face.clock.seconds(),
        transport,
        face.hooks,
        # A paced plain body has no way to carry an error: it is cut off.
        error_event=None if content_type is None else ep.error_event,
    )
    request.stream = stream
    request.answered(status)
    request.registerProducer(stream, True)
    # (a lost connection closes it: ApiRequest.connectionLost)
    face.ticker.add(stream)
