"""Validate what the server sends against OpenAI's OpenAPI description.

The description lives in ``../shared/openai-openapi/openapi.yaml`` beside the
project (``MOCKAI_OPENAPI`` names another path).  Where it is absent, only
the schema checks are skipped: ``validate`` does nothing but record the
schema it was asked for (in ``UNVALIDATED``, with one warning per run), and
every test's own assertions still run.  OpenAPI 3.0's ``nullable: true``
(still used in places) becomes a JSON Schema type union, and objects are
made closed (``additionalProperties: false``) so a misspelt or invented key
fails, except the Azure extensions this server sends on purpose.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = ROOT.parent / "shared" / "openai-openapi" / "openapi.yaml"
URI = "urn:openai-openapi"

# Keys OpenAI's schemas do not list but real servers (Azure, the original) send.
EXTENSIONS = {"content_filter_results", "prompt_filter_results"}

#: The schemas tests asked for while the description was absent: not checked.
UNVALIDATED: set[str] = set()


def spec_path() -> Path:
    return Path(os.environ.get("MOCKAI_OPENAPI") or DEFAULT_SPEC)


def available() -> bool:
    """Whether the description is there, so that ``validate`` checks."""
    return spec_path().is_file()


def _not_validated(name: str) -> None:
    if not UNVALIDATED:
        warnings.warn(
            f"OpenAI OpenAPI description not found at {spec_path()}: bodies are"
            " not validated against its schemas (set MOCKAI_OPENAPI to its path)",
            stacklevel=3,
        )
    UNVALIDATED.add(name)


class _AnySchemas(Mapping[str, Any]):
    """``components.schemas`` while the description is absent.

    Every name is a schema that accepts anything (with an empty
    ``properties`` for code that edits one), and is recorded as not
    validated; so a test that builds its own validator on ``_registry()``
    runs its assertions too.
    """

    def __getitem__(self, name: str) -> dict[str, Any]:
        _not_validated(name)
        return {"properties": {}}

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _nullable(node: Any) -> Any:
    if isinstance(node, list):
        return [_nullable(v) for v in node]
    if not isinstance(node, dict):
        return node
    node = {k: _nullable(v) for k, v in node.items()}
    if node.pop("nullable", False):
        if isinstance(node.get("type"), str) and "$ref" not in node:
            node["type"] = [node["type"], "null"]
            if "enum" in node:
                node["enum"] = [*node["enum"], None]
        else:
            node = {"anyOf": [node, {"type": "null"}]}
    return node


def _close(node: Any, in_combinator: bool = False) -> Any:
    """Forbid undeclared keys on plain object schemas."""
    if isinstance(node, list):
        return [_close(v, in_combinator) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        nested = key in ("allOf",) or (in_combinator and key in ("anyOf", "oneOf"))
        out[key] = _close(value, nested)
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not in_combinator
        and not any(k in out for k in ("allOf", "anyOf", "oneOf", "$ref"))
    ):
        allowed: dict[str, Any] = {
            name: {} for name in EXTENSIONS if name not in out["properties"]
        }
        out["properties"] = {**out["properties"], **allowed}
        out["additionalProperties"] = False
    return out


def _all_of_parts(node: Any, found: set[str]) -> set[str]:
    """Component names used as ``allOf`` parts: closing them would reject the
    properties their sibling parts declare."""
    if isinstance(node, list):
        for value in node:
            _all_of_parts(value, found)
    elif isinstance(node, dict):
        for part in node.get("allOf", []):
            ref = part.get("$ref", "") if isinstance(part, dict) else ""
            if ref.startswith("#/components/schemas/"):
                found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            _all_of_parts(value, found)
    return found


def _close_components(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document["components"]["schemas"]
    open_parts = _all_of_parts(document, set())
    closed = {
        name: _close(schema, in_combinator=name in open_parts)
        for name, schema in schemas.items()
    }
    return {**document, "components": {**document["components"], "schemas": closed}}


@cache
def _registry() -> Registry:
    document: dict[str, Any]
    if available():
        with open(spec_path(), "rb") as f:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            document = _close_components(_nullable(yaml.load(f, Loader=loader)))
    else:
        document = {"components": {"schemas": _AnySchemas()}}
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return Registry().with_resource(URI, resource)


@cache
def _validator(name: str) -> Draft202012Validator:
    schema = {"$ref": f"{URI}#/components/schemas/{name}"}
    return Draft202012Validator(schema, registry=_registry())


def validate(instance: Any, name: str) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``instance`` is a valid ``name``.

    Without the description, record ``name`` as not validated and return.
    """
    if not available():
        _not_validated(name)
        return
    _validator(name).validate(instance)


# Loaded now, at import (test collection), not at a test's first ``validate``:
# the load takes 1.5 s or more, and inside a test it blocks the reactor while
# requests of the server under test are in flight (a Redis reply timed out
# behind it: tests/test_files_shared.py, two servers on one redis-server).
_registry()
