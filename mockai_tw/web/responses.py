"""``/v1/responses``: create (through the pipeline), retrieve, delete, input items.

The store of kept responses is the server's (``Face.responses``): a config
reload makes a new engine, and a chain of responses should survive it.
"""

from __future__ import annotations

from urllib.parse import unquote

from twisted.web import server
from twisted.web.resource import IResource

from mockai_tw.engine.background import not_background
from mockai_tw.engine.responses import ResponsePlan, not_found
from mockai_tw.request.background import parse_retrieve
from mockai_tw.request.responses import parse_list_params
from mockai_tw.web.background import replay
from mockai_tw.web.conversations import COMPACT, INPUT_TOKENS
from mockai_tw.web.endpoints import RESPONSES
from mockai_tw.web.face import Face
from mockai_tw.web.pipeline import EndpointResource
from mockai_tw.web.resources import ApiResource
from mockai_tw.web.shared import Shared, ThroughStore
from mockai_tw.web.site import send_json
from mockai_tw.wire.responses import deleted_body, input_items_body, response_body


class Responses(EndpointResource):
    """``POST /v1/responses``; its child is a response id."""

    def __init__(self, face: Face) -> None:
        super().__init__(face, RESPONSES)

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if not path and not request.postpath:
            return self  # ``/v1/responses/``
        if path in COUNTING and not request.postpath:
            return EndpointResource(self.state, COUNTING[path])
        return ResponseEntry(self.state, unquote(path.decode("utf-8", "replace")))


COUNTING = {b"compact": COMPACT, b"input_tokens": INPUT_TOKENS}


class _Kept(ThroughStore):
    """A kept response's resource: with shared state, the response is first
    fetched from the store (it may have been made by another process)."""

    response_id: str

    async def shared(self, request: server.Request, shared: Shared) -> bytes | int:
        found = await shared.fetch([self.response_id])
        for plan in found.values():
            self.state.responses.keep(plan)
        if request.method == b"DELETE":
            await shared.store.response_delete(self.response_id)
        return ApiResource.render(self, request)


class ResponseEntry(_Kept):
    """``GET`` / ``DELETE /v1/responses/{id}``; 404 for an id not kept."""

    def __init__(self, face: Face, response_id: str) -> None:
        super().__init__(face)
        self.response_id = response_id

    def stored(self) -> ResponsePlan:
        found = self.state.responses.get(self.response_id)
        if found is None:
            raise not_found(self.response_id)
        return found

    def render_GET(self, request: server.Request) -> bytes | int:
        query = parse_retrieve(request.args or {})
        if query.stream:
            return replay(self.state, RESPONSES, request, self.stored(), query)
        return send_json(request, 200, response_body(self.stored()))

    def render_DELETE(self, request: server.Request) -> bytes:
        if not self.state.responses.delete(self.response_id):
            raise not_found(self.response_id)
        return send_json(request, 200, deleted_body(self.response_id))

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if path == b"input_items" and not request.postpath:
            return InputItems(self)
        if path == b"cancel" and not request.postpath:
            return Cancel(self)
        return super().getChild(path, request)


class InputItems(_Kept):
    """``GET /v1/responses/{id}/input_items``: the items the response was given."""

    isLeaf = True

    def __init__(self, entry: ResponseEntry) -> None:
        super().__init__(entry.state)
        self.entry = entry
        self.response_id = entry.response_id

    def render_GET(self, request: server.Request) -> bytes:
        params = parse_list_params(request.args or {})
        plan = self.entry.stored()
        return send_json(request, 200, input_items_body(plan, params))


class Cancel(_Kept):
    """``POST /v1/responses/{id}/cancel``: a background response stops."""

    isLeaf = True

    def __init__(self, entry: ResponseEntry) -> None:
        super().__init__(entry.state)
        self.entry = entry
        self.response_id = entry.response_id

    def render_POST(self, request: server.Request) -> bytes:
        stored = self.entry.stored()
        if not stored.request.background:
            raise not_background(self.response_id)
        cancelled = self.state.background.cancel(stored)
        return send_json(request, 200, response_body(cancelled))
