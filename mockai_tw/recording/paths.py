"""Field paths (``messages[*].tool_call_id``) naming body fields a match key drops.

A leaf, so the config schema can check ``recording.ignore_fields`` at load:
it imports nothing of ours.  The syntax is small on purpose -- dotted keys,
``[N]`` for one list item, ``[*]`` for every item and ``*`` for every key --
enough to name a volatile field without a JSONPath dependency.
"""

from __future__ import annotations

import re
from typing import Any

#: One segment: a key, ``*`` (every key), ``[N]`` or ``[*]`` (list items).
Segment = str | int

WILD = "*"
ITEMS = "[*]"

_SEGMENT = re.compile(r"\[(\*|\d+)\]|([^.\[\]]+)")
#: A path longer than this is refused (nothing real nests that deep).
MAX_SEGMENTS = 32


class PathError(ValueError):
    """A field path that does not parse; ``str()`` says why."""


def parse_path(text: str) -> tuple[Segment, ...]:
    """``a.b[*].c`` as its segments; raises PathError."""
    if not text or text != text.strip():
        raise PathError("must be a non-empty path without surrounding spaces")
    out: list[Segment] = []
    pos = 0
    while pos < len(text):
        if out and text[pos] == ".":
            pos += 1
        found = _SEGMENT.match(text, pos)
        if found is None:
            raise PathError(f"cannot parse {text!r} at position {pos}")
        index, key = found.groups()
        if index is None:
            out.append(key)
        else:
            out.append(ITEMS if index == "*" else int(index))
        pos = found.end()
    if len(out) > MAX_SEGMENTS:
        raise PathError(f"has more than {MAX_SEGMENTS} segments")
    return tuple(out)


def drop(value: Any, path: tuple[Segment, ...]) -> Any:
    """A copy of ``value`` without what ``path`` names (missing parts: no-op)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        if not isinstance(head, str) or head == ITEMS:
            return value
        out = dict(value)
        keys = list(out) if head == WILD else [head] if head in out else []
        for key in keys:
            if rest:
                out[key] = drop(out[key], rest)
            else:
                del out[key]
        return out
    if isinstance(value, list):
        if head == ITEMS:
            return [drop(v, rest) for v in value] if rest else []
        if isinstance(head, int) and 0 <= head < len(value):
            out_list = list(value)
            if rest:
                out_list[head] = drop(out_list[head], rest)
            else:
                del out_list[head]
            return out_list
    return value
