"""Stored chat completions: ``store: true`` keeps one; ``GET /v1/chat/completions``
lists them, and ``/v1/chat/completions/{id}`` (and ``/messages``) reads,
updates and deletes one.

They are kept in ``Face.completions`` (``web/kept.py``), bounded by
``chat_completions.store_size``, shared across processes with
``state.backend: redis``.  A listing reads every kept completion (the store's
size at most) and filters and orders them here.
"""

from __future__ import annotations

import itertools
from collections.abc import Coroutine
from typing import Any, cast
from urllib.parse import unquote

from twisted.web import server
from twisted.web.resource import IResource

from mockai_tw.engine.plan import ChatPlan
from mockai_tw.engine.records import Record, page
from mockai_tw.errors import ApiError
from mockai_tw.request.chat import ChatRequest
from mockai_tw.request.stored import StoredQuery, parse_query, parse_update
from mockai_tw.web.face import Face
from mockai_tw.web.pipeline import Endpoint, EndpointResource
from mockai_tw.web.resources import ApiResource
from mockai_tw.web.site import ApiRequest, send_json
from mockai_tw.wire.stored import (
    completion_body,
    deleted_body,
    list_body,
    messages_body,
    stored_record,
)

#: Orders the completions one process stores within one clock reading.
_SEQUENCE = itertools.count()


def store_completion(face: Face, request: Any, plan: Any) -> None:
    """The pipeline's ``kept`` hook: keep a ``store: true`` completion."""
    if not isinstance(request, ChatRequest) or not request.store:
        return
    if not isinstance(plan, ChatPlan):
        return
    record = stored_record(plan, request, face.clock.seconds())
    record["seq"] = next(_SEQUENCE)
    face.completions.share(plan.id, record)


def not_found(completion_id: str) -> ApiError:
    return ApiError(
        404,
        f"Chat completion with id '{completion_id}' not found.",
        param="completion_id",
    )


def _matches(record: Record, query: StoredQuery) -> bool:
    completion = record["completion"]
    if query.model is not None and completion.get("model") != query.model:
        return False
    metadata = completion.get("metadata") or {}
    return all(metadata.get(k) == v for k, v in query.metadata.items())


class ChatCompletions(EndpointResource):
    """``POST`` (the pipeline) and ``GET`` (those stored) ``/v1/chat/completions``."""

    def __init__(self, face: Face, endpoint: Endpoint) -> None:
        super().__init__(face, endpoint)

    def render_GET(self, request: server.Request) -> int:
        query = parse_query(request.args or {})
        return self.later(request, self._list(request, query))

    async def _list(self, request: server.Request, query: StoredQuery) -> bytes:
        records = [r for r in await self.state.completions.all() if _matches(r, query)]
        records.sort(key=lambda r: (r.get("at", 0.0), r.get("seq", 0), r["id"]))
        found = page(records, lambda r: r["id"], query.limit, query.order, query.after)
        return send_json(request, 200, list_body(found))

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if not path and not request.postpath:
            return self
        return StoredCompletion(self.state, unquote(path.decode("utf-8", "replace")))


class StoredCompletion(ApiResource):
    """``GET``/``POST`` (metadata)/``DELETE /v1/chat/completions/{id}``."""

    def __init__(self, face: Face, completion_id: str) -> None:
        super().__init__(face)
        self.completion_id = completion_id

    def answer(self, request: server.Request, work: Coroutine[Any, Any, bytes]) -> int:
        return self.later(request, work)

    async def record(self) -> Record:
        found = await self.state.completions.get(self.completion_id)
        if found is None:
            raise not_found(self.completion_id)
        return found

    def render_GET(self, request: server.Request) -> int:
        return self.answer(request, self._get(request))

    async def _get(self, request: server.Request) -> bytes:
        return send_json(request, 200, completion_body(await self.record()))

    def render_POST(self, request: server.Request) -> int:
        metadata = parse_update(cast(ApiRequest, request).body())
        return self.answer(request, self._update(request, dict(metadata)))

    async def _update(self, request: server.Request, metadata: dict[str, str]) -> bytes:
        record = await self.record()
        completion = {**record["completion"], "metadata": metadata}
        record = {**record, "completion": completion}
        await self.state.completions.put(self.completion_id, record)
        return send_json(request, 200, completion_body(record))

    def render_DELETE(self, request: server.Request) -> int:
        return self.answer(request, self._delete(request))

    async def _delete(self, request: server.Request) -> bytes:
        if not await self.state.completions.delete(self.completion_id):
            raise not_found(self.completion_id)
        return send_json(request, 200, deleted_body(self.completion_id))

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if path == b"messages" and not request.postpath:
            return StoredMessages(self)
        return super().getChild(path, request)


class StoredMessages(ApiResource):
    """``GET /v1/chat/completions/{id}/messages``: the request's messages."""

    isLeaf = True

    def __init__(self, entry: StoredCompletion) -> None:
        super().__init__(entry.state)
        self.entry = entry

    def render_GET(self, request: server.Request) -> int:
        query = parse_query(request.args or {})
        return self.later(request, self._list(request, query))

    async def _list(self, request: server.Request, query: StoredQuery) -> bytes:
        messages = (await self.entry.record())["messages"]
        found = page(messages, lambda m: m["id"], query.limit, query.order, query.after)
        return send_json(request, 200, messages_body(found))
