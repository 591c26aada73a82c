"""The JSON Schema 2020-12 vocabulary as the generator sees it.

Type names, which keywords hold subschemas or imply a type, and the small
questions about one schema object (its type list, its immediate subschemas).
A leaf: no $ref resolution, no merging, no randomness.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    """A word list written as one string (keeps long lists readable)."""
    return tuple(text.split(sep))


Item = tuple[Any, str]  # a subschema and its JSON pointer in the root schema

TYPES = ("null", "boolean", "object", "array", "string", "integer", "number")
# Cheapest (least nesting) first: what a deep, recursive position should use.
MINIMAL_TYPE_ORDER = _words("null boolean integer number string array object")
DEFAULT_TYPE_ORDER = _words("string integer number boolean null object array")


# Keywords whose meaning the merge reproduces exactly; any other keyword in a
# value's schemas makes the generator validate that value before using it.
EXACT_KEYWORDS = frozenset(
    _words(
        "$schema $id $anchor $dynamicAnchor $comment $defs definitions $vocabulary "
        "title description default examples deprecated readOnly writeOnly "
        "$ref allOf anyOf type enum const properties required additionalProperties "
        "patternProperties items prefixItems minItems maxItems uniqueItems "
        "minLength maxLength pattern format minimum maximum exclusiveMinimum "
        "exclusiveMaximum multipleOf minProperties maxProperties contentEncoding "
        "contentMediaType contentSchema"
    )
)
SINGLE_SUBSCHEMA = (
    "additionalProperties",
    "propertyNames",
    "items",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
)
MAP_SUBSCHEMAS = (
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
)
LIST_SUBSCHEMAS = ("allOf", "anyOf", "oneOf", "prefixItems")
OBJECT_KEYWORDS = frozenset(
    _words(
        "properties required additionalProperties patternProperties minProperties "
        "maxProperties propertyNames dependentRequired dependentSchemas "
        "unevaluatedProperties"
    )
)
ARRAY_KEYWORDS = frozenset(
    _words(
        "items prefixItems minItems maxItems uniqueItems contains minContains "
        "maxContains unevaluatedItems"
    )
)
STRING_KEYWORDS = frozenset(_words("minLength maxLength pattern format"))
NUMBER_KEYWORDS = frozenset(
    _words("minimum maximum exclusiveMinimum exclusiveMaximum multipleOf")
)


def escape(key: str) -> str:
    """Escape a key for a JSON pointer."""
    return key.replace("~", "~0").replace("/", "~1")


def subschemas(schema: Any, path: str) -> Iterator[Item]:
    """The immediate subschemas of ``schema`` (not enum/const/default data)."""
    if not isinstance(schema, Mapping):
        return
    for key in SINGLE_SUBSCHEMA:
        if key in schema:
            yield schema[key], f"{path}/{key}"
    for key in MAP_SUBSCHEMAS:
        value = schema.get(key)
        if isinstance(value, Mapping):
            for name, sub in value.items():
                yield sub, f"{path}/{key}/{escape(str(name))}"
    for key in LIST_SUBSCHEMAS:
        value = schema.get(key)
        if isinstance(value, list):
            for index, sub in enumerate(value):
                yield sub, f"{path}/{key}/{index}"


def type_matches(value: Any, types: Sequence[str]) -> bool:
    """JSON type membership, with Python's bool/int and int/float pitfalls."""
    for name in types:
        if name == "null" and value is None:
            return True
        if name == "boolean" and isinstance(value, bool):
            return True
        if isinstance(value, bool):
            continue
        if name == "number" and isinstance(value, int | float):
            return True
        if name == "integer" and (
            isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        ):
            return True
        if name == "string" and isinstance(value, str):
            return True
        if name == "array" and isinstance(value, list):
            return True
        if name == "object" and isinstance(value, dict):
            return True
    return False


def type_list(schema: Mapping[str, Any]) -> list[str] | None:
    """The ``type`` keyword as a list, or None when absent."""
    value = schema.get("type")
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)
