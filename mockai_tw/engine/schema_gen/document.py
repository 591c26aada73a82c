"""The root schema document: $ref resolution, validators, static analysis.

Answers questions about the schema as written (where a $ref points, whether a
subschema is certainly unsatisfiable, how costly its smallest instance is);
knows nothing of random choices or of how values are made.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema import exceptions as js_exceptions
from jsonschema.protocols import Validator

from mockai_tw.engine.schema_gen.errors import Invalid, Unsat, as_fragment
from mockai_tw.engine.schema_gen.keywords import (
    TYPES,
    Item,
    escape,
    subschemas,
    type_list,
    type_matches,
)
from mockai_tw.engine.schema_gen.merge import Merged

INF = 10**9  # the cost of an instance that never ends


class Document:
    """The root schema: ref resolution, validators and cheap satisfiability."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self._validators: dict[int, Validator] = {}
        self._keep: list[Any] = []  # synthetic schemas whose id() is a cache key
        self._anchors: dict[str, Item] = {}
        self._unsat_memo: dict[int, tuple[str, str] | None] = {}
        self._cost_memo: dict[int, int] = {}
        self._base = ""
        self._validator: Validator | None = None

    def check(self) -> None:
        """Metaschema, refs, then the root's satisfiability."""
        try:
            Draft202012Validator.check_schema(self.root)
        except js_exceptions.SchemaError as exc:
            where = "".join(f"/{escape(str(p))}" for p in exc.absolute_path)
            message = exc.message if len(exc.message) <= 200 else exc.message[:197]
            raise Invalid(where, message) from None
        for ref, path in self.prepare():
            self.resolve(ref, path)
        found = self.unsat(self.root, "")
        if found is not None:
            raise Unsat(*found)

    def prepare(self) -> list[tuple[str, str]]:
        """Index anchors and make the validator; return every (ref, where)."""
        self._validator = Draft202012Validator(self.root)
        if isinstance(self.root, Mapping):
            root_id = self.root.get("$id")
            self._base = root_id.split("#")[0] if isinstance(root_id, str) else ""
        refs: list[tuple[str, str]] = []
        stack: list[Item] = [(self.root, "")]
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
            stack.extend(subschemas(schema, path))
        return refs

    def resolve(self, ref: str, at: str) -> Item:
        """Follow a local ``$ref``: ``#``, ``#/json/pointer`` or ``#anchor``."""
        base, _, fragment = ref.partition("#")
        if base and base != self._base:
            raise Invalid(at, f"$ref {ref!r} is not local (only '#...' refs work)")
        fragment = urllib.parse.unquote(fragment)
        if not fragment:
            return self.root, ""
        if not fragment.startswith("/"):
            if fragment in self._anchors:
                return self._anchors[fragment]
            raise Invalid(at, f"$ref {ref!r} names no $anchor")
        node: Any = self.root
        for token in fragment[1:].split("/"):
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, Mapping) and token in node:
                node = node[token]
            elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
                node = node[int(token)]
            else:
                raise Invalid(at, f"$ref {ref!r} does not resolve")
        if not isinstance(node, Mapping | bool):
            raise Invalid(at, f"$ref {ref!r} does not point to a schema")
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
                    inner = f"{as_fragment(first[0])}: {first[1]}"
                    return f"{path}/{kw}", f"no branch can be satisfied ({inner})"
        if "not" in schema and (schema["not"] is True or schema["not"] == {}):
            return f"{path}/not", "'not' of a schema that accepts everything"
        shallow = [(schema, path)]
        shallow += [(sub, path) for sub in schema.get("allOf", ())]
        if isinstance(schema.get("$ref"), str):
            shallow.append(self.resolve(schema["$ref"], path))
        if Merged(shallow, path).types == []:
            return (
                f"{path}/type",
                "the 'type' keywords of allOf/$ref have nothing in common",
            )
        types = type_list(schema)
        if "const" in schema or "enum" in schema:
            return self._unsat_enum(schema, path, types)
        merged = Merged([(schema, path)], path)
        reasons: list[tuple[str, str]] = []
        for name in types if types is not None else TYPES:
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
        if types is not None and not any(type_matches(v, types) for v in values):
            shown = "/".join(types)
            if kw == "const":
                const = _short(schema["const"])
                return f"{path}/const", f"const {const} does not match type {shown}"
            return f"{path}/enum", f"no enum value matches type {shown}"
        what = f"const {_short(schema['const'])}" if kw == "const" else "no enum value"
        verb = "does not satisfy" if kw == "const" else "satisfies"
        return f"{path}/{kw}", f"{what} {verb} the other keywords"

    def _unsat_type(self, name: str, merged: Merged) -> tuple[str, str] | None:
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
        """How many $ref expansions a smallest instance needs (INF: endless).

        Only orders branches and types once recursion is deep; a heuristic.
        """
        if schema is True:
            return 0
        if schema is False or not isinstance(schema, Mapping):
            return INF
        key = id(schema)
        if key in self._cost_memo:
            return self._cost_memo[key]
        self._cost_memo[key] = INF  # on the stack: a cycle
        total = self._cost_object(schema)
        self._cost_memo[key] = total
        return total

    def _cost_object(self, schema: Mapping[str, Any]) -> int:
        """The cost of refs, combinators and required children."""
        total = 0
        if isinstance(schema.get("$ref"), str):
            target, _ = self.resolve(schema["$ref"], "")
            total = max(total, min(INF, 1 + self.cost(target)))
        for sub in schema.get("allOf", ()):
            total = max(total, self.cost(sub))
        for kw in ("anyOf", "oneOf"):
            if kw in schema:
                total = max(total, min(self.cost(sub) for sub in schema[kw]))
        if "const" in schema or "enum" in schema:
            return total
        types = type_list(schema) or list(TYPES)
        best = INF
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
