"""``/v1/conversations`` and its items; a conversation as a response's context;
``POST /v1/responses/compact`` and ``/v1/responses/input_tokens``.

Conversations are kept in ``Face.conversations`` (``web/kept.py``): this
process, or the store every process shares.  The hooks here let the one
pipeline read a conversation before it answers and append to it after.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import Any, cast
from urllib.parse import unquote

import orjson

from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import IResource

from mockai_tw.engine.conversations import (
    CompactPlan,
    appended,
    compact,
    history,
    input_tokens,
    item_not_found,
    new_record,
    not_found,
)
from mockai_tw.engine.plan import ResponsePlan, TokenCount
from mockai_tw.engine.records import Record, page
from mockai_tw.engine.responses import Prepared, _listed, prepare_response
from mockai_tw.engine.rules import Claim, Hit
from mockai_tw.errors import ApiError, invalid
from mockai_tw.request.common import parse_body
from mockai_tw.request.conversations import (
    parse_add,
    parse_create,
    parse_item_query,
    parse_items_query,
    parse_update,
)
from mockai_tw.request.responses import ResponsesRequest, parse_responses_request
from mockai_tw.web.face import Face
from mockai_tw.web.pipeline import Endpoint
from mockai_tw.web.resources import ApiResource
from mockai_tw.web.site import ApiRequest, send_json
from mockai_tw.wire.conversations import (
    compacted_body,
    conversation_body,
    conversation_deleted_body,
    input_tokens_body,
    item_body,
    item_page_body,
    items_added_body,
    listed_items,
    response_items,
)

log = Logger()

# --- the pipeline's hooks -------------------------------------------------------


def conversation_context(
    face: Face, request: ResponsesRequest
) -> tuple[dict[str, Any], ...]:
    """The conversation's items as chat messages (read from this process's
    cache, which ``fetch_conversation`` filled with shared state)."""
    if request.conversation is None:
        return ()
    record = face.conversations.local.get(request.conversation)
    if record is None:
        raise not_found(request.conversation, param="conversation")
    limit = face.config.conversations.max_items
    if len(record.get("items") or ()) + len(request.input) >= limit:
        raise invalid(
            f"Conversation '{request.conversation}' is full ({limit} items:"
            " conversations.max_items).",
            param="conversation",
        )
    return history(record)


async def fetch_conversation(face: Face, request: Any) -> None:
    conversation = getattr(request, "conversation", None)
    if conversation is not None:
        await face.conversations.fetch(conversation)


def prepare(face: Face, request: ResponsesRequest) -> Prepared:
    return prepare_response(
        face.responses, request, conversation_context(face, request)
    )


def append_response(face: Face, plan: ResponsePlan) -> None:
    """A response's input and output items join its conversation."""
    conversation = plan.request.conversation
    if conversation is None:
        return
    kept = face.conversations
    record = kept.local.get(conversation)
    if record is None:
        return  # deleted meanwhile
    try:
        grown = appended(
            record, response_items(plan), face.config.conversations.max_items
        )
    except ApiError as error:
        log.warn("mockai: response {id} not added: {why}", id=plan.id, why=error)
        return
    kept.share(conversation, grown)


# --- responses/input_tokens and responses/compact ------------------------------

_COUNTED = (
    "model",
    "input",
    "previous_response_id",
    "tools",
    "text",
    "reasoning",
    "truncation",
    "instructions",
    "conversation",
    "tool_choice",
    "parallel_tool_calls",
)
_COMPACTED = ("model", "input", "previous_response_id", "instructions")
#: The model counted for when ``input_tokens`` names none.
DEFAULT_COUNT_MODEL = "gpt-4o"


def _as_responses(data: bytes, keys: tuple[str, ...], model: str | None) -> Any:
    """Read the fields a counting endpoint shares with ``/v1/responses`` with
    its parser (so the errors name the same params); the rest is ignored."""
    body = parse_body(data)
    sub = {k: body[k] for k in keys if body.get(k) is not None}
    if model is not None:
        sub.setdefault("model", model)
    return parse_responses_request(orjson.dumps(sub))


def _prepared(
    face: Face, request: Any, headers: Mapping[str, str], now: float, claim: Claim
) -> tuple[Prepared, tuple[Hit | None, ...]]:
    # Counting answers no rule: only the request budget applies.
    return prepare(face, request), (None,)


def _continues(request: ResponsesRequest) -> tuple[str, ...]:
    return (request.previous_response_id,) if request.previous_response_id else ()


INPUT_TOKENS = Endpoint(
    name="input_tokens",
    parse=lambda body, model: _as_responses(
        body, _COUNTED, model or DEFAULT_COUNT_MODEL
    ),
    match=_prepared,
    plan=lambda face, prepared, hits, now, timing: TokenCount(
        prepared.request.model, input_tokens(prepared)
    ),
    reserve=lambda request, plan: 0,
    body=lambda plan: input_tokens_body(plan.prompt_tokens),
    timed=False,
    continues=_continues,
    fetch=fetch_conversation,
)


def _compact_body(plan: CompactPlan) -> bytes:
    output = listed_items(plan.kept)
    output.append(
        {
            "id": plan.compaction_id,
            "type": "compaction",
            "encrypted_content": plan.encrypted_content,
        }
    )
    return compacted_body(plan.id, plan.created_at, output, plan.usage)


COMPACT = Endpoint(
    name="compact",
    parse=lambda body, model: _as_responses(body, _COMPACTED, model),
    match=_prepared,
    plan=lambda face, prepared, hits, now, timing: compact(prepared, now),
    reserve=lambda request, plan: int(plan().usage.prompt_tokens),
    body=_compact_body,
    timed=False,
    continues=_continues,
)


# --- /v1/conversations ----------------------------------------------------------


class _Async(ApiResource):
    """Answers with a coroutine (the store may be another process's)."""

    def answer(self, request: server.Request, work: Coroutine[Any, Any, bytes]) -> int:
        return self.later(request, work)


def _body(request: server.Request) -> bytes:
    return cast(ApiRequest, request).body()


def _segment(path: bytes) -> str:
    return unquote(path.decode("utf-8", "replace"))


class Conversations(_Async):
    """``POST /v1/conversations``; its child is a conversation id."""

    def render_POST(self, request: server.Request) -> int:
        body = parse_create(_body(request))
        return self.answer(request, self._create(request, body))

    async def _create(self, request: server.Request, body: Any) -> bytes:
        face = self.state
        limit = face.config.conversations.max_items
        if len(body.items) > limit:
            raise invalid(f"At most {limit} items per conversation.", param="items")
        items = listed_items(_listed(body.items))
        record = new_record(face.clock.seconds(), body.metadata, items)
        await face.conversations.put(record["id"], record)
        return send_json(request, 200, conversation_body(record))

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if not path and not request.postpath:
            return self
        return ConversationEntry(self.state, _segment(path))


class _InConversation(_Async):
    def __init__(self, face: Face, conversation_id: str) -> None:
        super().__init__(face)
        self.conversation_id = conversation_id

    async def record(self) -> Record:
        found = await self.state.conversations.get(self.conversation_id)
        if found is None:
            raise not_found(self.conversation_id)
        return found


class ConversationEntry(_InConversation):
    """``GET``/``POST`` (metadata)/``DELETE /v1/conversations/{id}``."""

    def render_GET(self, request: server.Request) -> int:
        return self.answer(request, self._get(request))

    async def _get(self, request: server.Request) -> bytes:
        return send_json(request, 200, conversation_body(await self.record()))

    def render_POST(self, request: server.Request) -> int:
        body = parse_update(_body(request))
        return self.answer(request, self._update(request, body.metadata))

    async def _update(self, request: server.Request, metadata: Any) -> bytes:
        record = {**await self.record(), "metadata": dict(metadata)}
        await self.state.conversations.put(self.conversation_id, record)
        return send_json(request, 200, conversation_body(record))

    def render_DELETE(self, request: server.Request) -> int:
        return self.answer(request, self._delete(request))

    async def _delete(self, request: server.Request) -> bytes:
        if not await self.state.conversations.delete(self.conversation_id):
            raise not_found(self.conversation_id)
        return send_json(request, 200, conversation_deleted_body(self.conversation_id))

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if path == b"items":
            return ConversationItems(self.state, self.conversation_id)
        return super().getChild(path, request)


class ConversationItems(_InConversation):
    """``GET`` (a page) / ``POST`` (add up to 20) ``.../items``."""

    def render_GET(self, request: server.Request) -> int:
        params = parse_items_query(request.args or {})
        return self.answer(request, self._list(request, params))

    async def _list(self, request: server.Request, params: Any) -> bytes:
        items = (await self.record()).get("items") or []
        found = page(items, lambda i: i["id"], params.limit, params.order, params.after)
        return send_json(request, 200, item_page_body(found))

    def render_POST(self, request: server.Request) -> int:
        items = parse_add(_body(request))
        return self.answer(request, self._add(request, items))

    async def _add(self, request: server.Request, items: Any) -> bytes:
        record = await self.record()
        added = listed_items(_listed(items))
        limit = self.state.config.conversations.max_items
        grown = appended(record, added, limit)
        await self.state.conversations.put(self.conversation_id, grown)
        return send_json(request, 200, items_added_body(added))

    def getChild(self, path: bytes, request: server.Request) -> IResource:
        if path and not request.postpath:
            return ConversationItem(self.state, self.conversation_id, _segment(path))
        if not path and not request.postpath:
            return self
        return super().getChild(path, request)


class ConversationItem(_InConversation):
    """``GET`` / ``DELETE .../items/{item_id}`` (DELETE answers the conversation)."""

    isLeaf = True

    def __init__(self, face: Face, conversation_id: str, item_id: str) -> None:
        super().__init__(face, conversation_id)
        self.item_id = item_id

    def render_GET(self, request: server.Request) -> int:
        parse_item_query(request.args or {})
        return self.answer(request, self._get(request))

    async def _get(self, request: server.Request) -> bytes:
        for item in (await self.record()).get("items") or ():
            if item.get("id") == self.item_id:
                return send_json(request, 200, item_body(item))
        raise item_not_found(self.item_id)

    def render_DELETE(self, request: server.Request) -> int:
        return self.answer(request, self._delete(request))

    async def _delete(self, request: server.Request) -> bytes:
        record = await self.record()
        items = record.get("items") or []
        kept = [i for i in items if i.get("id") != self.item_id]
        if len(kept) == len(items):
            raise item_not_found(self.item_id)
        record = {**record, "items": kept}
        await self.state.conversations.put(self.conversation_id, record)
        return send_json(request, 200, conversation_body(record))


__all__ = [
    "COMPACT",
    "INPUT_TOKENS",
    "Conversations",
    "append_response",
    "conversation_context",
    "fetch_conversation",
    "prepare",
]
