"""How deeply a schema nests, and the bound the server accepts.

Measured by an iterative walk, so no depth of input can overflow the stack;
everything recursive (jsonschema, the generator) runs only on schemas within
the bound. Knows which keywords hold subschemas, nothing of $ref or values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mockai_tw.engine.schema_gen.keywords import (
    LIST_SUBSCHEMAS,
    MAP_SUBSCHEMAS,
    SINGLE_SUBSCHEMA,
)

# Real schemas nest a few levels (OpenAI's strict mode allows 10); checking a
# level costs jsonschema up to 12 stack frames, so 64 levels stay well inside
# Python's default limit of 1000 frames even below a deep server stack.
MAX_SCHEMA_DEPTH = 64

_SINGLE = frozenset(SINGLE_SUBSCHEMA)
_MAP = frozenset(MAP_SUBSCHEMAS)
_LIST = frozenset(LIST_SUBSCHEMAS)


def schema_depth(schema: Any) -> int:
    """How many levels ``schema`` nests (``{"type": "string"}`` is 1).

    A subschema is one level below the schema it is in: the ``properties``
    map or the ``anyOf`` list around it is no level of its own. Anywhere else
    (``enum``, ``const``, ``default``, unknown keywords) every object and
    array is a level. Booleans, numbers and strings add none.
    """
    deepest = 0
    # (node, its level, whether it is a schema rather than a value)
    stack: list[tuple[Any, int, bool]] = [(schema, 1, True)]
    while stack:
        node, level, is_schema = stack.pop()
        if isinstance(node, list):
            deepest = max(deepest, level)
            stack.extend((item, level + 1, False) for item in node)
        elif isinstance(node, Mapping):
            deepest = max(deepest, level)
            if not is_schema:
                stack.extend((value, level + 1, False) for value in node.values())
                continue
            for key, value in node.items():
                if key in _SINGLE:
                    stack.append((value, level + 1, True))
                elif key in _MAP and isinstance(value, Mapping):
                    stack.extend((sub, level + 1, True) for sub in value.values())
                elif key in _LIST and isinstance(value, list):
                    stack.extend((sub, level + 1, True) for sub in value)
                else:
                    stack.append((value, level + 1, False))
    return deepest


def too_deep(schema: Any) -> str | None:
    """Why ``schema`` nests deeper than the server accepts, or None."""
    depth = schema_depth(schema)
    if depth <= MAX_SCHEMA_DEPTH:
        return None
    return f"the schema is nested {depth} levels deep; the limit is {MAX_SCHEMA_DEPTH}"
