"""Draw one instance from a checked schema: the random choices and their retries.

Flattens $ref/allOf, picks anyOf/oneOf/if branches (cheapest once recursion is
deep), makes each value from its merged constraints and verifies what the
merge only approximates. Asks the document about refs, the fakes for content
and the regex module for patterns; knows nothing of callers or caching.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from copy import deepcopy
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from random import Random
from typing import Any

from mockai_tw.engine.schema_gen.arith import (
    candidates,
    ceil_div,
    exact_decimal,
    multiple_ok,
    pick_range,
)
from mockai_tw.engine.schema_gen.depth import MAX_SCHEMA_DEPTH
from mockai_tw.engine.schema_gen.document import INF, Document
from mockai_tw.engine.schema_gen.errors import Failure, Fatal, Stuck, Unsat
from mockai_tw.engine.schema_gen.fakes import (
    FORMATS,
    KEY_WORDS,
    fit,
    number_hint,
    phrase,
    singular,
    text_hint,
)
from mockai_tw.engine.schema_gen.keywords import (
    ARRAY_KEYWORDS,
    DEFAULT_TYPE_ORDER,
    EXACT_KEYWORDS,
    MINIMAL_TYPE_ORDER,
    NUMBER_KEYWORDS,
    OBJECT_KEYWORDS,
    STRING_KEYWORDS,
    Item,
)
from mockai_tw.engine.schema_gen.merge import Merged, k_range
from mockai_tw.engine.schema_gen.regex import pattern_string

# As deep as the deepest schema accepted; a deeper value is endless recursion.
_MAX_DEPTH = MAX_SCHEMA_DEPTH
_SOFT_DEPTH = 10  # from here on: shortest arrays, required properties only
_SOFT_RECURSION = 3  # the same $ref this often on one path: go minimal
_MAX_ATTEMPTS = 8  # per value, when random choices failed
_EFFORT = 6000  # values tried per generate() call, in all
_SIZE = 1500  # values generated before everything goes minimal
_STRING_SCHEMA: Mapping[str, Any] = {"type": "string"}


def _in_bounds(value: float, merged: Merged) -> bool:
    """Whether a number satisfies the merged minimum/maximum keywords."""
    lo, hi = merged.lo, merged.hi
    if lo is not None and (value < lo.value or (lo.exclusive and value == lo.value)):
        return False
    return not (
        hi is not None and (value > hi.value or (hi.exclusive and value == hi.value))
    )


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


class Generator:
    """One generate() call: the random source, budgets and caches."""

    def __init__(self, schema: Document, rng: Random) -> None:
        self.schema = schema
        self.rng = rng
        self.effort = 0
        self.values = 0
        self._if_branches: dict[int, list[list[Item]]] = {}

    def run(self, name: str) -> Any:
        """The root value; validated as a whole, regenerated if it fails."""
        root = self.schema.root
        ctx = _Ctx(name, 0, ())
        for _ in range(3):
            value = self.node([(root, "")], ctx)
            if self.schema.valid(root, value):
                return value
        raise Stuck("", "no generated instance validated against the schema")

    def minimal(self, ctx: _Ctx) -> bool:
        """Deep or recursive enough that values should be as small as possible."""
        return (
            ctx.depth >= _SOFT_DEPTH
            or ctx.recursion() >= _SOFT_RECURSION
            or self.values > _SIZE
        )

    # -- one value: flatten refs/allOf, choose branches, generate, verify
    def node(self, items: list[Item], ctx: _Ctx) -> Any:
        """One value for the conjunction ``items``; retried with other branches."""
        if ctx.depth > _MAX_DEPTH:
            where = items[0][1] if items else ""
            raise Fatal(
                where,
                f"values nest deeper than {_MAX_DEPTH} levels "
                "(a recursive schema that never ends?)",
            )
        tried: dict[int, dict[int, int]] = {}
        first: Failure | None = None
        for _ in range(_MAX_ATTEMPTS):
            self.effort += 1
            if self.effort > _EFFORT:
                raise Fatal(items[0][1] if items else "", "gave up (too many retries)")
            choices: list[tuple[int, int]] = []
            try:
                parts, refs = self._flatten(items, ctx, choices, tried)
                here = _Ctx(ctx.name, ctx.depth, ctx.refs + tuple(refs))
                value = self._value(parts, here)
                if self._needs_check(parts) and not all(
                    self.schema.valid(s, value) for s, _ in items
                ):
                    raise Stuck(
                        parts[0][1] if parts else "",
                        "generated values kept failing the schema (oneOf/not/...)",
                    )
                self.values += 1
                return value
            except Fatal:
                raise
            except Failure as exc:
                if first is None or (
                    isinstance(exc, Unsat) and not isinstance(first, Unsat)
                ):
                    first = exc
                if not choices and isinstance(exc, Unsat):
                    raise
                for key, index in choices:
                    counts = tried.setdefault(key, {})
                    counts[index] = counts.get(index, 0) + 1
        assert first is not None
        raise first

    def _flatten(
        self,
        items: list[Item],
        ctx: _Ctx,
        choices: list[tuple[int, int]],
        tried: dict[int, dict[int, int]],
    ) -> tuple[list[Item], list[str]]:
        """Expand $ref and allOf; pick one branch of each anyOf/oneOf/if."""
        queue = list(items)
        parts: list[Item] = []
        seen: set[int] = set()
        refs: list[str] = []
        index = 0
        while index < len(queue):
            schema, path = queue[index]
            index += 1
            if schema is True:
                continue
            if schema is False:
                raise Unsat(path, "the schema is false, so no value is valid")
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

    def _if(self, schema: Mapping[str, Any], path: str) -> list[list[Item]]:
        """if/then/else as two branches: (if and then) or (not if, and else)."""
        found = self._if_branches.get(id(schema))
        if found is None:
            yes: list[Item] = [(schema["if"], f"{path}/if")]
            no: list[Item] = [(self.schema.keep({"not": schema["if"]}), f"{path}/if")]
            if "then" in schema:
                yes.append((schema["then"], f"{path}/then"))
            if "else" in schema:
                no.append((schema["else"], f"{path}/else"))
            found = self._if_branches[id(schema)] = [yes, no]
        return found

    def _choose(
        self,
        key: int,
        branches: list[list[Item]],
        ctx: _Ctx,
        choices: list[tuple[int, int]],
        tried: dict[int, dict[int, int]],
    ) -> list[Item]:
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
    def _needs_check(parts: list[Item]) -> bool:
        """Whether the parts use keywords the merge only approximates."""
        return any(not EXACT_KEYWORDS.issuperset(schema) for schema, _ in parts)

    def _value(self, parts: list[Item], ctx: _Ctx) -> Any:
        """A value for the merged ``parts`` (no $ref/allOf/anyOf left to follow)."""
        merged = Merged(parts, parts[0][1] if parts else "")
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
        failures: list[Failure] = []
        for name in self._type_order(merged, ctx):
            try:
                return self._typed(name, merged, ctx)
            except Fatal:
                raise
            except Failure as exc:
                failures.append(exc)
        if not failures:
            raise Unsat(merged.type_path, "no type satisfies every 'type' keyword")
        definite = [f for f in failures if isinstance(f, Unsat)]
        raise (failures[0] if len(definite) < len(failures) else definite[0])

    def _enum(self, enum: Item, parts: list[Item]) -> Any:
        """A value of the first enum/const that satisfies every part."""
        schema, path = enum
        values = [schema["const"]] if "const" in schema else list(schema["enum"])
        fitting = [v for v in values if all(self.schema.valid(s, v) for s, _ in parts)]
        if not fitting:
            kw = "const" if "const" in schema else "enum"
            raise Unsat(f"{path}/{kw}", f"no {kw} value satisfies the other keywords")
        return deepcopy(self.rng.choice(fitting))

    def _type_order(self, merged: Merged, ctx: _Ctx) -> list[str]:
        """Types to try: declared (rarely null) or inferred from keywords."""
        if merged.types is None:
            inferred = []
            for name, keys in (
                ("object", OBJECT_KEYWORDS),
                ("array", ARRAY_KEYWORDS),
                ("string", STRING_KEYWORDS),
                ("number", NUMBER_KEYWORDS),
            ):
                if merged.keywords & keys:
                    inferred.append(name)
            if not inferred and number_hint(ctx.name, integer=True):
                inferred.append("integer")
            rest = MINIMAL_TYPE_ORDER if self.minimal(ctx) else DEFAULT_TYPE_ORDER
            order = inferred + [t for t in rest if t not in inferred]
        elif self.minimal(ctx):
            order = [t for t in MINIMAL_TYPE_ORDER if t in merged.types]
        else:
            pool = list(merged.types)
            order = []
            while pool:
                weights = [0.15 if t == "null" else 1.0 for t in pool]
                order.append(pool.pop(self.rng.choices(range(len(pool)), weights)[0]))
        return [t for t in order if t not in merged.not_types]

    def _typed(self, name: str, merged: Merged, ctx: _Ctx) -> Any:
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
    def _integer(self, merged: Merged, ctx: _Ctx) -> int:
        """An integer in bounds, a multiple of every multipleOf, name-hinted."""
        problem = merged.integer_problem()
        if problem:
            raise Unsat(*problem)
        lo, hi = merged.integer_bounds()
        step = merged.integer_step()
        hint = number_hint(ctx.name, integer=True)
        w_lo, w_hi = (int(hint[0]), int(hint[1])) if hint else (0, 100)
        k_lo = None if lo is None else ceil_div(lo, step)
        k_hi = None if hi is None else hi // step
        window = (ceil_div(w_lo, step), w_hi // step)
        if window[1] - window[0] < 3:
            window = (window[0], window[0] + 5)
        a, b = pick_range(k_lo, k_hi, window)
        for k in candidates(a, b, self.rng):
            value = k * step
            if _in_bounds(value, merged) and all(
                multiple_ok(value, m) for m in merged.multiples
            ):
                return value
        raise Stuck(merged.path, "found no integer satisfying every multipleOf")

    def _number(self, merged: Merged, ctx: _Ctx) -> int | float:
        """A number in bounds, rounded to plausible decimals when that fits."""
        problem = merged.number_problem()
        if problem:
            raise Unsat(*problem)
        hint = number_hint(ctx.name, integer=False)
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
        raise Unsat(merged.path, "no number lies within the bounds")

    def _multiple(self, merged: Merged, window: tuple[float, float]) -> int | float:
        """k times the first multipleOf, checked like jsonschema checks it."""
        first = merged.multiples[0]
        step = exact_decimal(first)
        k_lo, k_hi = k_range(merged.lo, merged.hi, step)
        w = (
            math.ceil(Fraction(window[0]) / step),
            math.floor(Fraction(window[1]) / step),
        )
        if w[1] - w[0] < 3:
            w = (w[0], w[0] + 10)
        a, b = pick_range(k_lo, k_hi, w)
        for k in candidates(a, b, self.rng):
            exact = k * step
            value: int | float = (
                int(exact)
                if isinstance(first, int)
                else float(Decimal(k) * Decimal(repr(first)))
            )
            if (
                math.isfinite(value)
                and _in_bounds(value, merged)
                and all(multiple_ok(value, m) for m in merged.multiples)
            ):
                return value
        raise Stuck(merged.path, f"found no number that is a multiple of {first}")

    # -- strings
    def _string(self, merged: Merged, ctx: _Ctx) -> str:
        """A format, else a pattern match, else name-hinted text, fit to length."""
        problem = merged.string_problem()
        if problem:
            raise Unsat(*problem)
        lo, hi = merged.min_len, merged.max_len

        def fits(text: str) -> bool:
            return (
                lo <= len(text)
                and (hi is None or len(text) <= hi)
                and all(re.search(p, text) for p, _ in merged.patterns)
            )

        for fmt in merged.formats[:1]:
            maker = FORMATS.get(fmt)
            if maker is not None:
                for _ in range(4):
                    text = maker(self.rng, ctx.name)
                    if fits(text):
                        return text
        if merged.patterns:
            return pattern_string(merged.patterns, lo, hi, self.rng, fits)
        hinted = text_hint(ctx.name, self.rng)
        if hinted is not None and fits(hinted):
            return hinted
        base = hinted if hinted is not None and " " in hinted else phrase(self.rng)
        return fit(base, lo, hi, self.rng)

    # -- arrays
    def _array(self, merged: Merged, ctx: _Ctx) -> list[Any]:
        """Short arrays (minimal when deep); an item that fails ends the tail."""
        problem = merged.array_problem()
        if problem:
            raise Unsat(*problem)
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
        child = singular(ctx.name)
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
                    raise Stuck(
                        merged.path, f"could not make {lo} distinct items (uniqueItems)"
                    )
            except Fatal:
                raise
            except Failure:
                if index < lo:
                    raise
                break  # the optional tail: a shorter array will do
            if merged.unique:
                seen.add(key)
            out.append(value)
        return out

    # -- objects
    def _object(self, merged: Merged, ctx: _Ctx) -> dict[str, Any]:
        """Required keys, most optional ones, extra keys where minProperties asks.

        No key the schema does not name unless minProperties asks for more than
        it names; an object whose only keys are patternProperties (a map) gets
        an entry or two matching them.
        """
        problem = merged.object_problem()
        if problem:
            raise Unsat(*problem)
        required = merged.required
        declared = merged.declared()
        optional = [k for k in declared if k not in required and merged.allowed(k)]
        if self.minimal(ctx):  # if minProperties needs some, take the cheapest
            optional.sort(key=lambda k: self._key_cost(merged, k))
        room = INF if merged.max_props is None else merged.max_props - len(required)
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
                raise Stuck(merged.path, f"dependentRequired needs forbidden {key!r}")
            try:
                out[key] = self.node(schemas, ctx.child(key))
            except Fatal:
                raise
            except Failure:
                if key in forced:
                    raise
        wanted = merged.min_props - len(out)
        patterned = any(rule.patterns for rule in merged.prop_rules)
        if not declared and patterned and not self.minimal(ctx):
            wanted = max(wanted, self.rng.randint(1, 2))
        if merged.max_props is not None:
            wanted = min(wanted, merged.max_props - len(out))
        for _ in range(max(wanted, 0)):
            undeclared = len(out) < merged.min_props
            extra = self._extra_key(merged, ctx, out, undeclared=undeclared)
            if extra is None:
                break
            key, schemas = extra
            try:
                out[key] = self.node(schemas, ctx.child(key))
            except Fatal:
                raise
            except Failure:
                if len(out) < merged.min_props:
                    raise
        if len(out) < merged.min_props:
            raise Stuck(
                merged.props_paths[0],
                f"could not make the {merged.min_props} properties minProperties asks",
            )
        return out

    def _key_cost(self, merged: Merged, key: str) -> int:
        """How much recursion a property's value needs (for minimal objects)."""
        found = merged.value_schemas(key) or []
        return max((self.schema.cost(sub) for sub, _ in found), default=0)

    def _extra_key(
        self,
        merged: Merged,
        ctx: _Ctx,
        taken: Mapping[str, Any],
        *,
        undeclared: bool,
    ) -> tuple[str, list[Item]] | None:
        """A new key the object may have, with its value's schemas.

        Keys matching patternProperties come first; with ``undeclared`` (when
        minProperties asks for more keys than the schema names) any key the
        schema allows will do once patterns fail.
        """
        patterns = [p for rule in merged.prop_rules for p, _ in rule.patterns]
        for attempt in range(20):
            if patterns and (not undeclared or not merged.open() or attempt < 10):
                pattern = self.rng.choice(patterns)
                try:
                    size = self.rng.randint(1, 8)
                    key = pattern_string(
                        [(pattern, merged.path)], size, 40, self.rng, None
                    )
                except Stuck:
                    continue
            elif not undeclared:
                return None
            elif merged.names:
                schemas = [*merged.names, (_STRING_SCHEMA, merged.path)]
                try:
                    key = self.node(schemas, ctx.child("key"))
                except Fatal:
                    raise
                except Failure:
                    continue
            elif merged.open():
                key = self.rng.choice(KEY_WORDS)
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


def _only(branch: list[Item]) -> Mapping[str, Any]:
    schema = branch[0][0] if len(branch) == 1 else None
    return schema if isinstance(schema, Mapping) else {}


def _is_numeric(branch: list[Item]) -> bool:
    return _only(branch).get("type") in ("number", "integer")


def _is_bare_string(branch: list[Item]) -> bool:
    schema = _only(branch)
    return schema.get("type") == "string" and _ANNOTATIONS.issuperset(schema)


def _is_null(branch: list[Item]) -> bool:
    """Whether a branch only allows null (pydantic's Optional)."""
    return all(isinstance(s, Mapping) and s.get("type") == "null" for s, _ in branch)
