"""Stored chat completions (``store: true``) as the API lists them.

A stored completion is kept as a JSON record: the ``chat.completion`` object
as it was answered (with its ``metadata``), and the request's messages as
``GET .../messages`` shows them, so every read is a copy of what was sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson

from mockai_tw.engine.plan import ChatPlan
from mockai_tw.engine.records import Page, Record
from mockai_tw.wire.chat import chat_completion
from mockai_tw.wire.pages import cursor_page

if TYPE_CHECKING:
    from mockai_tw.request.chat import ChatRequest


def _message_json(
    completion_id: str, index: int, raw: dict[str, Any]
) -> dict[str, Any]:
    content = raw.get("content")
    parts = None
    if isinstance(content, list):
        parts = [p for p in content if isinstance(p, dict)]
        content = (
            "".join(p["text"] for p in parts if isinstance(p.get("text"), str)) or None
        )
    out: dict[str, Any] = {
        "id": f"{completion_id}-{index}",
        "role": raw.get("role"),
        "content": content if isinstance(content, str) else None,
        "refusal": None,
        "content_parts": parts,
    }
    if raw.get("tool_calls"):
        out["tool_calls"] = raw["tool_calls"]
    return out


def stored_record(plan: ChatPlan, request: ChatRequest, at: float) -> Record:
    """What ``store: true`` keeps (``at``: when, to list in order)."""
    completion = orjson.loads(chat_completion(plan))
    completion["metadata"] = dict(request.metadata or {})
    return {
        "id": plan.id,
        "at": at,
        "completion": completion,
        "messages": [
            _message_json(plan.id, i, m.raw) for i, m in enumerate(request.messages)
        ],
    }


def completion_body(record: Record) -> bytes:
    return orjson.dumps(record["completion"])


def list_body(found: Page) -> bytes:
    """``ChatCompletionList``: a page of completions."""
    return cursor_page([r["completion"] for r in found.data], found.has_more)


def messages_body(found: Page) -> bytes:
    """``ChatCompletionMessageList``: a page of the request's messages."""
    return cursor_page(found.data, found.has_more)


def deleted_body(completion_id: str) -> bytes:
    return orjson.dumps(
        {"object": "chat.completion.deleted", "id": completion_id, "deleted": True}
    )
