"""How deeply a schema nests, and the bound the server accepts.

Measured by an iterative walk, so no depth of input can overflow the stack;
everything recursive (jsonschema, the generator) runs only on schemas within
the bound. Knows which keywords hold subschemas; follows no $ref, makes no value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mockai_tw.engine.schema_gen.errors import Invalid, SchemaError
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
_OBJECT = (dict, Mapping)  # dict first: the fast, usual case
_CONTAINER = (dict, list, Mapping)


def schema_depth(schema: Any) -> int:
    """How many levels ``schema`` nests (``{"type": "string"}`` is 1).

    A subschema is one level below the schema it is in: the ``properties``
    map or the ``anyOf`` list around it is no level of its own. Anywhere else
    (``enum``, ``const``, ``default``, unknown keywords) every object and
    array is a level. Booleans, numbers and strings add none.
    """
    deepest = 0
    schemas: list[tuple[Any, int]] = [(schema, 1)]
    values: list[tuple[Any, int]] = []  # objects and arrays that are data
    while schemas:
        node, level = schemas.pop()
        if not isinstance(node, _OBJECT):
            if isinstance(node, list):
                values.append((node, level))
            continue
        deepest = max(deepest, level)
        below = level + 1
        for key, value in node.items():
            if key in _SINGLE:
                schemas.append((value, below))
            elif key in _MAP and isinstance(value, _OBJECT):
                schemas += [(sub, below) for sub in value.values()]
            elif key in _LIST and isinstance(value, list):
                schemas += [(sub, below) for sub in value]
            elif isinstance(value, _CONTAINER):
                values.append((value, below))
    while values:
        node, level = values.pop()
        deepest = max(deepest, level)
        below = level + 1
        for child in node.values() if isinstance(node, _OBJECT) else node:
            if isinstance(child, _CONTAINER):
                values.append((child, below))
    return deepest


def check_depth(schema: Any) -> None:
    """Raise SchemaError if ``schema`` nests deeper than ``MAX_SCHEMA_DEPTH``.

    Safe on any input: call it before anything that recurses over a schema
    (``json.dumps`` included).
    """
    depth = schema_depth(schema)
    if depth > MAX_SCHEMA_DEPTH:
        reason = f"the schema is nested {depth} levels deep"
        raise SchemaError(
            str(Invalid("", f"{reason}; the limit is {MAX_SCHEMA_DEPTH}"))
        )
