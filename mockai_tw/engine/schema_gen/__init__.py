"""Make a plausible JSON instance that is valid against a JSON Schema (2020-12).

Structured output (``response_format: {"type": "json_schema", ...}``) must answer
with JSON the client's own validator (often a pydantic model) accepts, so the
mock generates an instance from the request's schema instead of canned text.

How: ``$ref`` and ``allOf`` are merged into one set of constraints per value
(``merge``); ``anyOf``/``oneOf``/``if`` pick a branch (cheapest first once
recursion gets deep, so recursive schemas end); each value is drawn from the
merged constraints (``generator``), with property names hinting plausible
content ("email", "price": ``fakes``) and patterns matched by ``regex``.
Whatever the merge cannot express exactly (``oneOf``'s "exactly one", ``not``,
``contains``, ...) is checked with ``jsonschema`` and retried, and the whole
instance is validated once more before it is returned, so what ``generate``
returns always validates. A schema nested deeper than ``MAX_SCHEMA_DEPTH``
levels is refused before anything recursive sees it (``depth``). Pure Python
and deterministic for a given ``random.Random`` state: no Twisted, no network,
no clock.
"""

from mockai_tw.engine.schema_gen.api import _VERDICTS as _VERDICTS
from mockai_tw.engine.schema_gen.api import check_schema, generate
from mockai_tw.engine.schema_gen.depth import (
    MAX_SCHEMA_DEPTH,
    check_depth,
    schema_depth,
)
from mockai_tw.engine.schema_gen.errors import SchemaError

__all__ = [
    "MAX_SCHEMA_DEPTH",
    "SchemaError",
    "check_depth",
    "check_schema",
    "generate",
    "schema_depth",
]
