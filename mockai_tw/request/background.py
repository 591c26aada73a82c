"""``GET /v1/responses/{id}``'s query string: ``stream``, ``starting_after``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from mockai_tw.request.common import check_integer, worded, wrong_type

_INTEGER = re.compile(r"-?[0-9]{1,100}")
_BOOLEANS = {"true": True, "false": False, "1": True, "0": False}


@dataclass(frozen=True)
class RetrieveQuery:
    stream: bool = False
    # The sequence number of the event after which to start (None: from 0).
    starting_after: int | None = None


def _one(args: Mapping[bytes, list[bytes]], name: str) -> str | None:
    values = args.get(name.encode())
    return values[-1].decode("utf-8", "replace") if values else None


def _boolean(args: Mapping[bytes, list[bytes]], name: str) -> bool:
    text = _one(args, name)
    if text is None:
        return False
    if text.lower() not in _BOOLEANS:
        raise wrong_type(name, "a boolean", text)
    return _BOOLEANS[text.lower()]


@worded
def parse_retrieve(args: Mapping[bytes, list[bytes]]) -> RetrieveQuery:
    _boolean(args, "include_obfuscation")
    stream = _boolean(args, "stream")
    text = _one(args, "starting_after")
    after = None
    if text is not None:
        if not _INTEGER.fullmatch(text):
            raise wrong_type("starting_after", "an integer", text)
        after = check_integer(int(text), "starting_after", low=-1, high=10**9)
    return RetrieveQuery(stream, after)
