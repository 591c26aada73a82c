"""Merged constraints for one value: a $ref/allOf conjunction as one set of bounds.

Collects what several schema objects say about numbers, strings, arrays and
objects, and sees contradictions between them. Does not resolve $ref or pick
anyOf branches (the caller hands it the parts), and draws no random values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from mockai_tw.engine.schema_gen.arith import ceil_div, exact_decimal
from mockai_tw.engine.schema_gen.keywords import TYPES, Item, escape, type_list


@dataclass(frozen=True)
class Bound:
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
    props: dict[str, Item]
    patterns: list[tuple[str, Item]]
    additional: Item | None  # None: not constrained by this schema


@dataclass
class _ItemRule:
    """One schema's say on array elements."""

    path: str
    prefix: list[Item]
    items: Item | None


class Merged:
    """The constraints of several schemas (a ``$ref``/``allOf`` conjunction)."""

    def __init__(self, parts: Sequence[Item], path: str) -> None:
        self.path = parts[0][1] if parts else path
        self.types: list[str] | None = None
        self.type_path = self.path
        self.not_types: list[str] = []
        self.lo: Bound | None = None
        self.hi: Bound | None = None
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
        self.names: list[Item] = []
        self.dep_required: list[Mapping[str, Any]] = []
        self.closed_props = False
        self.keywords: set[str] = set()
        self.examples: list[Any] = []
        for schema, where in parts:
            if isinstance(schema, Mapping):
                self._add(schema, where)

    def _add(self, s: Mapping[str, Any], path: str) -> None:
        self.keywords.update(s)
        types = type_list(s)
        if types is not None:
            if self.types is None:
                self.types = [t for t in TYPES if t in types]
            else:
                self.types = _intersect_types(self.types, types)
            self.type_path = path
        negated = s.get("not")
        if isinstance(negated, Mapping) and set(negated) == {"type"}:
            self.not_types.extend(type_list(negated) or ())
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
                new = Bound(s[kw], exclusive, kw, path)
                old = self.lo
                if (
                    old is None
                    or new.value > old.value
                    or (new.value == old.value and exclusive)
                ):
                    self.lo = new
        for kw, exclusive in (("maximum", False), ("exclusiveMaximum", True)):
            if kw in s:
                new = Bound(s[kw], exclusive, kw, path)
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
                key: (sub, f"{path}/properties/{escape(key)}")
                for key, sub in s.get("properties", {}).items()
            }
            patterns = [
                (pattern, (sub, f"{path}/patternProperties/{escape(pattern)}"))
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
        if lo is not None and hi is not None and ceil_div(lo, step) > hi // step:
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
            k_lo, k_hi = k_range(lo, hi, exact_decimal(self.multiples[0]))
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

    def item_schemas(self, index: int) -> list[Item]:
        """What element ``index`` must satisfy, by every item rule."""
        out: list[Item] = []
        for rule in self.item_rules:
            if index < len(rule.prefix):
                out.append(rule.prefix[index])
            elif rule.items is not None:
                out.append(rule.items)
        return out

    # -- objects
    def value_schemas(self, key: str) -> list[Item] | None:
        """What the value of ``key`` must satisfy; None if the key is forbidden."""
        out: list[Item] = []
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
    for name in TYPES:
        in_a = name in a or (name == "integer" and "number" in a)
        in_b = name in b or (name == "integer" and "number" in b)
        if in_a and in_b:
            out.append(name)
    if "number" in out and "integer" not in a and "integer" not in b:
        out.remove("integer")
    return out


def k_range(
    lo: Bound | None, hi: Bound | None, step: Fraction
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
