"""Sending a planned reply: rate limits, faults and timing, alike on every endpoint.

The engine has decided what to say; here the web layer charges the caller's
budget, asks for a fault, and sends the body now, later, or as a paced
stream, broken the way the fault says.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from twisted.web import server

from mockai_tw.engine.faults import Fault, break_body, break_events
from mockai_tw.engine.timing import Override
from mockai_tw.errors import invalid
from mockai_tw.web.site import ApiRequest, send_json

if TYPE_CHECKING:
    from mockai_tw.server import MockServer


def _header(request: server.Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    return value.decode("latin-1").strip() if value else None


def api_key(request: server.Request) -> str:
    """The caller's key, for budgets (Bearer, or Azure's ``api-key``)."""
    key = _header(request, b"api-key")
    if key:
        return key
    auth = _header(request, b"authorization") or ""
    scheme, _, rest = auth.partition(" ")
    return rest.strip() if scheme.lower() == "bearer" else ""


def timing_override(state: MockServer, request: server.Request) -> Override | None:
    """``x-mock-ttft-ms`` / ``x-mock-itl-ms``, where the config allows them."""
    if not state.config.timing.header_overrides:
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


def _fault(
    state: MockServer, request: ApiRequest, model: str, scripted: str | None
) -> Fault | None:
    """A header's fault (where allowed), else a rule's, else one by chance."""
    asked = _header(request, b"x-mock-fault") if state.config.faults.header else None
    fault = state.faults.decide(model, asked or scripted)
    request.fault = fault.kind if fault is not None else None
    return fault


def respond(
    state: MockServer,
    request: server.Request,
    *,
    model: str,
    tokens: int,
    body: Callable[[], bytes],
    events: Callable[[], Iterator[tuple[float, bytes]]] | None = None,
    delay_s: float = 0.0,
    fault: str | None = None,
) -> bytes | int:
    """Send a reply: JSON ``body`` (after ``delay_s``), or ``events`` when streamed."""
    api_request: ApiRequest = request  # type: ignore[assignment]
    decision = state.limiter.admit(
        api_key(request), model, tokens, state.clock.seconds()
    )
    for name, value in decision.headers.items():
        request.setHeader(name.encode(), value.encode())
    if decision.error is not None:
        raise decision.error
    dealt = _fault(state, api_request, model, fault)
    if dealt is not None:
        error = dealt.error
        if error is not None:
            raise error
        if dealt.kind == "drop":
            request.transport.abortConnection()  # type: ignore[union-attr]
            return server.NOT_DONE_YET
    if events is not None:
        state.stream(api_request, break_events(events(), dealt))
        return server.NOT_DONE_YET
    data = body()
    if dealt is None and delay_s <= 0:
        return send_json(request, 200, data)
    send_json(request, 200, data)
    request.setHeader(b"content-length", b"%d" % len(data))
    state.stream(api_request, break_body(data, delay_s, dealt), content_type=None)
    return server.NOT_DONE_YET
