"""``/v1/responses``: create (plain or streamed), retrieve, delete, input items.

The store of kept responses lives on this resource, not on the engine: a
config reload makes a new engine, and a chain of responses should survive it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast
from urllib.parse import unquote

from twisted.web import server
from twisted.web.resource import IResource

from mockai_tw.engine.models import check_model
from mockai_tw.engine.responses import (
    ResponsePlan,
    ResponseStore,
    not_found,
    plan_response,
)
from mockai_tw.journal import HeaderMap
from mockai_tw.request.responses import parse_list_params, parse_responses_request
from mockai_tw.web.reply import respond, timing_override
from mockai_tw.web.resources import ApiResource
from mockai_tw.web.site import ApiRequest, send_json
from mockai_tw.wire.responses import (
    deleted_body,
    input_items_body,
    response_body,
    response_stream,
)

if TYPE_CHECKING:
    from mockai_tw.server import MockServer


class Responses(ApiResource):
    """``POST /v1/responses``; its child is a response id."""

    def __init__(self, server_state: MockServer) -> None:
        super().__init__(server_state)
        self._store = ResponseStore(server_state.config.responses.store_size)

    @property
    def store(self) -> ResponseStore:
        """The store, sized by the current config (a reload may resize it)."""
        size = self.state.config.responses.store_size
        if self._store.size != size:
            self._store.resize(size)
        return self._store

    def render_POST(self, request: server.Request) -> bytes | int:
        parsed = parse_responses_request(cast(ApiRequest, request).body())
        state = self.state
        check_model(state.config, parsed.model)
        timing = timing_override(state, request)
        plan = plan_response(
            state.engine,
            self.store,
            parsed,
            state.clock.seconds(),
            timing,
            HeaderMap(request.requestHeaders),
        )
        cast(ApiRequest, request).reply = plan
        sent = respond(
            state,
            request,
            model=parsed.model,
            tokens=plan.usage.prompt_tokens
            + (parsed.max_output_tokens or plan.usage.completion_tokens),
            body=lambda: response_body(plan),
            events=(lambda: response_stream(plan)) if parsed.stream else None,
            delay_s=plan.delay_s,
            fault=plan.fault,
        )
        self.store.keep(plan)
        return sent

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if not path and not request.postpath:
            return self  # ``/v1/responses/``
        return ResponseEntry(self, unquote(path.decode("utf-8", "replace")))


class ResponseEntry(ApiResource):
    """``GET`` / ``DELETE /v1/responses/{id}``; 404 for an id not kept."""

    def __init__(self, responses: Responses, response_id: str) -> None:
        super().__init__(responses.state)
        self.responses = responses
        self.response_id = response_id

    def stored(self) -> ResponsePlan:
        found = self.responses.store.get(self.response_id)
        if found is None:
            raise not_found(self.response_id)
        return found

    def render_GET(self, request: server.Request) -> bytes:
        return send_json(request, 200, response_body(self.stored()))

    def render_DELETE(self, request: server.Request) -> bytes:
        if not self.responses.store.delete(self.response_id):
            raise not_found(self.response_id)
        return send_json(request, 200, deleted_body(self.response_id))

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if path == b"input_items" and not request.postpath:
            return InputItems(self)
        return super().getChild(path, request)


class InputItems(ApiResource):
    """``GET /v1/responses/{id}/input_items``: the items the response was given."""

    isLeaf = True

    def __init__(self, entry: ResponseEntry) -> None:
        super().__init__(entry.state)
        self.entry = entry

    def render_GET(self, request: server.Request) -> bytes:
        params = parse_list_params(request.args or {})
        plan = self.entry.stored()
        return send_json(request, 200, input_items_body(plan, params))
