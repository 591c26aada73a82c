"""Query strings and bodies of the stored chat completions API, or a 400."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from mockai_tw import checks
from mockai_tw.request.common import (
    Fields,
    check_integer,
    missing,
    parse_body,
    worded,
    wrong_type,
)
from mockai_tw.request.responses import _metadata

_INTEGER = re.compile(r"-?[0-9]{1,100}")
_METADATA_KEY = re.compile(r"metadata\[(.{1,64})\]")


@dataclass(frozen=True)
class StoredQuery:
    """``GET /v1/chat/completions`` (and ``.../messages``): one page."""

    limit: int = 20
    order: str = "asc"
    after: str | None = None
    model: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


def _one(args: Mapping[bytes, list[bytes]], name: str) -> str | None:
    values = args.get(name.encode())
    return values[-1].decode("utf-8", "replace") if values else None


@worded
def parse_query(args: Mapping[bytes, list[bytes]]) -> StoredQuery:
    """``limit`` 1-100 (20), ``order`` (asc), ``after``, ``model``,
    ``metadata[key]=value`` (every pair must match)."""
    limit = 20
    text = _one(args, "limit")
    if text is not None:
        if not _INTEGER.fullmatch(text):
            raise wrong_type("limit", "an integer", text)
        limit = check_integer(int(text), "limit", low=1, high=100)
    order = _one(args, "order") or "asc"
    checks.one_of(order, "order", ("asc", "desc"))
    metadata = {}
    for key, values in args.items():
        matched = _METADATA_KEY.fullmatch(key.decode("utf-8", "replace"))
        if matched and values:
            metadata[matched.group(1)] = values[-1].decode("utf-8", "replace")
    return StoredQuery(limit, order, _one(args, "after"), _one(args, "model"), metadata)


@worded
def parse_update(data: bytes) -> Mapping[str, str]:
    """``POST /v1/chat/completions/{id}``: ``metadata`` (required)."""
    body = parse_body(data)
    if body.get("metadata") is None:
        raise missing("metadata")
    return _metadata(Fields(body).obj("metadata")) or {}
