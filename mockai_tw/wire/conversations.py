"""Conversations, their items, and the ``responses/compact`` and
``responses/input_tokens`` bodies, as the API shapes them.

A conversation is kept as a JSON record (``id``, ``created_at``,
``metadata``, ``items``: each item already in its wire form), so rendering
is picking fields; what a response adds is rendered here from its plan.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from mockai_tw.engine.plan import ListedItem, ResponsePlan, Usage
from mockai_tw.engine.records import Page
from mockai_tw.wire.pages import cursor_page
from mockai_tw.wire.responses import _input_item_json, item_json, usage_json

Record = dict[str, Any]


def conversation_json(record: Record) -> dict[str, Any]:
    return {
        "id": record["id"],
        "object": "conversation",
        "created_at": record["created_at"],
        "metadata": record.get("metadata") or {},
    }


def conversation_body(record: Record) -> bytes:
    return orjson.dumps(conversation_json(record))


def conversation_deleted_body(conversation_id: str) -> bytes:
    return orjson.dumps(
        {"id": conversation_id, "object": "conversation.deleted", "deleted": True}
    )


def listed_items(listed: Iterable[ListedItem]) -> list[dict[str, Any]]:
    """Input items as a conversation keeps them (with ids and statuses)."""
    return [_input_item_json(item) for item in listed]


def response_items(plan: ResponsePlan) -> list[dict[str, Any]]:
    """What a response appends to its conversation: its input, then its output."""
    return listed_items(plan.input_items) + [item_json(o) for o in plan.output]


def item_page_body(found: Page) -> bytes:
    """``ConversationItemList``; an empty page has null ids, as
    ``input_items`` has."""
    return cursor_page(found.data, found.has_more)


def items_added_body(items: list[dict[str, Any]]) -> bytes:
    """``POST .../items``: the items just added, as one page."""
    return item_page_body(Page(items, False))


def item_body(item: dict[str, Any]) -> bytes:
    return orjson.dumps(item)


def input_tokens_body(count: int) -> bytes:
    return orjson.dumps({"object": "response.input_tokens", "input_tokens": count})


def compacted_body(
    compaction_id: str, created_at: int, output: list[dict[str, Any]], usage: Usage
) -> bytes:
    return orjson.dumps(
        {
            "id": compaction_id,
            "object": "response.compaction",
            "created_at": created_at,
            "output": output,
            "usage": usage_json(usage),
        }
    )
