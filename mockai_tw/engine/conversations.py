"""Conversations as the engine sees them: context for a response, and what
``responses/compact`` and ``responses/input_tokens`` answer.

A conversation record is JSON (``engine/records.py``): its items are kept in
their wire form and read back through the Responses input parser, so the
context a response gets from a conversation is the one it would get from
the same items sent as ``input``.  Pure: no reactor, no store.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

import orjson

from mockai_tw.engine import tokenizer
from mockai_tw.engine.chat import prompt_tokens
from mockai_tw.engine.ids import hex_id
from mockai_tw.engine.plan import ListedItem, Usage
from mockai_tw.engine.records import Record
from mockai_tw.engine.responses import Prepared, _as_messages, _text_of
from mockai_tw.errors import ApiError, invalid
from mockai_tw.request.responses import InputItem, _item


def not_found(conversation_id: str, param: str | None = None) -> ApiError:
    return ApiError(
        404, f"Conversation with id '{conversation_id}' not found.", param=param
    )


def item_not_found(item_id: str) -> ApiError:
    return ApiError(404, f"Item with id '{item_id}' not found.", param="item_id")


def new_record(now: float, metadata: Any, items: list[dict[str, Any]]) -> Record:
    return {
        "id": hex_id("conv_"),
        "created_at": int(now),
        "metadata": dict(metadata or {}),
        "items": items,
    }


def appended(record: Record, items: list[dict[str, Any]], max_items: int) -> Record:
    """``record`` with ``items`` added at the end; past ``max_items``, a 400."""
    kept = list(record.get("items") or ())
    if len(kept) + len(items) > max_items:
        raise invalid(
            f"Conversation '{record['id']}' would hold more than {max_items} items"
            " (conversations.max_items).",
            param="items",
        )
    return {**record, "items": kept + items}


def input_items(record: Record) -> tuple[InputItem, ...]:
    """The conversation's items, read as input items (unreadable ones skipped:
    a record from another version of this server must not break a request)."""
    found = []
    for i, raw in enumerate(record.get("items") or ()):
        try:
            item = _item(raw, i)
        except Exception:
            continue
        if item is not None:
            found.append(item)
    return tuple(found)


def history(record: Record) -> tuple[dict[str, Any], ...]:
    """The conversation as the chat messages a response continues."""
    return tuple(_as_messages(input_items(record)))


# --- responses/input_tokens and responses/compact ------------------------------


def input_tokens(prepared: Prepared) -> int:
    """What ``usage.input_tokens`` of the same request would say."""
    return prompt_tokens(prepared.chat)


@dataclass(frozen=True)
class CompactPlan:
    """The compacted window: the user's messages as they were, then one
    opaque ``compaction`` item standing for everything else."""

    id: str
    created_at: int
    model: str
    kept: tuple[ListedItem, ...]
    compaction_id: str
    encrypted_content: str
    usage: Usage


def compact(prepared: Prepared, now: float) -> CompactPlan:
    kept = []
    summary = []
    for message in prepared.conversation:
        if message.get("role") == "user":
            raw = {"role": "user", "content": message.get("content")}
            item = InputItem("message", raw, role="user", text=_text_of(message))
            kept.append(ListedItem(hex_id("msg_"), item))
        else:
            summary.append([message.get("role"), _text_of(message)])
    packed = orjson.dumps(summary)
    model = prepared.request.model
    return CompactPlan(
        id=hex_id("resp_"),
        created_at=int(now),
        model=model,
        kept=tuple(kept),
        compaction_id=hex_id("cmp_"),
        encrypted_content="gAAAAA" + base64.urlsafe_b64encode(packed).decode(),
        usage=Usage(
            input_tokens(prepared), tokenizer.count(packed.decode(), model) + 1
        ),
    )
