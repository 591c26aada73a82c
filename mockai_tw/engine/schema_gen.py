"""Make a plausible JSON instance that is valid against a JSON Schema (2020-12).

Structured output (``response_format: {"type": "json_schema", ...}``) must answer
with JSON the client's own validator (often a pydantic model) accepts, so the
mock generates an instance from the request's schema instead of canned text.

How: ``$ref`` and ``allOf`` are merged into one set of constraints per value;
``anyOf``/``oneOf``/``if`` pick a branch (cheapest first once recursion gets
deep, so recursive schemas end); each value is drawn from the merged
constraints, with property names hinting plausible content ("email", "price").
Whatever the merge cannot express exactly (``oneOf``'s "exactly one", ``not``,
``contains``, ...) is checked with ``jsonschema`` and retried, and the whole
instance is validated once more before it is returned, so what ``generate``
returns always validates. Pure Python and deterministic for a given
``random.Random`` state: no Twisted, no network, no clock.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import math
import re
import urllib.parse
import uuid
from collections.abc import Iterator, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from random import Random
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema import exceptions as js_exceptions
from jsonschema.protocols import Validator

__all__ = ["SchemaError", "check_schema", "generate"]


class SchemaError(ValueError):
    """The schema is invalid or cannot be satisfied; str() is a one-line reason."""


# Internal failures carry how final they are; ``generate`` re-raises them as a
# plain SchemaError so callers only ever see the public class.
class _Failure(SchemaError):
    """A failure at a schema location (a JSON pointer into the root schema)."""

    prefix = "cannot generate"

    def __init__(self, path: str, reason: str) -> None:
        text = f"{self.prefix} at {_ptr(path)}: {reason}"
        super().__init__(" ".join(text.split()))
        self.path = path
        self.reason = reason


class _Invalid(_Failure):
    """Not a JSON Schema, or uses something this generator cannot follow."""

    prefix = "invalid schema"


class _Unsat(_Failure):
    """Provably unsatisfiable: retrying with other random choices cannot help."""

    prefix = "unsatisfiable schema"


class _Stuck(_Failure):
    """Random choices did not produce a valid value; other choices might."""


class _Fatal(_Failure):
    """Stop at once (depth or effort limit), without retrying anything."""


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    """A word list written as one string (keeps long lists readable)."""
    return tuple(text.split(sep))


_Item = tuple[Any, str]  # a subschema and its JSON pointer in the root schema

_TYPES = ("null", "boolean", "object", "array", "string", "integer", "number")
# Cheapest (least nesting) first: what a deep, recursive position should use.
_MINIMAL_TYPE_ORDER = _words("null boolean integer number string array object")
_DEFAULT_TYPE_ORDER = _words("string integer number boolean null object array")
_INF = 10**9

_MAX_DEPTH = 40  # a deeper value means recursion that never ends
_SOFT_DEPTH = 10  # from here on: shortest arrays, required properties only
_SOFT_RECURSION = 3  # the same $ref this often on one path: go minimal
_MAX_ATTEMPTS = 8  # per value, when random choices failed
_EFFORT = 6000  # values tried per generate() call, in all
_SIZE = 1500  # values generated before everything goes minimal

# Keywords whose meaning the merge reproduces exactly; any other keyword in a
# value's schemas makes the generator validate that value before using it.
_EXACT_KEYWORDS = frozenset(
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
_SINGLE_SUBSCHEMA = (
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
_MAP_SUBSCHEMAS = (
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
)
_LIST_SUBSCHEMAS = ("allOf", "anyOf", "oneOf", "prefixItems")
_OBJECT_KEYWORDS = frozenset(
    _words(
        "properties required additionalProperties patternProperties minProperties "
        "maxProperties propertyNames dependentRequired dependentSchemas "
        "unevaluatedProperties"
    )
)
_ARRAY_KEYWORDS = frozenset(
    _words(
        "items prefixItems minItems maxItems uniqueItems contains minContains "
        "maxContains unevaluatedItems"
    )
)
_STRING_KEYWORDS = frozenset(_words("minLength maxLength pattern format"))
_NUMBER_KEYWORDS = frozenset(
    _words("minimum maximum exclusiveMinimum exclusiveMaximum multipleOf")
)
_STRING_SCHEMA: Mapping[str, Any] = {"type": "string"}


def check_schema(schema: Any) -> None:
    """Raise SchemaError unless ``schema`` is a valid, satisfiable 2020-12 schema.

    Checks the metaschema (patterns must compile), that every ``$ref`` is local
    and resolves, and the contradictions that are cheap to see (bounds that
    cross, an empty ``enum``, a ``const`` of the wrong type, a required
    property that ``additionalProperties: false`` forbids, a ``false`` root).
    """
    _checked(schema)


def generate(schema: Mapping[str, Any], rng: Random, *, name: str = "") -> Any:
    """Return an instance valid against ``schema``, drawn from ``rng``.

    ``name`` (for instance the ``json_schema.name`` of the request) hints the
    root value's content the way a property name does. Raises SchemaError if
    the schema is invalid or no instance could be found.
    """
    root = _checked(schema)
    try:
        return _Generator(root, rng).run(name)
    except _Failure as exc:
        raise SchemaError(str(exc)) from None
    except RecursionError:
        raise SchemaError("cannot generate at #: the schema nests too deeply") from None


# The metaschema check costs more than generating; clients send the same
# schema with every request, so remember the verdicts on recent ones.
_VERDICTS: dict[str, str] = {}  # canonical JSON -> "" (fine) or the error
_VERDICTS_MAX = 256


def _checked(schema: Any) -> _Schema:
    """The checked schema, ready to generate from; raises SchemaError."""
    try:
        key: str | None = json.dumps(schema, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        key = None
    verdict = _VERDICTS.get(key) if key is not None else None
    if verdict is None:
        try:
            _Schema(schema).check()
        except _Failure as exc:
            verdict = str(exc)
        else:
            verdict = ""
        if key is not None:
            while len(_VERDICTS) >= _VERDICTS_MAX:
                _VERDICTS.pop(next(iter(_VERDICTS)), None)
            _VERDICTS[key] = verdict
    if verdict:
        raise SchemaError(verdict)
    # A fresh instance: its memos must not depend on whether check() ran, or
    # the same seed could choose differently on a cache hit.
    root = _Schema(schema)
    root.prepare()
    return root


# -- the schema document: refs, validators, static analysis -------------------


def _ptr(path: str) -> str:
    """Show a JSON pointer as a URI fragment, the way $ref spells it."""
    return "#" + path


def _esc(key: str) -> str:
    """Escape a key for a JSON pointer."""
    return key.replace("~", "~0").replace("/", "~1")


def _subschemas(schema: Any, path: str) -> Iterator[_Item]:
    """The immediate subschemas of ``schema`` (not enum/const/default data)."""
    if not isinstance(schema, Mapping):
        return
    for key in _SINGLE_SUBSCHEMA:
        if key in schema:
            yield schema[key], f"{path}/{key}"
    for key in _MAP_SUBSCHEMAS:
        value = schema.get(key)
        if isinstance(value, Mapping):
            for name, sub in value.items():
                yield sub, f"{path}/{key}/{_esc(str(name))}"
    for key in _LIST_SUBSCHEMAS:
        value = schema.get(key)
        if isinstance(value, list):
            for index, sub in enumerate(value):
                yield sub, f"{path}/{key}/{index}"


def _type_matches(value: Any, types: Sequence[str]) -> bool:
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


def _type_list(schema: Mapping[str, Any]) -> list[str] | None:
    """The ``type`` keyword as a list, or None when absent."""
    value = schema.get("type")
    if value is None:
        return None
    return [value] if isinstance(value, str) else list(value)


class _Schema:
    """The root schema: ref resolution, validators and cheap satisfiability."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self._validators: dict[int, Validator] = {}
        self._keep: list[Any] = []  # synthetic schemas whose id() is a cache key
        self._anchors: dict[str, _Item] = {}
        self._unsat_memo: dict[int, tuple[str, str] | None] = {}
        self._cost_memo: dict[int, int] = {}
        self._base = ""
        self._validator: Validator | None = None

    def check(self) -> None:
        """Metaschema, refs, then the root's satisfiability."""
        try:
            Draft202012Validator.check_schema(self.root)
        except js_exceptions.SchemaError as exc:
            where = "".join(f"/{_esc(str(p))}" for p in exc.absolute_path)
            message = exc.message if len(exc.message) <= 200 else exc.message[:197]
            raise _Invalid(where, message) from None
        for ref, path in self.prepare():
            self.resolve(ref, path)
        found = self.unsat(self.root, "")
        if found is not None:
            raise _Unsat(*found)

    def prepare(self) -> list[tuple[str, str]]:
        """Index anchors and make the validator; return every (ref, where)."""
        self._validator = Draft202012Validator(self.root)
        if isinstance(self.root, Mapping):
            root_id = self.root.get("$id")
            self._base = root_id.split("#")[0] if isinstance(root_id, str) else ""
        refs: list[tuple[str, str]] = []
        stack: list[_Item] = [(self.root, "")]
        while stack:
            schema, path = stack.pop()
            if not isinstance(schema, Mapping):
                continue
            for key in ("$anchor", "$dynamicAnchor"):
                if isinstance(schema.get(key), str):
                    self._anchors.setdefault(schema[key], (schema, path))
            for key in ("$ref", "$dynamicRef"):
                if isinstance(schema.get(key), str):
                    refs.append((schema[key], path))
            stack.extend(_subschemas(schema, path))
        return refs

    def resolve(self, ref: str, at: str) -> _Item:
        """Follow a local ``$ref``: ``#``, ``#/json/pointer`` or ``#anchor``."""
        base, _, fragment = ref.partition("#")
        if base and base != self._base:
            raise _Invalid(at, f"$ref {ref!r} is not local (only '#...' refs work)")
        fragment = urllib.parse.unquote(fragment)
        if not fragment:
            return self.root, ""
        if not fragment.startswith("/"):
            if fragment in self._anchors:
                return self._anchors[fragment]
            raise _Invalid(at, f"$ref {ref!r} names no $anchor")
        node: Any = self.root
        for token in fragment[1:].split("/"):
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise _Invalid(at, f"$ref {ref!r} does not resolve")
        if not isinstance(node, Mapping | bool):
            raise _Invalid(at, f"$ref {ref!r} does not point to a schema")
        return node, fragment

    def keep(self, schema: Any) -> Any:
        """Keep a synthetic schema alive so its id() stays a valid cache key."""
        self._keep.append(schema)
        return schema

    def valid(self, schema: Any, instance: Any) -> bool:
        """Whether ``instance`` is valid against a subschema (refs from the root)."""
        validator = self._validators.get(id(schema))
        if validator is None:
            assert self._validator is not None
            validator = self._validator.evolve(schema=schema)
            self._validators[id(schema)] = validator
        return bool(validator.is_valid(instance))

    # Satisfiability: sound (never flags a satisfiable schema) but shallow.
    def unsat(self, schema: Any, path: str) -> tuple[str, str] | None:
        """(path, reason) if ``schema`` is certainly unsatisfiable, else None."""
        if schema is True:
            return None
        if schema is False:
            return path, "the schema is false, so no value is valid"
        key = id(schema)
        if key in self._unsat_memo:
            return self._unsat_memo[key]
        self._unsat_memo[key] = None  # a cycle is optimistically satisfiable
        found = self._unsat_object(schema, path)
        self._unsat_memo[key] = found
        return found

    def _unsat_object(
        self, schema: Mapping[str, Any], path: str
    ) -> tuple[str, str] | None:
        """Refs, combinators, enum, then each allowed type's constraints."""
        for key in ("$ref", "$dynamicRef"):
            if isinstance(schema.get(key), str):
                found = self.unsat(*self.resolve(schema[key], path))
                if found:
                    return found
        for index, sub in enumerate(schema.get("allOf", ())):
            found = self.unsat(sub, f"{path}/allOf/{index}")
            if found:
                return found
        for kw in ("anyOf", "oneOf"):
            if kw in schema:
                branches = [
                    self.unsat(sub, f"{path}/{kw}/{index}")
                    for index, sub in enumerate(schema[kw])
                ]
                first = branches[0]
                if first is not None and all(branches):
                    inner = f"{_ptr(first[0])}: {first[1]}"
                    return f"{path}/{kw}", f"no branch can be satisfied ({inner})"
        if "not" in schema and (schema["not"] is True or schema["not"] == {}):
            return f"{path}/not", "'not' of a schema that accepts everything"
        shallow = [(schema, path)]
        shallow += [(sub, path) for sub in schema.get("allOf", ())]
        if isinstance(schema.get("$ref"), str):
            shallow.append(self.resolve(schema["$ref"], path))
        if _Merged(shallow, path).types == []:
            return (
                f"{path}/type",
                "the 'type' keywords of allOf/$ref have nothing in common",
            )
        types = _type_list(schema)
        if "const" in schema or "enum" in schema:
            return self._unsat_enum(schema, path, types)
        merged = _Merged([(schema, path)], path)
        reasons: list[tuple[str, str]] = []
        for name in types if types is not None else _TYPES:
            found = self._unsat_type(name, merged)
            if found is None:
                return None
            reasons.append(found)
        if not reasons:
            return f"{path}/type", "the type list is empty"
        return reasons[0]

    def _unsat_enum(
        self, schema: Mapping[str, Any], path: str, types: list[str] | None
    ) -> tuple[str, str] | None:
        """An enum/const is satisfiable iff one of its values validates."""
        kw = "const" if "const" in schema else "enum"
        values = [schema["const"]] if kw == "const" else list(schema["enum"])
        if not values:
            return f"{path}/enum", "enum is empty"
        if any(self.valid(schema, value) for value in values):
            return None
        if types is not None and not any(_type_matches(v, types) for v in values):
            shown = "/".join(types)
            if kw == "const":
                const = _short(schema["const"])
                return f"{path}/const", f"const {const} does not match type {shown}"
            return f"{path}/enum", f"no enum value matches type {shown}"
        what = f"const {_short(schema['const'])}" if kw == "const" else "no enum value"
        verb = "does not satisfy" if kw == "const" else "satisfies"
        return f"{path}/{kw}", f"{what} {verb} the other keywords"

    def _unsat_type(self, name: str, merged: _Merged) -> tuple[str, str] | None:
        """Whether the constraints for one type contradict each other."""
        if name == "integer":
            return merged.integer_problem()
        if name == "number":
            return merged.number_problem()
        if name == "string":
            return merged.string_problem()
        if name == "array":
            found = merged.array_problem()
            if found:
                return found
            lo, _ = merged.array_length()
            for index in range(min(lo, merged.prefix_length() + 1)):
                for sub, sub_path in merged.item_schemas(index):
                    found = self.unsat(sub, sub_path)
                    if found:
                        return found
            for sub, sub_path, least, _ in merged.contains:
                if least > 0:
                    found = self.unsat(sub, sub_path)
                    if found:
                        return found
            return None
        if name == "object":
            found = merged.object_problem()
            if found:
                return found
            for key in merged.required:
                for sub, sub_path in merged.value_schemas(key) or ():
                    found = self.unsat(sub, sub_path)
                    if found:
                        return found
        return None

    def cost(self, schema: Any) -> int:
        """How many $ref expansions a smallest instance needs (_INF: endless).

        Only orders branches and types once recursion is deep; a heuristic.
        """
        if schema is True:
            return 0
        if schema is False or not isinstance(schema, Mapping):
            return _INF
        key = id(schema)
        if key in self._cost_memo:
            return self._cost_memo[key]
        self._cost_memo[key] = _INF  # on the stack: a cycle
        total = self._cost_object(schema)
        self._cost_memo[key] = total
        return total

    def _cost_object(self, schema: Mapping[str, Any]) -> int:
        """The cost of refs, combinators and required children."""
        total = 0
        if isinstance(schema.get("$ref"), str):
            target, _ = self.resolve(schema["$ref"], "")
            total = max(total, min(_INF, 1 + self.cost(target)))
        for sub in schema.get("allOf", ()):
            total = max(total, self.cost(sub))
        for kw in ("anyOf", "oneOf"):
            if kw in schema:
                total = max(total, min(self.cost(sub) for sub in schema[kw]))
        if "const" in schema or "enum" in schema:
            return total
        types = _type_list(schema) or list(_TYPES)
        best = _INF
        for name in types:
            here = 0
            if name == "object":
                props = schema.get("properties", {})
                extra = schema.get("additionalProperties", True)
                for req in schema.get("required", ()):
                    here = max(here, self.cost(props.get(req, extra)))
            elif name == "array" and schema.get("minItems", 0) > 0:
                prefix = schema.get("prefixItems", [])
                here = self.cost(prefix[0] if prefix else schema.get("items", True))
            best = min(best, here)
        return max(total, best)


def _short(value: Any) -> str:
    """A value for an error message, kept on one short line."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# -- merged constraints for one value -----------------------------------------


@dataclass(frozen=True)
class _Bound:
    """A numeric bound and where it came from."""

    value: int | float
    exclusive: bool
    keyword: str
    path: str

    def show(self) -> str:
        return f"{self.keyword} {self.value}"


@dataclass
class _PropRule:
    """One schema's say on which object keys exist and what their values are."""

    path: str
    props: dict[str, _Item]
    patterns: list[tuple[str, _Item]]
    additional: _Item | None  # None: not constrained by this schema


@dataclass
class _ItemRule:
    """One schema's say on array elements."""

    path: str
    prefix: list[_Item]
    items: _Item | None


def _ceil_div(a: int, b: int) -> int:
    """Integer ceiling division (exact for big ints, unlike math.ceil(a / b))."""
    return -(-a // b)


def _multiple_ok(value: int | float, divisor: int | float) -> bool:
    """``multipleOf`` exactly as jsonschema checks it (float division for floats)."""
    if isinstance(divisor, float):
        quotient = value / divisor
        try:
            return int(quotient) == quotient
        except (OverflowError, ValueError):
            return Fraction(value) % Fraction(divisor) == 0
    return bool(value % divisor == 0)


class _Merged:
    """The constraints of several schemas (a ``$ref``/``allOf`` conjunction)."""

    def __init__(self, parts: Sequence[_Item], path: str) -> None:
        self.path = parts[0][1] if parts else path
        self.types: list[str] | None = None
        self.type_path = self.path
        self.not_types: list[str] = []
        self.lo: _Bound | None = None
        self.hi: _Bound | None = None
        self.multiples: list[int | float] = []
        self.min_len, self.max_len = 0, None
        self.len_paths = (self.path, self.path)
        self.patterns: list[tuple[str, str]] = []
        self.formats: list[str] = []
        self.min_items: int = 0
        self.max_items: int | None = None
        self.items_paths = (self.path, self.path)
        self.unique = False
        self.item_rules: list[_ItemRule] = []
        self.contains: list[tuple[Any, str, int, int | None]] = []
        self.closed_items = False
        self.min_props: int = 0
        self.max_props: int | None = None
        self.props_paths = (self.path, self.path)
        self.required: list[str] = []
        self.prop_rules: list[_PropRule] = []
        self.names: list[_Item] = []
        self.dep_required: list[Mapping[str, Any]] = []
        self.closed_props = False
        self.keywords: set[str] = set()
        self.examples: list[Any] = []
        for schema, where in parts:
            if isinstance(schema, Mapping):
                self._add(schema, where)

    def _add(self, s: Mapping[str, Any], path: str) -> None:
        self.keywords.update(s)
        types = _type_list(s)
        if types is not None:
            if self.types is None:
                self.types = [t for t in _TYPES if t in types]
            else:
                self.types = _intersect_types(self.types, types)
            self.type_path = path
        negated = s.get("not")
        if isinstance(negated, Mapping) and set(negated) == {"type"}:
            self.not_types.extend(_type_list(negated) or ())
        self._add_numbers(s, path)
        if "minLength" in s and s["minLength"] > self.min_len:
            self.min_len, self.len_paths = s["minLength"], (path, self.len_paths[1])
        if "maxLength" in s and (self.max_len is None or s["maxLength"] < self.max_len):
            self.max_len, self.len_paths = s["maxLength"], (self.len_paths[0], path)
        if "pattern" in s:
            self.patterns.append((s["pattern"], path))
        if "format" in s:
            self.formats.append(s["format"])
        self._add_array(s, path)
        self._add_object(s, path)
        if isinstance(s.get("examples"), list):
            self.examples.extend(s["examples"])
        if s.get("default") not in (None, "", [], {}):
            self.examples.append(s["default"])

    def _add_numbers(self, s: Mapping[str, Any], path: str) -> None:
        for kw, exclusive in (("minimum", False), ("exclusiveMinimum", True)):
            if kw in s:
                new = _Bound(s[kw], exclusive, kw, path)
                old = self.lo
                if (
                    old is None
                    or new.value > old.value
                    or (new.value == old.value and exclusive)
                ):
                    self.lo = new
        for kw, exclusive in (("maximum", False), ("exclusiveMaximum", True)):
            if kw in s:
                new = _Bound(s[kw], exclusive, kw, path)
                old = self.hi
                if (
                    old is None
                    or new.value < old.value
                    or (new.value == old.value and exclusive)
                ):
                    self.hi = new
        if "multipleOf" in s:
            self.multiples.append(s["multipleOf"])

    def _add_array(self, s: Mapping[str, Any], path: str) -> None:
        if "minItems" in s and s["minItems"] > self.min_items:
            self.min_items, self.items_paths = (
                s["minItems"],
                (path, self.items_paths[1]),
            )
        if "maxItems" in s and (
            self.max_items is None or s["maxItems"] < self.max_items
        ):
            self.max_items, self.items_paths = (
                s["maxItems"],
                (self.items_paths[0], path),
            )
        self.unique = self.unique or bool(s.get("uniqueItems", False))
        if "prefixItems" in s or "items" in s:
            prefix = [
                (sub, f"{path}/prefixItems/{i}")
                for i, sub in enumerate(s.get("prefixItems", ()))
            ]
            items = (s["items"], f"{path}/items") if "items" in s else None
            self.item_rules.append(_ItemRule(path, prefix, items))
        if "contains" in s:
            least = s.get("minContains", 1)
            most = s.get("maxContains")
            self.contains.append((s["contains"], f"{path}/contains", least, most))
        if s.get("unevaluatedItems") is False:
            self.closed_items = True

    def _add_object(self, s: Mapping[str, Any], path: str) -> None:
        if "minProperties" in s and s["minProperties"] > self.min_props:
            self.min_props = s["minProperties"]
            self.props_paths = (path, self.props_paths[1])
        if "maxProperties" in s and (
            self.max_props is None or s["maxProperties"] < self.max_props
        ):
            self.max_props = s["maxProperties"]
            self.props_paths = (self.props_paths[0], path)
        for key in s.get("required", ()):
            if key not in self.required:
                self.required.append(key)
        if any(
            k in s for k in ("properties", "patternProperties", "additionalProperties")
        ):
            props = {
                key: (sub, f"{path}/properties/{_esc(key)}")
                for key, sub in s.get("properties", {}).items()
            }
            patterns = [
                (pattern, (sub, f"{path}/patternProperties/{_esc(pattern)}"))
                for pattern, sub in s.get("patternProperties", {}).items()
            ]
            extra = s.get("additionalProperties")
            additional = (
                None if extra is None else (extra, f"{path}/additionalProperties")
            )
            self.prop_rules.append(_PropRule(path, props, patterns, additional))
        if "propertyNames" in s:
            self.names.append((s["propertyNames"], f"{path}/propertyNames"))
        if "dependentRequired" in s:
            self.dep_required.append(s["dependentRequired"])
        if s.get("unevaluatedProperties") is False:
            self.closed_props = True

    # -- numbers
    def integer_bounds(self) -> tuple[int | None, int | None]:
        """Inclusive integer bounds, or None where unbounded."""
        lo = hi = None
        if self.lo is not None:
            v = self.lo.value
            lo = math.floor(v) + 1 if self.lo.exclusive else math.ceil(v)
        if self.hi is not None:
            v = self.hi.value
            hi = math.ceil(v) - 1 if self.hi.exclusive else math.floor(v)
        return lo, hi

    def integer_step(self) -> int:
        """Integers are multiples of all ``multipleOf``s iff multiples of this."""
        step = 1
        for m in self.multiples:
            p = Fraction(m).limit_denominator(10**9).numerator
            step = step * abs(p) // math.gcd(step, abs(p))
        return step

    def _crossed(self, what: str) -> tuple[str, str] | None:
        lo, hi = self.lo, self.hi
        if lo is None or hi is None:
            return None
        if lo.value > hi.value:
            return lo.path, f"{lo.show()} is greater than {hi.show()}"
        return lo.path, f"{lo.show()} and {hi.show()} leave no {what} in between"

    def integer_problem(self) -> tuple[str, str] | None:
        """Why no integer can satisfy the bounds and multipleOf, if so."""
        lo, hi = self.integer_bounds()
        if lo is not None and hi is not None and lo > hi:
            return self._crossed("integer")
        step = self.integer_step()
        if lo is not None and hi is not None and _ceil_div(lo, step) > hi // step:
            mult = self.multiples[0] if len(self.multiples) == 1 else step
            return self.path, f"no integer multiple of {mult} between {lo} and {hi}"
        return None

    def number_problem(self) -> tuple[str, str] | None:
        """Why no number can satisfy the bounds and multipleOf, if so."""
        lo, hi = self.lo, self.hi
        if (
            lo is not None
            and hi is not None
            and (
                lo.value > hi.value
                or (lo.value == hi.value and (lo.exclusive or hi.exclusive))
            )
        ):
            return self._crossed("number")
        if self.multiples and lo is not None and hi is not None:
            k_lo, k_hi = _k_range(lo, hi, _decimal(self.multiples[0]))
            if k_lo is not None and k_hi is not None and k_lo > k_hi:
                mult = self.multiples[0]
                return (
                    self.path,
                    f"no multiple of {mult} between {lo.value} and {hi.value}",
                )
        return None

    # -- strings
    def string_problem(self) -> tuple[str, str] | None:
        """Why no string length is allowed, if so."""
        if self.max_len is not None and self.min_len > self.max_len:
            return (
                self.len_paths[0],
                f"minLength {self.min_len} is greater than maxLength {self.max_len}",
            )
        return None

    # -- arrays
    def prefix_length(self) -> int:
        return max((len(rule.prefix) for rule in self.item_rules), default=0)

    def array_length(self) -> tuple[int, int | None]:
        """The allowed lengths, with ``items: false`` capping at the prefix."""
        hi = self.max_items
        for rule in self.item_rules:
            if rule.items is not None and rule.items[0] is False:
                hi = len(rule.prefix) if hi is None else min(hi, len(rule.prefix))
        if self.closed_items and all(rule.items is None for rule in self.item_rules):
            cap = self.prefix_length()
            hi = cap if hi is None else min(hi, cap)
        least = max((c[2] for c in self.contains), default=0)
        return max(self.min_items, least), hi

    def array_problem(self) -> tuple[str, str] | None:
        """Why no array length is allowed, if so."""
        if self.max_items is not None and self.min_items > self.max_items:
            return (
                self.items_paths[0],
                f"minItems {self.min_items} is greater than maxItems {self.max_items}",
            )
        for _, where, least, most in self.contains:
            if most is not None and least > most:
                return where, f"minContains {least} is greater than maxContains {most}"
        lo, hi = self.array_length()
        if hi is not None and lo > hi:
            if self.min_items > hi:
                return self.items_paths[0], (
                    f"minItems {self.min_items} but at most {hi} items are allowed"
                    " (items is false after prefixItems)"
                )
            return self.path, f"contains needs {lo} items but at most {hi} are allowed"
        return None

    def item_schemas(self, index: int) -> list[_Item]:
        """What element ``index`` must satisfy, by every item rule."""
        out: list[_Item] = []
        for rule in self.item_rules:
            if index < len(rule.prefix):
                out.append(rule.prefix[index])
            elif rule.items is not None:
                out.append(rule.items)
        return out

    # -- objects
    def value_schemas(self, key: str) -> list[_Item] | None:
        """What the value of ``key`` must satisfy; None if the key is forbidden."""
        out: list[_Item] = []
        for rule in self.prop_rules:
            matched = False
            if key in rule.props:
                out.append(rule.props[key])
                matched = True
            for pattern, item in rule.patterns:
                if re.search(pattern, key):
                    out.append(item)
                    matched = True
            if not matched and rule.additional is not None:
                if rule.additional[0] is False:
                    return None
                out.append(rule.additional)
        return out

    def declared(self) -> list[str]:
        """Declared property names, in declaration order."""
        seen: dict[str, None] = {}
        for rule in self.prop_rules:
            seen.update(dict.fromkeys(rule.props))
        for key in self.required:
            seen.setdefault(key, None)
        return list(seen)

    def allowed(self, key: str) -> bool:
        found = self.value_schemas(key)
        return found is not None and all(sub is not False for sub, _ in found)

    def open(self) -> bool:
        """Whether keys beyond the declared ones can exist at all."""
        if self.closed_props:
            return False
        return all(
            rule.patterns or rule.additional is None or rule.additional[0] is not False
            for rule in self.prop_rules
        )

    def object_problem(self) -> tuple[str, str] | None:
        """Why no set of keys is allowed, if so."""
        lo_path = self.props_paths[0]
        if self.max_props is not None and self.min_props > self.max_props:
            return (
                lo_path,
                f"minProperties {self.min_props} is greater than "
                f"maxProperties {self.max_props}",
            )
        if self.max_props is not None and len(self.required) > self.max_props:
            return (
                self.props_paths[1],
                f"{len(self.required)} properties are required "
                f"but maxProperties is {self.max_props}",
            )
        for key in self.required:
            if self.value_schemas(key) is None:
                rule = next(
                    r
                    for r in self.prop_rules
                    if r.additional is not None
                    and r.additional[0] is False
                    and key not in r.props
                )
                return (
                    rule.path,
                    f"required property {key!r} is not allowed "
                    "(additionalProperties is false)",
                )
        if not self.open():
            count = sum(1 for key in self.declared() if self.allowed(key))
            patterned = any(rule.patterns for rule in self.prop_rules)
            if self.min_props > count and not patterned:
                return (
                    lo_path,
                    f"minProperties {self.min_props} but only {count} "
                    "properties are allowed",
                )
        return None


def _intersect_types(a: Sequence[str], b: Sequence[str]) -> list[str]:
    """Types allowed by both lists; "integer" is part of "number"."""
    out = []
    for name in _TYPES:
        in_a = name in a or (name == "integer" and "number" in a)
        in_b = name in b or (name == "integer" and "number" in b)
        if in_a and in_b:
            out.append(name)
    if "number" in out and "integer" not in a and "integer" not in b:
        out.remove("integer")
    return out


def _decimal(value: int | float) -> Fraction:
    """The decimal a JSON number was written as (0.1 means 1/10)."""
    return Fraction(Decimal(repr(value)))


def _k_range(
    lo: _Bound | None, hi: _Bound | None, step: Fraction
) -> tuple[int | None, int | None]:
    """The k with lo <= k*step <= hi (exclusive bounds honoured)."""
    k_lo = k_hi = None
    if lo is not None:
        q = Fraction(lo.value) / step
        k_lo = math.ceil(q)
        if lo.exclusive and k_lo == q:
            k_lo += 1
    if hi is not None:
        q = Fraction(hi.value) / step
        k_hi = math.floor(q)
        if hi.exclusive and k_hi == q:
            k_hi -= 1
    return k_lo, k_hi


def _in_bounds(value: float, merged: _Merged) -> bool:
    """Whether a number satisfies the merged minimum/maximum keywords."""
    lo, hi = merged.lo, merged.hi
    if lo is not None and (value < lo.value or (lo.exclusive and value == lo.value)):
        return False
    return not (
        hi is not None and (value > hi.value or (hi.exclusive and value == hi.value))
    )


def _pick_range(
    lo: int | None, hi: int | None, window: tuple[int, int]
) -> tuple[int, int]:
    """A small, plausible sub-range of [lo, hi], preferring ``window``."""
    w_lo, w_hi = window
    a = w_lo if lo is None else max(lo, w_lo)
    b = w_hi if hi is None else min(hi, w_hi)
    if a <= b:
        return a, b
    width = max(w_hi - w_lo, 10)
    if lo is not None and lo > w_hi:
        return lo, lo + width if hi is None else min(hi, lo + width)
    assert hi is not None
    return (hi - width if lo is None else max(lo, hi - width)), hi


def _candidates(a: int, b: int, rng: Random, limit: int = 40) -> Iterator[int]:
    """A random start in [a, b], then its neighbours: for retrying multiples."""
    start = rng.randint(a, b)
    yield start
    for offset in range(1, limit):
        if start + offset <= b:
            yield start + offset
        if start - offset >= a:
            yield start - offset


def _canon(value: Any) -> Any:
    """A hashable key with JSON equality (1 == 1.0, but true != 1)."""
    if isinstance(value, bool) or value is None:
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", value)
    if isinstance(value, str):
        return ("s", value)
    if isinstance(value, list):
        return ("a", tuple(_canon(v) for v in value))
    return ("o", tuple(sorted((k, _canon(v)) for k, v in value.items())))


# -- the generator --------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    """Where a value sits: its name hint, nesting depth and $refs on the path."""

    name: str
    depth: int
    refs: tuple[str, ...]

    def child(self, name: str) -> _Ctx:
        return _Ctx(name, self.depth + 1, self.refs)

    def recursion(self) -> int:
        return max((self.refs.count(r) for r in set(self.refs)), default=0)


class _Generator:
    """One generate() call: the random source, budgets and caches."""

    def __init__(self, schema: _Schema, rng: Random) -> None:
        self.schema = schema
        self.rng = rng
        self.effort = 0
        self.values = 0
        self._if_branches: dict[int, list[list[_Item]]] = {}

    def run(self, name: str) -> Any:
        """The root value; validated as a whole, regenerated if it fails."""
        root = self.schema.root
        ctx = _Ctx(name, 0, ())
        for _ in range(3):
            value = self.node([(root, "")], ctx)
            if self.schema.valid(root, value):
                return value
        raise _Stuck("", "no generated instance validated against the schema")

    def minimal(self, ctx: _Ctx) -> bool:
        """Deep or recursive enough that values should be as small as possible."""
        return (
            ctx.depth >= _SOFT_DEPTH
            or ctx.recursion() >= _SOFT_RECURSION
            or self.values > _SIZE
        )

    # -- one value: flatten refs/allOf, choose branches, generate, verify
    def node(self, items: list[_Item], ctx: _Ctx) -> Any:
        """One value for the conjunction ``items``; retried with other branches."""
        if ctx.depth > _MAX_DEPTH:
            where = items[0][1] if items else ""
            raise _Fatal(
                where,
                f"values nest deeper than {_MAX_DEPTH} levels "
                "(a recursive schema that never ends?)",
            )
        tried: dict[int, dict[int, int]] = {}
        first: _Failure | None = None
        for _ in range(_MAX_ATTEMPTS):
            self.effort += 1
            if self.effort > _EFFORT:
                raise _Fatal(items[0][1] if items else "", "gave up (too many retries)")
            choices: list[tuple[int, int]] = []
            try:
                parts, refs = self._flatten(items, ctx, choices, tried)
                here = _Ctx(ctx.name, ctx.depth, ctx.refs + tuple(refs))
                value = self._value(parts, here)
                if self._needs_check(parts) and not all(
                    self.schema.valid(s, value) for s, _ in items
                ):
                    raise _Stuck(
                        parts[0][1] if parts else "",
                        "generated values kept failing the schema (oneOf/not/...)",
                    )
                self.values += 1
                return value
            except _Fatal:
                raise
            except _Failure as exc:
                if first is None or (
                    isinstance(exc, _Unsat) and not isinstance(first, _Unsat)
                ):
                    first = exc
                if not choices and isinstance(exc, _Unsat):
                    raise
                for key, index in choices:
                    counts = tried.setdefault(key, {})
                    counts[index] = counts.get(index, 0) + 1
        assert first is not None
        raise first

    def _flatten(
        self,
        items: list[_Item],
        ctx: _Ctx,
        choices: list[tuple[int, int]],
        tried: dict[int, dict[int, int]],
    ) -> tuple[list[_Item], list[str]]:
        """Expand $ref and allOf; pick one branch of each anyOf/oneOf/if."""
        queue = list(items)
        parts: list[_Item] = []
        seen: set[int] = set()
        refs: list[str] = []
        index = 0
        while index < len(queue):
            schema, path = queue[index]
            index += 1
            if schema is True:
                continue
            if schema is False:
                raise _Unsat(path, "the schema is false, so no value is valid")
            if id(schema) in seen:
                continue
            seen.add(id(schema))
            parts.append((schema, path))
            for kw in ("$ref", "$dynamicRef"):
                if isinstance(schema.get(kw), str):
                    target = self.schema.resolve(schema[kw], path)
                    refs.append(target[1])
                    queue.append(target)
            for i, sub in enumerate(schema.get("allOf", ())):
                queue.append((sub, f"{path}/allOf/{i}"))
            for kw in ("anyOf", "oneOf"):
                if kw in schema:
                    branches = [
                        [(sub, f"{path}/{kw}/{i}")] for i, sub in enumerate(schema[kw])
                    ]
                    queue.extend(
                        self._choose(id(schema[kw]), branches, ctx, choices, tried)
                    )
            if "if" in schema:
                branches = self._if(schema, path)
                queue.extend(self._choose(id(schema), branches, ctx, choices, tried))
        return parts, refs

    def _if(self, schema: Mapping[str, Any], path: str) -> list[list[_Item]]:
        """if/then/else as two branches: (if and then) or (not if, and else)."""
        found = self._if_branches.get(id(schema))
        if found is None:
            yes: list[_Item] = [(schema["if"], f"{path}/if")]
            no: list[_Item] = [(self.schema.keep({"not": schema["if"]}), f"{path}/if")]
            if "then" in schema:
                yes.append((schema["then"], f"{path}/then"))
            if "else" in schema:
                no.append((schema["else"], f"{path}/else"))
            found = self._if_branches[id(schema)] = [yes, no]
        return found

    def _choose(
        self,
        key: int,
        branches: list[list[_Item]],
        ctx: _Ctx,
        choices: list[tuple[int, int]],
        tried: dict[int, dict[int, int]],
    ) -> list[_Item]:
        """Pick a branch: least tried first; cheapest when deep; rarely null."""
        counts = tried.get(key, {})
        viable = [
            i
            for i, branch in enumerate(branches)
            if not any(self.schema.unsat(s, p) for s, p in branch)
        ] or list(range(len(branches)))
        numeric = [i for i in viable if _is_numeric(branches[i])]
        if numeric and not any(counts.get(i, 0) for i in numeric):
            # A bare string beside a number is how pydantic spells Decimal:
            # the number is what its validator accepts, so try it first.
            viable = [i for i in viable if not _is_bare_string(branches[i])] or viable
        fewest = min(counts.get(i, 0) for i in viable)
        pool = [i for i in viable if counts.get(i, 0) == fewest]
        if self.minimal(ctx):
            costs = {i: max(self.schema.cost(s) for s, _ in branches[i]) for i in pool}
            cheapest = min(costs.values())
            pool = [i for i in pool if costs[i] == cheapest]
            pick = self.rng.choice(pool)
        else:
            weights = [0.25 if _is_null(branches[i]) else 1.0 for i in pool]
            pick = self.rng.choices(pool, weights)[0]
        choices.append((key, pick))
        return branches[pick]

    @staticmethod
    def _needs_check(parts: list[_Item]) -> bool:
        """Whether the parts use keywords the merge only approximates."""
        return any(not _EXACT_KEYWORDS.issuperset(schema) for schema, _ in parts)

    def _value(self, parts: list[_Item], ctx: _Ctx) -> Any:
        """A value for the merged ``parts`` (no $ref/allOf/anyOf left to follow)."""
        merged = _Merged(parts, parts[0][1] if parts else "")
        enum = next(((s, p) for s, p in parts if "const" in s or "enum" in s), None)
        if enum is not None:
            return self._enum(enum, parts)
        if merged.examples and not self.minimal(ctx) and self.rng.random() < 0.4:
            fitting = [
                e
                for e in merged.examples
                if all(self.schema.valid(s, e) for s, _ in parts)
            ]
            if fitting:
                return deepcopy(self.rng.choice(fitting))
        failures: list[_Failure] = []
        for name in self._type_order(merged, ctx):
            try:
                return self._typed(name, merged, ctx)
            except _Fatal:
                raise
            except _Failure as exc:
                failures.append(exc)
        if not failures:
            raise _Unsat(merged.type_path, "no type satisfies every 'type' keyword")
        definite = [f for f in failures if isinstance(f, _Unsat)]
        raise (failures[0] if len(definite) < len(failures) else definite[0])

    def _enum(self, enum: _Item, parts: list[_Item]) -> Any:
        """A value of the first enum/const that satisfies every part."""
        schema, path = enum
        values = [schema["const"]] if "const" in schema else list(schema["enum"])
        fitting = [v for v in values if all(self.schema.valid(s, v) for s, _ in parts)]
        if not fitting:
            kw = "const" if "const" in schema else "enum"
            raise _Unsat(f"{path}/{kw}", f"no {kw} value satisfies the other keywords")
        return deepcopy(self.rng.choice(fitting))

    def _type_order(self, merged: _Merged, ctx: _Ctx) -> list[str]:
        """Types to try: declared (rarely null) or inferred from keywords."""
        if merged.types is None:
            inferred = []
            for name, keys in (
                ("object", _OBJECT_KEYWORDS),
                ("array", _ARRAY_KEYWORDS),
                ("string", _STRING_KEYWORDS),
                ("number", _NUMBER_KEYWORDS),
            ):
                if merged.keywords & keys:
                    inferred.append(name)
            if not inferred and _number_hint(ctx.name, integer=True):
                inferred.append("integer")
            rest = _MINIMAL_TYPE_ORDER if self.minimal(ctx) else _DEFAULT_TYPE_ORDER
            order = inferred + [t for t in rest if t not in inferred]
        elif self.minimal(ctx):
            order = [t for t in _MINIMAL_TYPE_ORDER if t in merged.types]
        else:
            pool = list(merged.types)
            order = []
            while pool:
                weights = [0.15 if t == "null" else 1.0 for t in pool]
                order.append(pool.pop(self.rng.choices(range(len(pool)), weights)[0]))
        return [t for t in order if t not in merged.not_types]

    def _typed(self, name: str, merged: _Merged, ctx: _Ctx) -> Any:
        if name == "null":
            return None
        if name == "boolean":
            return self.rng.random() < 0.5
        if name == "integer":
            return self._integer(merged, ctx)
        if name == "number":
            return self._number(merged, ctx)
        if name == "string":
            return self._string(merged, ctx)
        if name == "array":
            return self._array(merged, ctx)
        return self._object(merged, ctx)

    # -- numbers
    def _integer(self, merged: _Merged, ctx: _Ctx) -> int:
        """An integer in bounds, a multiple of every multipleOf, name-hinted."""
        problem = merged.integer_problem()
        if problem:
            raise _Unsat(*problem)
        lo, hi = merged.integer_bounds()
        step = merged.integer_step()
        hint = _number_hint(ctx.name, integer=True)
        w_lo, w_hi = (int(hint[0]), int(hint[1])) if hint else (0, 100)
        k_lo = None if lo is None else _ceil_div(lo, step)
        k_hi = None if hi is None else hi // step
        window = (_ceil_div(w_lo, step), w_hi // step)
        if window[1] - window[0] < 3:
            window = (window[0], window[0] + 5)
        a, b = _pick_range(k_lo, k_hi, window)
        for k in _candidates(a, b, self.rng):
            value = k * step
            if _in_bounds(value, merged) and all(
                _multiple_ok(value, m) for m in merged.multiples
            ):
                return value
        raise _Stuck(merged.path, "found no integer satisfying every multipleOf")

    def _number(self, merged: _Merged, ctx: _Ctx) -> int | float:
        """A number in bounds, rounded to plausible decimals when that fits."""
        problem = merged.number_problem()
        if problem:
            raise _Unsat(*problem)
        hint = _number_hint(ctx.name, integer=False)
        w_lo, w_hi, places = hint if hint else (0.0, 100.0, 2)
        if merged.multiples:
            return self._multiple(merged, (w_lo, w_hi))
        lo = merged.lo.value if merged.lo else None
        hi = merged.hi.value if merged.hi else None
        a = w_lo if lo is None else max(lo, w_lo)
        b = w_hi if hi is None else min(hi, w_hi)
        if a > b:
            if lo is not None and lo > w_hi:
                a, b = lo, lo + 100 if hi is None else min(hi, lo + 100)
            else:
                assert hi is not None
                a, b = (hi - 100 if lo is None else max(lo, hi - 100)), hi
        x = self.rng.uniform(a, b)
        for value in (
            round(x, int(places)),
            round(x, 4),
            x,
            (a + b) / 2,
            a,
            b,
            math.nextafter(a, math.inf),
            math.nextafter(b, -math.inf),
        ):
            if math.isfinite(value) and _in_bounds(value, merged):
                return value
        raise _Unsat(merged.path, "no number lies within the bounds")

    def _multiple(self, merged: _Merged, window: tuple[float, float]) -> int | float:
        """k times the first multipleOf, checked like jsonschema checks it."""
        first = merged.multiples[0]
        step = _decimal(first)
        k_lo, k_hi = _k_range(merged.lo, merged.hi, step)
        w = (
            math.ceil(Fraction(window[0]) / step),
            math.floor(Fraction(window[1]) / step),
        )
        if w[1] - w[0] < 3:
            w = (w[0], w[0] + 10)
        a, b = _pick_range(k_lo, k_hi, w)
        for k in _candidates(a, b, self.rng):
            exact = k * step
            value: int | float = (
                int(exact)
                if isinstance(first, int)
                else float(Decimal(k) * Decimal(repr(first)))
            )
            if (
                math.isfinite(value)
                and _in_bounds(value, merged)
                and all(_multiple_ok(value, m) for m in merged.multiples)
            ):
                return value
        raise _Stuck(merged.path, f"found no number that is a multiple of {first}")

    # -- strings
    def _string(self, merged: _Merged, ctx: _Ctx) -> str:
        """A format, else a pattern match, else name-hinted text, fit to length."""
        problem = merged.string_problem()
        if problem:
            raise _Unsat(*problem)
        lo, hi = merged.min_len, merged.max_len

        def fits(text: str) -> bool:
            return (
                lo <= len(text)
                and (hi is None or len(text) <= hi)
                and all(re.search(p, text) for p, _ in merged.patterns)
            )

        for fmt in merged.formats[:1]:
            maker = _FORMATS.get(fmt)
            if maker is not None:
                for _ in range(4):
                    text = maker(self.rng, ctx.name)
                    if fits(text):
                        return text
        if merged.patterns:
            return _pattern_string(merged.patterns, lo, hi, self.rng, fits)
        hinted = _text_hint(ctx.name, self.rng)
        if hinted is not None and fits(hinted):
            return hinted
        base = hinted if hinted is not None and " " in hinted else _phrase(self.rng)
        return _fit(base, lo, hi, self.rng)

    # -- arrays
    def _array(self, merged: _Merged, ctx: _Ctx) -> list[Any]:
        """Short arrays (minimal when deep); an item that fails ends the tail."""
        problem = merged.array_problem()
        if problem:
            raise _Unsat(*problem)
        lo, hi = merged.array_length()
        if self.minimal(ctx):
            n = lo
        else:
            extra = 3 if ctx.depth < 3 else 2 if ctx.depth < 6 else 1
            if ctx.recursion() >= 2:
                extra = 1
            top = lo + extra if hi is None else min(hi, lo + extra)
            n = self.rng.randint(min(max(lo, 1), top), top)
            prefix = merged.prefix_length()
            if prefix > n:
                n = prefix if hi is None else max(n, min(prefix, hi))
        least = max((c[2] for c in merged.contains), default=0)
        holders = set(self.rng.sample(range(n), least)) if least else set()
        child = _singular(ctx.name)
        out: list[Any] = []
        seen: set[Any] = set()
        for index in range(n):
            schemas = merged.item_schemas(index)
            if index in holders:
                schemas += [(c[0], c[1]) for c in merged.contains if c[2] > 0]
            try:
                for _ in range(12 if merged.unique else 1):
                    value = self.node(schemas, ctx.child(child))
                    key = _canon(value) if merged.unique else None
                    if key not in seen:
                        break
                else:
                    raise _Stuck(
                        merged.path, f"could not make {lo} distinct items (uniqueItems)"
                    )
            except _Fatal:
                raise
            except _Failure:
                if index < lo:
                    raise
                break  # the optional tail: a shorter array will do
            if merged.unique:
                seen.add(key)
            out.append(value)
        return out

    # -- objects
    def _object(self, merged: _Merged, ctx: _Ctx) -> dict[str, Any]:
        """Required keys, most optional ones, extra keys where minProperties asks."""
        problem = merged.object_problem()
        if problem:
            raise _Unsat(*problem)
        required = merged.required
        declared = merged.declared()
        optional = [k for k in declared if k not in required and merged.allowed(k)]
        if self.minimal(ctx):  # if minProperties needs some, take the cheapest
            optional.sort(key=lambda k: self._key_cost(merged, k))
        room = _INF if merged.max_props is None else merged.max_props - len(required)
        chosen: list[str] = []
        if not self.minimal(ctx):
            for key in optional:
                if room > len(chosen) and self.rng.random() < 0.8:
                    chosen.append(key)
        for key in optional:
            if len(required) + len(chosen) >= merged.min_props:
                break
            if key not in chosen:
                chosen.append(key)
        keys = [k for k in declared if k in required or k in chosen]
        for rules in merged.dep_required:
            for key in list(keys):
                for dep in rules.get(key, ()):
                    if dep not in keys:
                        keys.append(dep)
        forced = set(required) | (set(keys) - set(chosen))
        out: dict[str, Any] = {}
        for key in keys:
            schemas = merged.value_schemas(key)
            if schemas is None:
                raise _Stuck(merged.path, f"dependentRequired needs forbidden {key!r}")
            try:
                out[key] = self.node(schemas, ctx.child(key))
            except _Fatal:
                raise
            except _Failure:
                if key in forced:
                    raise
        wanted = merged.min_props - len(out)
        if not declared and merged.open() and not self.minimal(ctx):
            wanted = max(wanted, self.rng.randint(1, 2))
        if merged.max_props is not None:
            wanted = min(wanted, merged.max_props - len(out))
        for _ in range(max(wanted, 0)):
            extra = self._extra_key(merged, ctx, out)
            if extra is None:
                break
            key, schemas = extra
            try:
                out[key] = self.node(schemas, ctx.child(key))
            except _Fatal:
                raise
            except _Failure:
                if len(out) < merged.min_props:
                    raise
        if len(out) < merged.min_props:
            raise _Stuck(
                merged.props_paths[0],
                f"could not make the {merged.min_props} properties minProperties asks",
            )
        return out

    def _key_cost(self, merged: _Merged, key: str) -> int:
        """How much recursion a property's value needs (for minimal objects)."""
        found = merged.value_schemas(key) or []
        return max((self.schema.cost(sub) for sub, _ in found), default=0)

    def _extra_key(
        self, merged: _Merged, ctx: _Ctx, taken: Mapping[str, Any]
    ) -> tuple[str, list[_Item]] | None:
        """A new key the object may have, with its value's schemas."""
        patterns = [p for rule in merged.prop_rules for p, _ in rule.patterns]
        for attempt in range(20):
            if patterns and (not merged.open() or self.rng.random() < 0.7):
                pattern = self.rng.choice(patterns)
                try:
                    size = self.rng.randint(1, 8)
                    key = _pattern_string(
                        [(pattern, merged.path)], size, 40, self.rng, None
                    )
                except _Stuck:
                    continue
            elif merged.names:
                schemas = [*merged.names, (_STRING_SCHEMA, merged.path)]
                try:
                    key = self.node(schemas, ctx.child("key"))
                except _Fatal:
                    raise
                except _Failure:
                    continue
            elif merged.open():
                key = self.rng.choice(_KEY_WORDS)
                if attempt > 5:
                    key += f"_{attempt}"
            else:
                return None
            if key in taken:
                continue
            if not all(self.schema.valid(s, key) for s, _ in merged.names):
                continue
            found = merged.value_schemas(key)
            if found is not None:
                return key, found
        return None


_ANNOTATIONS = frozenset({"type", "title", "description", "examples", "default"})


def _only(branch: list[_Item]) -> Mapping[str, Any]:
    schema = branch[0][0] if len(branch) == 1 else None
    return schema if isinstance(schema, Mapping) else {}


def _is_numeric(branch: list[_Item]) -> bool:
    return _only(branch).get("type") in ("number", "integer")


def _is_bare_string(branch: list[_Item]) -> bool:
    schema = _only(branch)
    return schema.get("type") == "string" and _ANNOTATIONS.issuperset(schema)


def _is_null(branch: list[_Item]) -> bool:
    """Whether a branch only allows null (pydantic's Optional)."""
    return all(isinstance(s, Mapping) and s.get("type") == "null" for s, _ in branch)


def _singular(name: str) -> str:
    """A list's name hints its items' content: "emails" -> "email"."""
    if name.endswith("ies") and len(name) > 4:
        return name[:-3] + "y"
    if name.endswith(("sses", "xes", "ches", "shes")):
        return name[:-2]
    if name.endswith("s") and not name.endswith("ss"):
        return name[:-1]
    return name


# -- regular expressions: a generator for a practical subset ------------------


class _RegexUnsupported(Exception):
    """The pattern uses syntax outside the subset: fall back to guessing."""


_PRINTABLE = [chr(c) for c in range(0x20, 0x7F)]
_ANY_RANGES = [(0x61, 0x7A), (0x41, 0x5A), (0x30, 0x39), (0x20, 0x20)]
_DIGIT = [(0x30, 0x39)]
_WORD = [(0x61, 0x7A), (0x41, 0x5A), (0x30, 0x39), (0x5F, 0x5F)]
_SPACE = [(0x20, 0x20)]  # generating tabs/newlines helps no one


class _RNode:
    """A regex AST node; ``lo``/``hi`` bound the length of what it matches."""

    lo: int = 0
    hi: int | None = 0

    def gen(self, rng: Random, target: int) -> str:
        return ""


class _RChars(_RNode):
    """One character from a set (a literal, a class, ``.``, ``\\d``...)."""

    def __init__(self, ranges: list[tuple[int, int]], negated: bool = False) -> None:
        self.lo = self.hi = 1
        if negated:
            pool = [
                c for c in _PRINTABLE if not any(a <= ord(c) <= b for a, b in ranges)
            ]
            if not pool:
                pool = [
                    chr(c)
                    for c in range(0xC0, 0x250)
                    if not any(a <= c <= b for a, b in ranges)
                ]
            if not pool:
                raise _RegexUnsupported("an empty negated class")
            self.ranges = [(ord(c), ord(c)) for c in pool]
        else:
            self.ranges = ranges
        self.weights = [b - a + 1 for a, b in self.ranges]

    def gen(self, rng: Random, target: int) -> str:
        a, b = rng.choices(self.ranges, self.weights)[0]
        return chr(rng.randint(a, b))


class _RSeq(_RNode):
    """Concatenation: the target length is shared among the items."""

    def __init__(self, items: list[_RNode]) -> None:
        self.items = items
        self.lo = sum(i.lo for i in items)
        his = [i.hi for i in items]
        self.hi = None if any(h is None for h in his) else sum(h or 0 for h in his)

    def gen(self, rng: Random, target: int) -> str:
        return "".join(
            item.gen(rng, size)
            for item, size in zip(
                self.items, _spread(self.items, target, rng), strict=True
            )
        )


class _RAlt(_RNode):
    """Alternation: an option that can reach the target length."""

    def __init__(self, options: list[_RNode]) -> None:
        self.options = options
        self.lo = min(o.lo for o in options)
        his = [o.hi for o in options]
        self.hi = None if any(h is None for h in his) else max(h or 0 for h in his)

    def gen(self, rng: Random, target: int) -> str:
        fit = [
            o
            for o in self.options
            if o.lo <= target and (o.hi is None or target <= o.hi)
        ]
        if not fit:
            best = min(abs(o.lo - target) for o in self.options)
            fit = [o for o in self.options if abs(o.lo - target) == best]
        return rng.choice(fit).gen(rng, target)


class _RRepeat(_RNode):
    """A quantifier: a count that can reach the target, then the copies."""

    def __init__(self, node: _RNode, least: int, most: int | None) -> None:
        self.node, self.least, self.most = node, least, most
        self.lo = least * node.lo
        if node.hi == 0:
            self.hi = 0
        elif most is None or node.hi is None:
            self.hi = None
        else:
            self.hi = most * node.hi

    def gen(self, rng: Random, target: int) -> str:
        node = self.node
        top = self.most if self.most is not None else max(self.least, target) + 1
        counts = [
            c
            for c in range(self.least, min(top, self.least + 400) + 1)
            if c * node.lo <= target and (node.hi is None or target <= c * node.hi)
        ]
        if counts:
            count = rng.choice(counts)
        elif node.lo and target < self.least * node.lo:
            count = self.least
        else:
            count = min(top, self.least + 400)
        copies = [node] * count
        return "".join(node.gen(rng, size) for size in _spread(copies, target, rng))


def _spread(items: Sequence[_RNode], target: int, rng: Random) -> list[int]:
    """Share a target length among nodes, each within its own length bounds."""
    sizes = [i.lo for i in items]
    left = target - sum(sizes)
    open_ = [k for k, i in enumerate(items) if i.hi is None or i.hi > i.lo]
    while left > 0 and open_:
        k = rng.choice(open_)
        item = items[k]
        room = left if item.hi is None else min(left, item.hi - sizes[k])
        give = rng.randint(1, room)
        sizes[k] += give
        left -= give
        if item.hi is not None and sizes[k] >= item.hi:
            open_.remove(k)
    return sizes


class _RegexParser:
    """Literals, classes, ``. \\d \\w \\s``, quantifiers, groups, ``|``, ``^ $``."""

    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0

    def parse(self) -> _RNode:
        node = self._alt()
        if self.i != len(self.p):
            raise _RegexUnsupported(f"unexpected {self.p[self.i]!r}")
        return node

    def _peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""

    def _alt(self) -> _RNode:
        options = [self._seq()]
        while self._peek() == "|":
            self.i += 1
            options.append(self._seq())
        return options[0] if len(options) == 1 else _RAlt(options)

    def _seq(self) -> _RNode:
        items: list[_RNode] = []
        while self._peek() not in ("", "|", ")"):
            items.append(self._quantified(self._atom()))
        return items[0] if len(items) == 1 else _RSeq(items)

    def _atom(self) -> _RNode:
        c = self.p[self.i]
        self.i += 1
        if c == "(":
            zero_width = False
            if self.p.startswith("?:", self.i):
                self.i += 2
            elif self.p.startswith(("?=", "?!"), self.i):
                self.i += 2
                zero_width = True
            elif self.p.startswith(("?<=", "?<!"), self.i):
                self.i += 3
                zero_width = True
            elif self.p.startswith(("?P<", "?<"), self.i):
                self.i = self.p.index(">", self.i) + 1
            elif self._peek() == "?":
                raise _RegexUnsupported("group flags")
            inner = self._alt()
            if self._peek() != ")":
                raise _RegexUnsupported("unbalanced group")
            self.i += 1
            return _RNode() if zero_width else inner
        if c == "[":
            return self._class()
        if c == ".":
            return _RChars(_ANY_RANGES)
        if c in "^$":
            return _RNode()
        if c == "\\":
            return self._escape(in_class=False)
        if c in "*+?":
            raise _RegexUnsupported("nothing to repeat")
        return _RChars([(ord(c), ord(c))])

    def _escape(self, in_class: bool) -> _RChars | _RNode:
        if self.i >= len(self.p):
            raise _RegexUnsupported("trailing backslash")
        c = self.p[self.i]
        self.i += 1
        sets = {"d": _DIGIT, "w": _WORD, "s": _SPACE}
        if c in sets:
            return _RChars(sets[c])
        if c.lower() in sets:
            return _RChars(sets[c.lower()], negated=True)
        if (c in "bB" and not in_class) or c in "AZz":
            return _RNode()  # zero-width: verified afterwards
        simple = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "v": "\v", "0": "\0"}
        if in_class and c == "b":
            return _RChars([(8, 8)])
        if c in simple:
            code = ord(simple[c])
        elif c in "xu":
            width = 2 if c == "x" else 4
            digits = self.p[self.i : self.i + width]
            if len(digits) != width or not all(
                d in "0123456789abcdefABCDEF" for d in digits
            ):
                raise _RegexUnsupported("bad hex escape")
            self.i += width
            code = int(digits, 16)
        elif c.isdigit() or c.isalpha():
            raise _RegexUnsupported(f"escape \\{c}")
        else:
            code = ord(c)
        return _RChars([(code, code)])

    def _class(self) -> _RChars:
        negated = self._peek() == "^"
        if negated:
            self.i += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            if self.i >= len(self.p):
                raise _RegexUnsupported("unterminated class")
            c = self.p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            self.i += 1
            if c == "\\":
                letter = self._peek()
                node = self._escape(in_class=True)
                if letter in ("D", "W", "S") or not isinstance(node, _RChars):
                    raise _RegexUnsupported(f"\\{letter} inside a class")
                if letter in ("d", "w", "s"):
                    ranges.extend(node.ranges)
                    continue
                low = node.ranges[0][0]
            else:
                low = ord(c)
            if self._peek() == "-" and self.p[self.i + 1 : self.i + 2] not in ("]", ""):
                self.i += 1
                d = self.p[self.i]
                self.i += 1
                if d == "\\":
                    node = self._escape(in_class=True)
                    if not isinstance(node, _RChars) or len(node.ranges) != 1:
                        raise _RegexUnsupported("bad range")
                    high = node.ranges[0][0]
                else:
                    high = ord(d)
                if high < low:
                    raise _RegexUnsupported("bad range")
                ranges.append((low, high))
            else:
                ranges.append((low, low))
        return _RChars(ranges, negated)

    def _quantified(self, node: _RNode) -> _RNode:
        while True:
            c = self._peek()
            if c in ("*", "+", "?"):
                self.i += 1
                least, most = {"*": (0, None), "+": (1, None), "?": (0, 1)}[c]
            elif c == "{":
                match = re.match(r"\{(\d*)(,?)(\d*)\}", self.p[self.i :])
                if not match or not (match.group(1) or match.group(3)):
                    return node  # a literal brace, as Python reads it
                self.i += match.end()
                least = int(match.group(1) or 0)
                if match.group(2):
                    most = int(match.group(3)) if match.group(3) else None
                else:
                    most = least
                if most is not None and most < least:
                    raise _RegexUnsupported("bad repeat")
            else:
                return node
            if self._peek() in ("?", "+"):
                self.i += 1  # lazy or possessive: the same strings match
            node = _RRepeat(node, least, most)


@lru_cache(maxsize=256)
def _parse_regex(pattern: str) -> _RNode | None:
    """The pattern's AST, or None when it is outside the subset (cached)."""
    # Leading inline flags that keep generated matches matching (not x: verbose).
    flags = re.match(r"\(\?[aimsu]+\)", pattern)
    if flags:
        pattern = pattern[flags.end() :]
    try:
        return _RegexParser(pattern).parse()
    except (_RegexUnsupported, ValueError, IndexError):
        return None


def _pattern_string(
    patterns: list[tuple[str, str]],
    lo: int,
    hi: int | None,
    rng: Random,
    fits: Any,
) -> str:
    """A string that ``re.search``-matches every pattern, within the lengths."""

    def ok(text: str) -> bool:
        if fits is not None:
            return bool(fits(text))
        return (
            lo <= len(text)
            and (hi is None or len(text) <= hi)
            and all(re.search(p, text) for p, _ in patterns)
        )

    pattern, path = patterns[0]
    node = _parse_regex(pattern)
    if node is not None:
        for attempt in range(10):
            t_lo = max(lo, node.lo)
            t_hi = (
                node.hi if hi is None else hi if node.hi is None else min(hi, node.hi)
            )
            if t_hi is None or t_lo <= t_hi:
                spread = 0 if attempt >= 6 else 8
                top = t_lo + spread if t_hi is None else min(t_hi, t_lo + spread)
                target = rng.randint(t_lo, top)
            else:
                target = node.lo
            core = node.gen(rng, target)
            pad = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=lo - len(core)))
            for text in (core, core + pad, pad + core):
                if ok(text):
                    return text
    nodes = [_parse_regex(p) for p, _ in patterns[1:]]
    if node is not None and len(patterns) > 1 and all(nodes):
        # Several unanchored patterns: a match of each, side by side.
        every = [node, *(n for n in nodes if n is not None)]
        for _ in range(10):
            cores = []
            for each in every:
                top = each.lo + 4 if each.hi is None else min(each.hi, each.lo + 4)
                cores.append(each.gen(rng, rng.randint(each.lo, top)))
            for text in ("".join(cores), "".join(reversed(cores))):
                if ok(text):
                    return text
    literal = re.sub(r"\\(.)|[\^$.*+?()\[\]{}|]", r"\1", pattern)
    guesses = ["", literal, "a" * lo, "0" * lo, "x" * max(lo, 1)]
    guesses += [
        "".join(rng.choices(_PRINTABLE, k=max(lo, 1) + i % 5)) for i in range(40)
    ]
    for text in guesses:
        if ok(text):
            return text
    raise _Stuck(path, f"cannot generate a string matching pattern {pattern!r}")


# -- plausible content ---------------------------------------------------------

_FIRST = _words(
    "Alice Bob Carol David Emma Frank Grace Henry Isabel Jack Karen Liam Maria "
    "Noah Olivia Peter Quinn Rachel Samuel Sofia Thomas Uma Victor Wendy Yusuf "
    "Zoe Hana Lucas Amira Mateo Priya Chen Elena Omar Ingrid Kenji"
)
_LAST = _words(
    "Smith Johnson Garcia Miller Davis Martinez Lopez Wilson Anderson Taylor "
    "Moore Jackson Martin Lee Thompson White Harris Clark Lewis Walker Young "
    "King Wright Scott Nguyen Hill Green Adams Baker Nelson Patel Kim Rossi"
)
_CITIES = _words(
    "London|Paris|Berlin|Madrid|Rome|Amsterdam|Vienna|Prague|Lisbon|Dublin|"
    "New York|San Francisco|Chicago|Toronto|Seattle|Austin|Boston|Sydney|"
    "Melbourne|Tokyo|Osaka|Seoul|Singapore|Mumbai|Cape Town|Nairobi|Cairo|"
    "Buenos Aires|Mexico City|Sao Paulo|Stockholm|Oslo|Helsinki|Zurich",
    "|",
)
_COUNTRIES = _words(
    "United States|Canada|Mexico|Brazil|Argentina|United Kingdom|Ireland|France|"
    "Germany|Spain|Portugal|Italy|Netherlands|Sweden|Norway|Finland|Poland|"
    "Japan|South Korea|China|India|Singapore|Australia|New Zealand|Kenya|"
    "Nigeria|South Africa|Egypt|Turkey|Switzerland",
    "|",
)
_COMPANIES = _words(
    "Acme Corp|Globex|Initech|Umbrella Labs|Stark Industries|Wayne Enterprises|"
    "Hooli|Vandelay Industries|Soylent Co|Cyberdyne Systems|Blue Harbor Ltd|"
    "Northwind Traders|Contoso|Fabrikam|Tailspin Toys|Aperture Science",
    "|",
)
_STREETS = _words(
    "Main Street|Oak Avenue|Maple Drive|Cedar Lane|Park Road|Elm Street|"
    "High Street|Station Road|Church Lane|River Walk|Sunset Boulevard|Hill Road",
    "|",
)
_COLORS = _words("red blue green yellow purple orange black white gray teal navy")
_LANGUAGES = _words(
    "English Spanish French German Italian Portuguese Japanese Korean "
    "Mandarin Hindi Arabic Dutch Swedish"
)
_CURRENCIES = _words("USD EUR GBP JPY CHF CAD AUD CNY INR SEK")
_STATUSES = _words("active pending completed cancelled archived draft open closed")
_WORDS = _words(
    "apple river stone cloud garden market signal harbor forest summer winter "
    "bridge engine planet silver orbit canvas pixel vector anchor beacon "
    "meadow crystal lantern compass velvet thunder maple cedar falcon "
    "copper ember glacier horizon island jungle kettle ladder mosaic nectar"
)
_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_KEY_WORDS = _words("alpha beta gamma delta epsilon zeta theta kappa sigma omega")
_DOMAINS = _words("example.com example.org example.net test.io demo.dev")
_SENTENCES = (
    "A compact, lightweight design built for everyday use.",
    "The meeting covered the quarterly roadmap and next steps.",
    "Fresh ingredients, simple preparation and bold flavors.",
    "This release improves performance and fixes several bugs.",
    "A quiet neighborhood close to parks, shops and transit.",
    "The report summarizes the key findings from the survey.",
    "Customers praised the fast delivery and friendly support.",
    "An introductory guide to the basics of the topic.",
    "The team delivered the project ahead of schedule.",
    "Sunny in the morning with light clouds later in the day.",
    "A well-balanced mix of practical tips and examples.",
    "The package includes setup instructions and a warranty.",
    "Results improved steadily over the last three months.",
    "A short walk from the station with a view of the river.",
    "The proposal outlines costs, risks and a timeline.",
    "Everything you need to get started in a few minutes.",
)


def _tokens(name: str) -> list[str]:
    """camelCase / snake_case / kebab-case words of a property name."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    return [t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t]


def _person(rng: Random) -> tuple[str, str]:
    return rng.choice(_FIRST), rng.choice(_LAST)


def _email(rng: Random, name: str = "") -> str:
    """first.last@domain, like a real address."""
    first, last = _person(rng)
    return f"{first.lower()}.{last.lower()}@{rng.choice(_DOMAINS)}"


def _hostname(rng: Random, name: str = "") -> str:
    return f"{rng.choice(('www', 'api', 'mail', 'app', 'cdn'))}.{rng.choice(_DOMAINS)}"


def _url(rng: Random, name: str = "") -> str:
    path = "/".join(rng.sample(_WORDS, rng.randint(1, 2)))
    return f"https://{_hostname(rng)}/{path}"


def _date(rng: Random, name: str = "") -> str:
    year, month, day = rng.randint(2019, 2026), rng.randint(1, 12), rng.randint(1, 28)
    return f"{year:04d}-{month:02d}-{day:02d}"


def _time(rng: Random, name: str = "") -> str:
    hour, minute, second = rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59)
    return f"{hour:02d}:{minute:02d}:{second:02d}Z"


def _date_time(rng: Random, name: str = "") -> str:
    return f"{_date(rng)}T{_time(rng)}"


def _uuid(rng: Random, name: str = "", version: int = 4) -> str:
    """A UUID from the rng (uuid4() would read the OS random source)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=version))


def _ipv4(rng: Random, name: str = "") -> str:
    first = rng.choice((10, 172, 192, 203))
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def _ipv6(rng: Random, name: str = "") -> str:
    return str(ipaddress.IPv6Address((0x20010DB8 << 96) | rng.getrandbits(64)))


def _ipv4_net(rng: Random, name: str = "") -> str:
    return f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.0/24"


def _ipv6_net(rng: Random, name: str = "") -> str:
    return f"2001:db8:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}::/64"


def _ipv4_interface(rng: Random, name: str = "") -> str:
    return f"192.168.{rng.randint(0, 255)}.{rng.randint(1, 254)}/24"


def _ipv6_interface(rng: Random, name: str = "") -> str:
    return f"2001:db8::{rng.getrandbits(16):x}/64"


def _base64(rng: Random, name: str = "") -> str:
    return base64.b64encode(_phrase(rng).encode()).decode()


def _duration(rng: Random, name: str = "") -> str:
    return rng.choice(
        (
            f"PT{rng.randint(1, 59)}M",
            f"P{rng.randint(1, 30)}D",
            f"PT{rng.randint(1, 12)}H",
        )
    )


_FORMATS: dict[str, Any] = {
    "date-time": _date_time,
    "date": _date,
    "time": _time,
    "email": _email,
    "idn-email": _email,
    "uri": _url,
    "iri": _url,
    "uri-reference": lambda rng, name: "/" + "/".join(rng.sample(_WORDS, 2)),
    "iri-reference": lambda rng, name: "/" + "/".join(rng.sample(_WORDS, 2)),
    "uri-template": lambda rng, name: (
        f"https://{_hostname(rng)}/{rng.choice(_WORDS)}/{{id}}"
    ),
    "uuid": _uuid,
    # pydantic's own formats, so that model_validate() accepts what it gets
    "uuid1": lambda rng, name: _uuid(rng, name, 1),
    "uuid3": lambda rng, name: _uuid(rng, name, 3),
    "uuid4": _uuid,
    "uuid5": lambda rng, name: _uuid(rng, name, 5),
    "ipvanyaddress": _ipv4,
    "ipvanynetwork": _ipv4_net,
    "ipv4network": _ipv4_net,
    "ipv6network": _ipv6_net,
    "ipvanyinterface": _ipv4_interface,
    "ipv4interface": _ipv4_interface,
    "ipv6interface": _ipv6_interface,
    "multi-host-uri": _url,
    "password": lambda rng, name: "".join(rng.choices(_ALNUM, k=16)),
    "base64": _base64,
    "binary": lambda rng, name: _phrase(rng),
    "ipv4": _ipv4,
    "ipv6": _ipv6,
    "hostname": _hostname,
    "idn-hostname": _hostname,
    "duration": _duration,
    "json-pointer": lambda rng, name: f"/{rng.choice(_WORDS)}/{rng.randint(0, 9)}",
    "relative-json-pointer": lambda rng, name: (
        f"{rng.randint(0, 3)}/{rng.choice(_WORDS)}"
    ),
    "regex": lambda rng, name: rng.choice(
        ("^[a-z]+$", "\\d{3}-\\d{4}", "^[A-Z][a-z]*")
    ),
}


def _phrase(rng: Random) -> str:
    """A few random words: a neutral string when the name hints nothing."""
    return " ".join(rng.sample(_WORDS, rng.randint(2, 3)))


def _fit(text: str, lo: int, hi: int | None, rng: Random) -> str:
    """Stretch with words or cut so that lo <= len(text) <= hi."""
    while len(text) < lo:
        text += " " + rng.choice(_WORDS)
    if hi is not None and len(text) > hi:
        text = text[:hi]
        stripped = text.rstrip()
        if len(stripped) >= lo:
            text = stripped
    return text


def _text_hint(name: str, rng: Random) -> str | None:
    """Plausible text for a property name, or None when the name says nothing."""
    t = _tokens(name)
    if not t:
        return rng.choice(_SENTENCES)

    def has(*words: str) -> bool:
        return any(w in t for w in words)

    last = t[-1]
    if has("email", "mail"):
        return _email(rng)
    if has("url", "uri", "link", "website", "homepage", "href", "avatar", "image"):
        return _url(rng)
    if has("firstname", "given") or (has("first") and has("name")):
        return rng.choice(_FIRST)
    if has("lastname", "surname", "family") or (has("last") and has("name")):
        return rng.choice(_LAST)
    if has("username", "login", "handle", "nickname") or (has("user") and has("name")):
        first, last_name = _person(rng)
        return f"{first[0].lower()}{last_name.lower()}{rng.randint(1, 99)}"
    if has("company", "organization", "organisation", "employer", "brand", "org"):
        return rng.choice(_COMPANIES)
    if has("city", "town"):
        return rng.choice(_CITIES)
    if has("country", "nationality"):
        return rng.choice(_COUNTRIES)
    if has("street", "address"):
        return f"{rng.randint(1, 999)} {rng.choice(_STREETS)}"
    if has("zip", "postal", "postcode", "zipcode"):
        return f"{rng.randint(10000, 99999)}"
    if has("phone", "mobile", "tel", "telephone", "fax"):
        return f"+1-555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}"
    if has("domain", "hostname", "host"):
        return _hostname(rng)
    if has("uuid", "guid") or last in ("id", "ids"):
        return _uuid(rng)
    if last == "at" or has("timestamp", "datetime"):
        return _date_time(rng)
    if has("date", "birthday", "dob", "birthdate", "day"):
        return _date(rng)
    if has("time"):
        return f"{rng.randint(7, 20):02d}:{rng.choice((0, 15, 30, 45)):02d}"
    if has("color", "colour"):
        return rng.choice(_COLORS)
    if has("language", "lang", "locale"):
        return rng.choice(_LANGUAGES)
    if has("currency"):
        return rng.choice(_CURRENCIES)
    if has("status", "state"):
        return rng.choice(_STATUSES)
    if has(
        "name",
        "author",
        "person",
        "customer",
        "owner",
        "recipient",
        "sender",
        "contact",
        "manager",
        "assignee",
        "attendee",
        "participant",
        "speaker",
        "member",
        "employee",
        "user",
        "student",
        "teacher",
        "patient",
        "host",
    ):
        return " ".join(_person(rng))
    if has("title", "headline", "subject", "heading", "caption"):
        return " ".join(w.capitalize() for w in rng.sample(_WORDS, rng.randint(2, 4)))
    if has(
        "description",
        "summary",
        "content",
        "text",
        "body",
        "comment",
        "message",
        "note",
        "notes",
        "bio",
        "explanation",
        "reason",
        "reasoning",
        "answer",
        "details",
        "detail",
        "abstract",
        "review",
        "feedback",
        "response",
        "question",
        "instructions",
        "step",
        "steps",
        "analysis",
        "thought",
        "output",
        "result",
        "conclusion",
    ):
        return " ".join(rng.sample(_SENTENCES, rng.randint(1, 2)))
    if has("slug"):
        return "-".join(rng.sample(_WORDS, 2))
    if has("password", "secret", "token", "key", "hash"):
        return "".join(rng.choices(_ALNUM, k=24))
    if has("sku", "code"):
        letters = rng.choice("ABCDEFGHJK") + rng.choice("LMNPQRSTUV")
        return f"{letters}-{rng.randint(1000, 9999)}"
    if has("version"):
        return f"{rng.randint(0, 3)}.{rng.randint(0, 12)}.{rng.randint(0, 20)}"
    if has(
        "tag", "category", "label", "keyword", "topic", "genre", "kind", "type", "word"
    ):
        return rng.choice(_WORDS)
    return None


def _number_hint(name: str, *, integer: bool) -> tuple[float, float, int] | None:
    """A plausible (low, high, decimal places) for a numeric property name."""
    t = _tokens(name)

    def has(*words: str) -> bool:
        return any(w in t for w in words)

    if has("age"):
        return 18, 80, 0
    if has("year"):
        return 1990, 2026, 0
    if has("month"):
        return 1, 12, 0
    if has("day"):
        return 1, 28, 0
    if has("hour", "hours"):
        return 0, 23, 0
    if has("minute", "minutes", "second", "seconds"):
        return 0, 59, 0
    if has("latitude", "lat"):
        return -90, 90, 4
    if has("longitude", "lon", "lng"):
        return -180, 180, 4
    if has(
        "price",
        "cost",
        "amount",
        "total",
        "balance",
        "salary",
        "fee",
        "subtotal",
        "tax",
    ):
        return (1, 500, 0) if integer else (1, 500, 2)
    if has("rating", "stars"):
        return (1, 5, 0) if integer else (1, 5, 1)
    if has("score"):
        return (0, 100, 0) if integer else (0, 10, 1)
    if has("probability", "confidence", "ratio", "weight"):
        return (0, 1, 0) if integer else (0, 1, 2)
    if has("percent", "percentage"):
        return 0, 100, 1
    if has(
        "count", "quantity", "qty", "number", "num", "size", "page", "rank", "level"
    ):
        return 1, 20, 0
    if has("id"):
        return 1, 9999, 0
    if has("temperature", "temp"):
        return -10, 35, 1
    return None
