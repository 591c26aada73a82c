"""Bodies and query strings of ``/v1/conversations``, checked, or a 400.

Items are the Responses API's input items, read by its own parser, so a
conversation holds exactly what ``input`` may hold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mockai_tw import checks
from mockai_tw.errors import ApiError
from mockai_tw.request.common import Fields, missing, parse_body, worded
from mockai_tw.request.responses import (
    INCLUDES,
    InputItem,
    ListParams,
    _item,
    _metadata,
    parse_list_params,
)

#: At most this many items per request, as the API says.
MAX_ADDED = 20


@dataclass(frozen=True)
class ConversationBody:
    """``POST /v1/conversations``, or the metadata of an update."""

    items: tuple[InputItem, ...] = ()
    metadata: Mapping[str, str] | None = None


def _items(value: Any, param: str, required: bool) -> tuple[InputItem, ...]:
    if value is None:
        if required:
            raise missing(param)
        return ()
    checks.array(value, param, max_items=MAX_ADDED)
    found = []
    for i, raw in enumerate(value):
        try:
            item = _item(raw, i)
        except checks.Problem as problem:
            # The parser names ``input[i]``; here it is ``items[i]``.
            raise dataclasses.replace(
                problem, path=param + problem.path[len("input") :]
            ) from None
        except ApiError as error:
            raise dataclasses.replace(
                error,
                message=error.message.replace("input[", f"{param}["),
                param=(error.param or "").replace("input[", f"{param}[") or None,
            ) from None
        if item is not None:
            found.append(item)
    return tuple(found)


@worded
def parse_create(data: bytes) -> ConversationBody:
    body = parse_body(data) if data.strip() else {}
    fields = Fields(body)
    return ConversationBody(
        _items(body.get("items"), "items", required=False),
        _metadata(fields.obj("metadata")),
    )


@worded
def parse_update(data: bytes) -> ConversationBody:
    body = parse_body(data)
    if body.get("metadata") is None:
        raise missing("metadata")
    return ConversationBody(metadata=_metadata(Fields(body).obj("metadata")) or {})


@worded
def parse_add(data: bytes) -> tuple[InputItem, ...]:
    """``POST /v1/conversations/{id}/items``: ``items``, 1 to 20."""
    body = parse_body(data)
    items = _items(body.get("items"), "items", required=True)
    return items


def _include(args: Mapping[bytes, list[bytes]]) -> None:
    for key in (b"include", b"include[]"):
        for i, raw in enumerate(args.get(key) or ()):
            value = raw.decode("utf-8", "replace")
            checks.one_of(value, f"include[{i}]", tuple(sorted(INCLUDES)))


@worded
def parse_item_query(args: Mapping[bytes, list[bytes]]) -> None:
    """``GET .../items/{item_id}``: only ``include``, checked."""
    _include(args)


@worded
def parse_items_query(args: Mapping[bytes, list[bytes]]) -> ListParams:
    """``GET .../items``: ``limit`` 1-100 (20), ``order`` (desc), ``after``."""
    _include(args)
    return parse_list_params(args)
