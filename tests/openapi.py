"""Validate what the server sends against OpenAI's OpenAPI description.

The description lives in ``../shared/openai-openapi/openapi.yaml`` beside the
project (``MOCKAI_OPENAPI`` names another path).  Where it is absent the
tests that need it skip with the reason.  OpenAPI 3.0's ``nullable: true``
(still used in places) becomes a JSON Schema type union, and objects are
made closed (``additionalProperties: false``) so a misspelt or invented key
fails, except the Azure extensions this server sends on purpose.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from twisted.trial.unittest import SkipTest

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPEC = ROOT.parent / "shared" / "openai-openapi" / "openapi.yaml"
URI = "urn:openai-openapi"

# Keys OpenAI's schemas do not list but real servers (Azure, the original) send.
EXTENSIONS = {"content_filter_results", "prompt_filter_results"}


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
    path = Path(os.environ.get("MOCKAI_OPENAPI", DEFAULT_SPEC))
    if not path.exists():
        raise SkipTest(
            f"OpenAI OpenAPI description not found at {path};"
            " set MOCKAI_OPENAPI to validate against it"
        )
    with open(path, "rb") as f:
        document = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    document = _close_components(_nullable(document))
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    return Registry().with_resource(URI, resource)


@cache
def _validator(name: str) -> Draft202012Validator:
    schema = {"$ref": f"{URI}#/components/schemas/{name}"}
    return Draft202012Validator(schema, registry=_registry())


def validate(instance: Any, name: str) -> None:
    """Raise ``jsonschema.ValidationError`` unless ``instance`` is a valid ``name``."""
    _validator(name).validate(instance)
