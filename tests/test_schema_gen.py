"""The JSON Schema instance generator behind structured output.

The central property: for any satisfiable schema, what ``generate`` returns
validates (formats included), and the same seed gives the same instance.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import subprocess
import sys
import urllib.parse
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from ipaddress import IPv4Network, IPv6Interface
from pathlib import Path
from typing import Any, Literal, Optional, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker
from pydantic import (
    UUID1,
    UUID4,
    Base64Str,
    BaseModel,
    Field,
    HttpUrl,
    IPvAnyAddress,
    IPvAnyInterface,
    IPvAnyNetwork,
    SecretStr,
)

from twisted.trial.unittest import SynchronousTestCase

import mockai_tw
from mockai_tw.engine import schema_gen
from mockai_tw.engine.schema_gen import (
    MAX_SCHEMA_DEPTH,
    SchemaError,
    check_depth,
    check_schema,
    generate,
    schema_depth,
)

T = TypeVar("T")

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# jsonschema checks most formats itself; these it skips without extra packages.
CHECKER = FormatChecker(formats=())
CHECKER.checkers = dict(Draft202012Validator.FORMAT_CHECKER.checkers)
_HOST_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*")
_DURATION = re.compile(
    r"P(?!$)(\d+Y)?(\d+M)?(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+S)?)?"
)


@CHECKER.checks("hostname")
def _is_hostname(value: object) -> bool:
    return not isinstance(value, str) or (
        len(value) <= 253 and bool(_HOSTNAME.fullmatch(value))
    )


@CHECKER.checks("uri")
def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urllib.parse.urlsplit(value)
    return (
        bool(re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", parts.scheme))
        and bool(parts.netloc or parts.path)
        and not re.search(r"\s", value)
    )


@CHECKER.checks("uri-reference")
def _is_uri_reference(value: object) -> bool:
    return not isinstance(value, str) or not re.search(r"\s", value)


@CHECKER.checks("duration")
def _is_duration(value: object) -> bool:
    return not isinstance(value, str) or bool(_DURATION.fullmatch(value))


CLAIMED_FORMATS = [
    "date-time",
    "date",
    "time",
    "email",
    "uri",
    "uuid",
    "ipv4",
    "ipv6",
    "hostname",
    "duration",
    "uri-reference",
]


def assert_valid(schema: Any, instance: Any) -> None:
    """Validate with jsonschema (formats asserted) and as strict JSON."""
    Draft202012Validator(schema, format_checker=CHECKER).validate(instance)
    json.dumps(instance, allow_nan=False)


# -- Hypothesis: satisfiable schemas by construction ----------------------------

NAMES = st.sampled_from(
    [
        "name",
        "first_name",
        "email",
        "city",
        "country",
        "url",
        "id",
        "phone",
        "created_at",
        "birth_date",
        "age",
        "price",
        "description",
        "summary",
        "tags",
        "items",
        "count",
        "score",
        "title",
        "x",
        "value",
        "a/b",
        "ti~lde",
    ]
)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.floats(-1e6, 1e6, allow_nan=False)
    | st.text(max_size=6)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
PATTERNS = [
    r"^[a-z]+$",
    r"^\d{3}-\d{4}$",
    r"^[A-Z]{2,3}\d{1,4}$",
    r"^(foo|bar)baz?$",
    r"\d+",
    r"^[a-zA-Z0-9_.+-]+@[a-z]+\.[a-z]{2,3}$",
    r"^\w+( \w+)*$",
    r"^#[0-9a-fA-F]{6}$",
    r"^[^\s]+$",
    r"abc",
    r"^.{3,8}$",
    r"^(\+\d{1,3})?\d{7,10}$",
    r"^v\d+\.\d+\.\d+$",
    r"^(?:[01]\d|2[0-3]):[0-5]\d$",
    r"^(?=.*\d)[a-z\d]{6,12}$",
    r"[aeiou]{2}",
    r"^\S+$",
]


@st.composite
def integer_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer"}
    lo = draw(st.none() | st.integers(-500, 500))
    hi = draw(st.none() | st.integers(-500, 500))
    step = draw(st.none() | st.sampled_from([2, 3, 5, 10, 0.5]))
    if lo is not None and hi is not None:
        lo, hi = min(lo, hi), max(lo, hi) + 25  # room for a multiple
    if lo is not None:
        schema["exclusiveMinimum" if draw(st.booleans()) else "minimum"] = lo
    if hi is not None:
        schema["exclusiveMaximum" if draw(st.booleans()) else "maximum"] = hi
    if step is not None:
        schema["multipleOf"] = step
    return schema


@st.composite
def number_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "number"}
    lo = draw(st.none() | st.floats(-1e4, 1e4))
    hi = draw(st.none() | st.floats(-1e4, 1e4))
    if lo is not None and hi is not None:
        lo, hi = min(lo, hi), max(lo, hi) + 3.0
    if lo is not None:
        schema["exclusiveMinimum" if draw(st.booleans()) else "minimum"] = lo
    if hi is not None:
        schema["exclusiveMaximum" if draw(st.booleans()) else "maximum"] = hi
    step = draw(st.none() | st.sampled_from([0.01, 0.1, 0.25, 0.5, 2, 1.5]))
    if step is not None:
        schema["multipleOf"] = step
    return schema


@st.composite
def string_schemas(draw: st.DrawFn) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    kind = draw(st.sampled_from(["plain", "format", "pattern"]))
    if kind == "format":
        schema["format"] = draw(st.sampled_from(CLAIMED_FORMATS))
    elif kind == "pattern":
        schema["pattern"] = draw(st.sampled_from(PATTERNS))
        if draw(st.booleans()):
            schema["maxLength"] = 40
    else:
        lo = draw(st.integers(0, 12))
        if draw(st.booleans()):
            schema["minLength"] = lo
        if draw(st.booleans()):
            schema["maxLength"] = lo + draw(st.integers(0, 12))
    return schema


LEAVES: st.SearchStrategy[Any] = (
    st.just({"type": "null"})
    | st.just({"type": "boolean"})
    | st.just({})
    | st.just(True)
    | integer_schemas()
    | number_schemas()
    | string_schemas()
    | st.lists(JSON_VALUES, min_size=1, max_size=4).map(lambda v: {"enum": v})
    | JSON_VALUES.map(lambda v: {"const": v})
    | st.just({"type": ["string", "null"], "maxLength": 5})
    | st.just({"type": "integer", "minimum": 0, "maximum": 9, "not": {"const": 4}})
    | st.just({"type": "string", "not": {"enum": ["", "a"]}, "maxLength": 3})
    | st.just(
        {"if": {"type": "string"}, "then": {"minLength": 2}, "else": {"type": "null"}}
    )
)
# Item schemas with many values, so that uniqueItems is always satisfiable.
RICH_ITEMS = st.sampled_from(
    [
        {"type": "string", "minLength": 4},
        {"type": "integer", "minimum": 0, "maximum": 10000},
        {"type": "string", "format": "uuid"},
        {
            "type": "object",
            "properties": {"id": {"type": "integer"}},
            "required": ["id"],
        },
    ]
)


def composites(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return (
        objects(children)
        | arrays(children)
        | st.lists(children, min_size=1, max_size=3).map(lambda b: {"anyOf": b})
        | one_ofs(children)
        | all_ofs(children)
        | st.tuples(children, st.text(max_size=8)).map(
            lambda t: {"allOf": [t[0]], "description": t[1]}
        )
    )


@st.composite
def objects(draw: st.DrawFn, children: st.SearchStrategy[Any]) -> dict[str, Any]:
    props = draw(st.dictionaries(NAMES, children, max_size=4))
    required = [k for k in props if draw(st.booleans())]
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    extra = draw(st.sampled_from(["absent", "false", "true", "schema"]))
    if extra == "false":
        schema["additionalProperties"] = False
    elif extra == "true":
        schema["additionalProperties"] = True
    elif extra == "schema":
        schema["additionalProperties"] = draw(children)
    if draw(st.booleans()):
        top = len(props) if extra == "false" else len(props) + 2
        schema["minProperties"] = draw(st.integers(0, top))
    if draw(st.booleans()):
        schema["maxProperties"] = max(len(required), schema.get("minProperties", 0))
        schema["maxProperties"] += draw(st.integers(0, 2))
    if extra == "absent" and draw(st.integers(0, 4)) == 0:
        schema["patternProperties"] = {"^x_[a-z]+$": draw(children)}
        schema["minProperties"] = len(required) + 1
        schema.pop("maxProperties", None)
    return schema


@st.composite
def arrays(draw: st.DrawFn, children: st.SearchStrategy[Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array"}
    if draw(st.integers(0, 3)) == 0:
        schema["items"] = draw(RICH_ITEMS)
        schema["uniqueItems"] = True
    else:
        prefix = draw(st.lists(children, max_size=2))
        if prefix:
            schema["prefixItems"] = prefix
        tail = draw(st.sampled_from(["schema", "absent", "false"]))
        if tail == "schema":
            schema["items"] = draw(children)
        elif tail == "false":
            schema["items"] = False
    lo = draw(st.integers(0, 3))
    if schema.get("items") is False:
        lo = min(lo, len(schema.get("prefixItems", [])))
    if draw(st.booleans()):
        schema["minItems"] = lo
    if draw(st.booleans()):
        schema["maxItems"] = lo + draw(st.integers(0, 3))
    return schema


@st.composite
def one_ofs(draw: st.DrawFn, children: st.SearchStrategy[Any]) -> dict[str, Any]:
    """Branches of distinct types, so exactly one can match."""
    kinds = draw(
        st.lists(
            st.sampled_from(
                ["null", "boolean", "string", "integer", "array", "object"]
            ),
            min_size=1,
            max_size=3,
            unique=True,
        )
    )
    branches: list[dict[str, Any]] = []
    for kind in kinds:
        if kind == "object":
            branches.append(draw(objects(children)))
        elif kind == "array":
            branches.append({"type": "array", "items": draw(children), "maxItems": 2})
        elif kind == "integer":
            branches.append(draw(integer_schemas()))
        elif kind == "string":
            branches.append(draw(string_schemas()))
        else:
            branches.append({"type": kind})
    return {"oneOf": branches}


@st.composite
def all_ofs(draw: st.DrawFn, children: st.SearchStrategy[Any]) -> dict[str, Any]:
    """Conjunctions that agree: split objects, split bounds, a no-op member."""
    kind = draw(st.sampled_from(["object", "bounds", "noop"]))
    if kind == "object":
        a, b = draw(children), draw(children)
        return {
            "allOf": [
                {"type": "object", "properties": {"a": a}, "required": ["a"]},
                {"properties": {"b": b}, "required": ["b"]},
            ]
        }
    if kind == "bounds":
        lo = draw(st.integers(-50, 50))
        return {
            "allOf": [
                {"type": ["integer", "string"], "minimum": lo},
                {"type": "integer", "maximum": lo + draw(st.integers(0, 20))},
            ]
        }
    return {"allOf": [draw(children), {}]}


def trees(extra: st.SearchStrategy[Any] | None = None) -> st.SearchStrategy[Any]:
    leaves = LEAVES if extra is None else st.one_of(LEAVES, *[extra] * 4)
    return st.recursive(leaves, composites, max_leaves=8)


def recursive(tree: Any, shape: int) -> dict[str, Any]:
    """Wrap a schema in a recursive one that can always end."""
    if shape == 0:  # a tree node
        node = {
            "type": "object",
            "properties": {
                "value": tree,
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}},
            },
            "required": ["value", "children"],
        }
        return {"$defs": {"node": node}, "$ref": "#/$defs/node"}
    if shape == 1:  # nested lists of values
        return {
            "anyOf": [tree, {"type": "array", "items": {"$ref": "#"}, "maxItems": 3}]
        }
    # a linked list, the end marked by null
    return {
        "type": "object",
        "properties": {
            "head": tree,
            "tail": {"oneOf": [{"type": "null"}, {"$ref": "#"}]},
        },
        "required": ["head", "tail"],
        "additionalProperties": False,
    }


@st.composite
def schemas(draw: st.DrawFn) -> Any:
    """A root schema, sometimes with $defs (or definitions) that it references."""
    if draw(st.integers(0, 5)) == 0:
        return recursive(draw(trees()), draw(st.integers(0, 2)))
    defs = draw(st.lists(trees(), max_size=3))
    if not defs:
        return draw(trees())
    where = draw(st.sampled_from(["$defs", "definitions"]))
    refs = st.sampled_from(
        [{"$ref": f"#/{where}/d{i}"} for i in range(len(defs))]
        + [{"$ref": f"#/{where}/d0", "description": "a reference"}]
    )
    root = draw(trees(refs))
    return {"allOf": [root], where: {f"d{i}": d for i, d in enumerate(defs)}}


class PropertyTests(SynchronousTestCase):
    @SETTINGS
    @given(schemas(), st.integers(0, 2**32))
    def test_generated_instances_validate(self, schema: Any, seed: int) -> None:
        schema_gen._VERDICTS.clear()  # the same choices with or without a verdict
        instance = generate(schema, random.Random(seed))
        assert_valid(schema, instance)
        check_schema(schema)
        self.assertEqual(generate(schema, random.Random(seed)), instance)

    @settings(SETTINGS, max_examples=150)
    @given(st.data())
    def test_patterns_in_the_subset(self, data: st.DataObject) -> None:
        pattern = data.draw(regexes())
        for anchored in (f"^(?:{pattern})$", pattern):
            schema = {"type": "string", "pattern": anchored}
            value = generate(schema, random.Random(data.draw(st.integers(0, 99))))
            self.assertIsNotNone(re.search(anchored, value), (anchored, value))


REGEX_ATOMS = [
    *("a", "b", "x", "0", r"\.", "-", "@", " "),
    *("[a-z]", "[0-9A-F]", "[^a-z]", r"[\w.-]", "[^0-9 ]"),
    *(r"\d", r"\w", r"\s", r"\S", "."),
]


def regexes() -> st.SearchStrategy[str]:
    """Patterns built from the supported subset."""
    atoms = st.sampled_from(REGEX_ATOMS)
    quantifiers = st.sampled_from(["", "", "?", "*", "+", "{2}", "{1,3}", "{2,}"])
    quantified = st.tuples(atoms, quantifiers).map("".join)

    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return (
            st.lists(inner, min_size=1, max_size=4).map("".join)
            | st.tuples(inner, inner).map(lambda t: f"(?:{t[0]}|{t[1]})")
            | st.tuples(inner, quantifiers).map(lambda t: f"({t[0]}){t[1]}")
        )

    return st.recursive(quantified, extend, max_leaves=6)


# -- recursion -----------------------------------------------------------------

TREE = {
    "type": "object",
    "properties": {
        "value": {"type": "integer"},
        "children": {"type": "array", "items": {"$ref": "#"}},
    },
    "required": ["value", "children"],
}
LINKED_LIST = {
    "$defs": {
        "node": {
            "type": "object",
            "properties": {
                "value": {"type": "string"},
                "next": {"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]},
            },
            "required": ["value", "next"],
            "additionalProperties": False,
        }
    },
    "$ref": "#/$defs/node",
}
MUTUAL = {
    "definitions": {
        "a": {
            "type": "object",
            "properties": {"b": {"$ref": "#/definitions/b"}},
            "required": ["b"],
        },
        "b": {
            "type": "object",
            "properties": {"a": {"$ref": "#/definitions/a"}, "leaf": {"type": "null"}},
            "minProperties": 1,
        },
    },
    "$ref": "#/definitions/a",
}
EXPRESSION = {
    "$defs": {
        "expr": {
            "oneOf": [
                {"type": "number"},
                {
                    "type": "object",
                    "properties": {
                        "op": {"enum": ["+", "-", "*"]},
                        "args": {
                            "type": "array",
                            "items": {"$ref": "#/$defs/expr"},
                            "minItems": 2,
                            "maxItems": 2,
                        },
                    },
                    "required": ["op", "args"],
                    "additionalProperties": False,
                },
            ]
        }
    },
    "$ref": "#/$defs/expr",
}


class RecursionTests(SynchronousTestCase):
    def test_recursive_schemas_terminate(self) -> None:
        for schema in (TREE, LINKED_LIST, MUTUAL, EXPRESSION):
            sizes = []
            for seed in range(40):
                instance = generate(schema, random.Random(seed))
                assert_valid(schema, instance)
                sizes.append(len(json.dumps(instance)))
            self.assertLess(max(sizes), 20_000, schema)
            self.assertGreater(len(set(sizes)), 1, "always the same size")

    def test_recursion_goes_a_few_levels_deep(self) -> None:
        def depth(node: dict[str, Any]) -> int:
            return 1 + max((depth(c) for c in node["children"]), default=0)

        deepest = max(depth(generate(TREE, random.Random(s))) for s in range(20))
        self.assertGreaterEqual(deepest, 3)

    def test_endless_recursion_is_an_error(self) -> None:
        endless = {
            "type": "object",
            "required": ["next"],
            "properties": {"next": {"$ref": "#"}},
        }
        with self.assertRaises(SchemaError) as caught:
            generate(endless, random.Random(0))
        self.assertIn("#/properties/next", str(caught.exception))
        self.assertIn("recursive", str(caught.exception))


# -- pydantic models, as client.chat.completions.parse() sends them -------------


class Color(str, Enum):
    red = "red"
    green = "green"
    blue = "blue"


class Address(BaseModel):
    street: str
    city: str
    zip_code: str = Field(pattern=r"^\d{5}$")
    country: str


class Person(BaseModel):
    first_name: str
    last_name: str
    email: str
    age: int = Field(ge=0, le=130)
    address: Optional[Address]  # noqa: UP045 - pydantic users write both spellings
    nicknames: list[str]
    favorite: Color
    kind: Literal["customer", "employee"]
    born: date
    created_at: datetime
    balance: float
    bio: str | None = None
    scores: dict[str, int] = {}


class Step(BaseModel):
    explanation: str
    output: str


class MathReasoning(BaseModel):
    steps: list[Step]
    final_answer: str


class Event(BaseModel):
    name: str
    date: str
    participants: list[str]


class Product(BaseModel):
    sku: str = Field(min_length=3, max_length=12)
    title: str = Field(max_length=60)
    price: float = Field(gt=0, le=10_000)
    quantity: int = Field(ge=1, multiple_of=5)
    tags: list[str] = Field(max_length=3)
    dimensions: tuple[float, float, float]
    rating: Optional[float] = Field(default=None, ge=0, le=5)  # noqa: UP045


class Comment(BaseModel):
    author: str
    text: str
    replies: list[Comment] = []


class Payment(BaseModel):
    method: Literal["card", "cash"] | None
    amount: float
    paid: bool


class Order(BaseModel):
    id: int
    customer: Person
    products: list[Product]
    payment: Payment | Literal["invoice"]
    notes: Optional[str]  # noqa: UP045


class Network(BaseModel):
    host: IPvAnyAddress
    subnet: IPvAnyNetwork
    interface: IPvAnyInterface
    v4: IPv4Network
    v6: IPv6Interface
    homepage: HttpUrl
    key: UUID4
    legacy_key: UUID1
    secret: SecretStr
    blob: Base64Str
    raw: bytes
    timeout: timedelta
    opens_at: time
    budget: Decimal
    extra: Any
    numbers: frozenset[int]


MODELS: list[type[BaseModel]] = [
    Person,
    MathReasoning,
    Event,
    Product,
    Comment,
    Order,
    Network,
]


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The schema the openai SDK sends for ``parse(response_format=model)``."""
    try:
        from openai.lib._pydantic import to_strict_json_schema
    except ImportError:  # a private module: fall back to pydantic's own schema
        return model.model_json_schema()
    return to_strict_json_schema(model)


class PydanticTests(SynchronousTestCase):
    def test_models_round_trip(self) -> None:
        for model in MODELS:
            for schema in (model.model_json_schema(), strict_schema(model)):
                check_schema(schema)
                for seed in range(15):
                    instance = generate(
                        schema, random.Random(seed), name=model.__name__
                    )
                    assert_valid(schema, instance)
                    model.model_validate(instance)

    def test_decimal_without_a_pattern_gets_a_number(self) -> None:
        # pydantic >= 2.14 spells Decimal as a number or any string; its
        # validator accepts only numeric strings, so the number is chosen.
        schema = {
            "type": "object",
            "properties": {
                "budget": {"anyOf": [{"type": "number"}, {"type": "string"}]}
            },
            "required": ["budget"],
        }
        for seed in range(40):
            value = generate(schema, random.Random(seed))["budget"]
            self.assertIsInstance(value, (int, float))
        either = {"anyOf": [{"type": "number"}, {"type": "string"}]}
        self.assertIsInstance(
            generate({**either, "not": {"type": "number"}}, random.Random(1)), str
        )

    def test_plausible_values(self) -> None:
        schema = strict_schema(Person)
        for seed in range(10):
            person = generate(schema, random.Random(seed))
            self.assertRegex(person["email"], r"^[a-z]+\.[a-z]+@[a-z]+\.[a-z]+$")
            self.assertRegex(person["first_name"], r"^[A-Z][a-z]+$")
            self.assertTrue(18 <= person["age"] <= 80, person["age"])
            self.assertEqual(round(person["balance"], 2), person["balance"])
            if person["address"] is not None:
                self.assertRegex(person["address"]["zip_code"], r"^\d{5}$")
                city = person["address"]["city"]
                self.assertRegex(city, r"^[A-Z][a-z]+( [A-Z][a-z]+)?$")
        reasoning = generate(strict_schema(MathReasoning), random.Random(3))
        self.assertTrue(reasoning["steps"])
        for step in reasoning["steps"]:
            self.assertTrue(step["explanation"].endswith("."), step)

    def test_optional_fields_are_mostly_filled(self) -> None:
        schema = strict_schema(Person)
        filled = sum(
            generate(schema, random.Random(s))["address"] is not None for s in range(40)
        )
        self.assertGreater(filled, 20)


# -- determinism, formats, numbers, strings ----------------------------------


class DeterminismTests(SynchronousTestCase):
    def test_same_seed_same_instance(self) -> None:
        schema = strict_schema(Order)
        first = [generate(schema, random.Random(s)) for s in range(5)]
        again = [generate(schema, random.Random(s)) for s in range(5)]
        self.assertEqual(first, again)
        self.assertGreater(len({json.dumps(f, sort_keys=True) for f in first}), 1)

    def test_same_seed_same_instance_in_other_processes(self) -> None:
        """No dependence on hash randomization (set or dict-of-set order)."""
        script = (
            "import json, random, sys\n"
            "from mockai_tw.engine.schema_gen import generate\n"
            "schema = json.load(sys.stdin)\n"
            "print(json.dumps([generate(schema, random.Random(s)) for s in range(5)]))"
        )
        schema = json.dumps(strict_schema(Order))
        here = str(Path(mockai_tw.__file__).resolve().parents[1])
        path = os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])
        outputs = set()
        for hash_seed in ("1", "2", "3"):
            done = subprocess.run(
                [sys.executable, "-c", script],
                input=schema,
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": path},
            )
            outputs.add(done.stdout)
        self.assertEqual(len(outputs), 1)

    def test_the_rng_advances(self) -> None:
        rng = random.Random(7)
        schema = {"type": "string", "format": "uuid"}
        self.assertNotEqual(generate(schema, rng), generate(schema, rng))


class ValueTests(SynchronousTestCase):
    def check(self, schema: Any, seeds: int = 30) -> list[Any]:
        out = []
        for seed in range(seeds):
            instance = generate(schema, random.Random(seed))
            assert_valid(schema, instance)
            out.append(instance)
        return out

    def test_formats(self) -> None:
        for fmt in [
            *CLAIMED_FORMATS,
            "iri",
            "idn-email",
            "idn-hostname",
            "json-pointer",
        ]:
            self.check({"type": "string", "format": fmt})
        for value in self.check({"type": "string", "format": "ipv4"}):
            ipaddress.IPv4Address(value)

    def test_format_with_length(self) -> None:
        self.check({"type": "string", "format": "email", "maxLength": 40})
        self.check(
            {"type": "string", "format": "date", "minLength": 10, "maxLength": 10}
        )

    def test_numbers(self) -> None:
        self.check(
            {"type": "number", "multipleOf": 0.01, "minimum": 0, "maximum": 1000}
        )
        self.check({"type": "number", "multipleOf": 0.1, "exclusiveMinimum": 0.3})
        self.check({"type": "integer", "multipleOf": 0.5, "minimum": -3, "maximum": 3})
        self.check({"type": "integer", "multipleOf": 7, "exclusiveMaximum": -1000})
        self.check(
            {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1e-300}
        )
        self.check({"type": "integer", "minimum": 10**15, "maximum": 10**15 + 2})
        self.check({"type": "number", "minimum": 2.5, "maximum": 2.5})
        self.check({"allOf": [{"multipleOf": 4}, {"multipleOf": 6}], "type": "integer"})

    def test_strings(self) -> None:
        self.check({"type": "string", "minLength": 50})
        self.check({"type": "string", "maxLength": 0})
        self.check({"type": "string", "pattern": r"\d{3}", "minLength": 12})
        self.check({"type": "string", "pattern": "^[a-z]+$", "minLength": 30})
        self.check({"type": "string", "pattern": r"^[A-Z]\w*$", "maxLength": 2})
        self.check({"type": "string", "pattern": "(?i)^abc$"})  # outside the subset
        self.check({"allOf": [{"pattern": "a"}, {"pattern": "b"}], "type": "string"})

    def test_objects_and_arrays(self) -> None:
        self.check({"type": "object", "minProperties": 3, "maxProperties": 3})
        self.check(
            {
                "type": "object",
                "patternProperties": {"^S_": {"type": "string"}},
                "additionalProperties": False,
                "minProperties": 2,
            }
        )
        self.check(
            {
                "type": "object",
                "propertyNames": {"pattern": "^[a-z]{3}$"},
                "minProperties": 2,
            }
        )
        self.check(
            {
                "type": "object",
                "properties": {"a": {"type": "integer"}, "b": {"type": "string"}},
                "dependentRequired": {"a": ["b"]},
            }
        )
        self.check({"type": "array", "contains": {"const": 7}, "maxItems": 3})
        self.check(
            {
                "type": "array",
                "prefixItems": [{"type": "string"}, {"type": "integer"}],
                "items": False,
                "minItems": 2,
            }
        )
        self.check({"type": "array", "items": {"enum": [1, 2, 3]}, "uniqueItems": True})
        self.check({"type": ["array", "object"], "unevaluatedProperties": False})

    def test_anchors_and_pointer_escapes(self) -> None:
        self.check(
            {
                "$defs": {
                    "a/b": {"type": "integer"},
                    "c": {"$anchor": "x", "type": "null"},
                },
                "properties": {
                    "p": {"$ref": "#/$defs/a~1b"},
                    "q": {"$ref": "#x"},
                },
                "required": ["p", "q"],
                "type": "object",
            }
        )

    def test_true_root_and_name_hint(self) -> None:
        self.check(True)
        self.check({})
        email = generate({"type": "string"}, random.Random(1), name="contact_email")
        self.assertIn("@", email)


# -- errors ----------------------------------------------------------------------

UNSATISFIABLE: list[tuple[Any, str]] = [
    ({"type": "integer", "minimum": 10, "maximum": 5}, "#: minimum 10 is greater"),
    (
        {
            "type": "object",
            "properties": {"a": {"type": "number", "minimum": 3, "maximum": 1}},
            "required": ["a"],
        },
        "#/properties/a: minimum 3",
    ),
    (
        {"type": "array", "minItems": 3, "maxItems": 1},
        "minItems 3 is greater than maxItems 1",
    ),
    ({"type": "string", "minLength": 5, "maxLength": 2}, "minLength 5"),
    ({"type": "object", "minProperties": 3, "maxProperties": 1}, "minProperties 3"),
    ({"enum": []}, "#/enum: enum is empty"),
    (False, "#: the schema is false"),
    (
        {"type": "integer", "const": "x"},
        "#/const: const 'x' does not match type integer",
    ),
    ({"type": "string", "enum": [1, 2]}, "no enum value matches type string"),
    (
        {
            "type": "object",
            "properties": {"a": {}},
            "required": ["b"],
            "additionalProperties": False,
        },
        "required property 'b' is not allowed",
    ),
    (
        {
            "type": "object",
            "properties": {"x": {"type": "array", "items": False, "minItems": 1}},
            "required": ["x"],
        },
        "#/properties/x: minItems 1",
    ),
    ({"type": "integer", "minimum": 1.2, "maximum": 1.8}, "no integer"),
    ({"type": "number", "exclusiveMinimum": 1, "maximum": 1}, "leave no number"),
    ({"type": "integer", "multipleOf": 7, "minimum": 1, "maximum": 6}, "multiple of 7"),
    ({"anyOf": [{"type": "integer", "minimum": 2, "maximum": 1}, False]}, "#/anyOf"),
    ({"allOf": [{"type": "string"}, {"type": "integer"}]}, "type"),
    (
        {"$defs": {"n": {"type": "null", "const": 1}}, "$ref": "#/$defs/n"},
        "#/$defs/n/const",
    ),
    (
        {"type": "object", "required": ["a", "b"], "maxProperties": 1},
        "maxProperties is 1",
    ),
    ({"not": {}}, "#/not"),
]
# Unsatisfiable in ways only generation finds out.
UNGENERATABLE: list[tuple[Any, str]] = [
    (
        {"type": "object", "required": ["next"], "properties": {"next": {"$ref": "#"}}},
        "#/properties/next",
    ),
    (
        {
            "type": "array",
            "items": {"enum": [1, 2]},
            "minItems": 3,
            "uniqueItems": True,
        },
        "3 distinct items",
    ),
    ({"oneOf": [{"type": "string"}, {"type": "string"}]}, "#"),
    ({"type": "integer", "minimum": 0, "maximum": 1, "not": {"enum": [0, 1]}}, "#"),
]
INVALID: list[tuple[Any, str]] = [
    ({"type": "strin"}, "invalid schema at #/type"),
    ({"minimum": "1"}, "invalid schema at #/minimum"),
    (
        {"properties": {"a": {"pattern": "("}}},
        "invalid schema at #/properties/a/pattern",
    ),
    ({"$ref": "#/$defs/missing"}, "does not resolve"),
    ({"$ref": "https://example.com/schema.json"}, "not local"),
    ({"items": {"$ref": "#nowhere"}}, "#/items"),
    (5, "invalid schema at #"),
    (None, "invalid schema at #"),
    ({"required": "a"}, "#/required"),
]


class ErrorTests(SynchronousTestCase):
    def assert_error(self, schema: Any, expected: str, *, static: bool) -> None:
        with self.assertRaises(SchemaError) as caught:
            generate(schema, random.Random(0))
        message = str(caught.exception)
        self.assertIn(expected, message)
        self.assertNotIn("\n", message)
        self.assertIs(type(caught.exception), SchemaError)
        if static:
            with self.assertRaises(SchemaError) as again:
                check_schema(schema)
            self.assertEqual(str(again.exception), message)

    def test_unsatisfiable(self) -> None:
        for schema, expected in UNSATISFIABLE:
            self.assert_error(schema, expected, static=True)
            self.assertIn("unsatisfiable schema at #", expected_message(schema))

    def test_not_generatable(self) -> None:
        for schema, expected in UNGENERATABLE:
            check_schema(schema)  # not detectable cheaply: only generate() says
            self.assert_error(schema, expected, static=False)

    def test_invalid(self) -> None:
        for schema, expected in INVALID:
            self.assert_error(schema, expected, static=True)

    def test_satisfiable_despite_contradictions_elsewhere(self) -> None:
        """Constraints for other types, or an unused branch, do not count."""
        for schema in (
            {"minimum": 5, "maximum": 1},
            {
                "anyOf": [
                    {"type": "integer", "minimum": 5, "maximum": 1},
                    {"type": "null"},
                ]
            },
            {"type": ["integer", "string"], "minimum": 5, "maximum": 1},
            {"type": "object", "properties": {"a": False}},
        ):
            check_schema(schema)
            assert_valid(schema, generate(schema, random.Random(0)))

    def test_verdicts_are_remembered(self) -> None:
        schema = {"type": "integer", "minimum": 3, "maximum": 2}
        for _ in range(2):
            self.assertRaises(SchemaError, check_schema, schema)
            self.assertRaises(SchemaError, generate, schema, random.Random(0))


# -- nesting depth: bounded, measured without recursion ----------------------

# One schema level around ``s``, per keyword that holds subschemas.
WRAPPERS: dict[str, Callable[[Any], Any]] = {
    "properties": lambda s: {
        "type": "object",
        "properties": {"a": s},
        "required": ["a"],
    },
    "items": lambda s: {"type": "array", "items": s, "minItems": 1},
    "prefixItems": lambda s: {"type": "array", "prefixItems": [s], "minItems": 1},
    "additionalProperties": lambda s: {
        "type": "object",
        "additionalProperties": s,
        "minProperties": 1,
    },
    "anyOf": lambda s: {"anyOf": [s]},
    "allOf": lambda s: {"allOf": [s]},
    "oneOf": lambda s: {"oneOf": [s]},
    "nullable": lambda s: {"anyOf": [s, {"type": "null"}]},
}
# Keywords generation does not descend the same way: only checked.
CHECK_ONLY: dict[str, Callable[[Any], Any]] = {
    "$defs": lambda s: {"$defs": {"a": s}},
    "not": lambda s: {"not": s},
    "dependentSchemas": lambda s: {"dependentSchemas": {"a": s}},
    "patternProperties": lambda s: {"patternProperties": {"^a": s}},
}


def chain(wrap: Callable[[Any], Any], levels: int) -> Any:
    """A schema ``levels`` deep: a string schema wrapped ``levels - 1`` times."""
    schema: Any = {"type": "string"}
    for _ in range(levels - 1):
        schema = wrap(schema)
    return schema


def nested_list(levels: int) -> list[Any]:
    """``[[[...]]]``, ``levels`` arrays deep (built without recursion)."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def json_depth(value: Any) -> int:
    """How many objects and arrays deep a JSON value nests."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return deepest


def on_a_deep_stack(frames: int, f: Callable[..., T], *args: Any) -> T:
    """``f(*args)`` below ``frames`` more frames, as the server's stack would be."""
    if frames == 0:
        return f(*args)
    return on_a_deep_stack(frames - 1, f, *args)


def rng(seed: int = 0) -> random.Random:
    return random.Random(seed)


# The server calls check_schema about 50 frames deep; allow twice that.
SERVER_STACK = 100


class DepthTests(SynchronousTestCase):
    def assert_too_deep(self, schema: Any, levels: int) -> None:
        for call in (check_depth, check_schema, lambda s: generate(s, rng())):
            with self.assertRaises(SchemaError) as caught:
                call(schema)
            message = str(caught.exception)
            self.assertIs(type(caught.exception), SchemaError)
            self.assertIn(f"nested {levels} levels deep", message)
            self.assertIn(f"the limit is {MAX_SCHEMA_DEPTH}", message)
            self.assertNotIn("\n", message)

    def test_the_bound(self) -> None:
        # well above the 10 levels of OpenAI's strict mode, well inside the stack
        self.assertEqual(MAX_SCHEMA_DEPTH, 64)

    def test_depth_counts_schemas_and_values(self) -> None:
        self.assertEqual(schema_depth(True), 0)
        self.assertEqual(schema_depth({}), 1)
        self.assertEqual(schema_depth({"type": "string"}), 1)
        for wrap in (*WRAPPERS.values(), *CHECK_ONLY.values()):
            self.assertEqual(schema_depth(chain(wrap, 5)), 5)
        # the properties map and the anyOf list are no level of their own ...
        self.assertEqual(schema_depth({"properties": {"properties": {}}}), 2)
        self.assertEqual(schema_depth({"anyOf": [{"anyOf": []}]}), 2)
        # ... but every object and array inside a value is
        self.assertEqual(schema_depth({"const": nested_list(3)}), 4)
        self.assertEqual(schema_depth({"enum": [{"a": [1]}]}), 4)
        self.assertEqual(schema_depth({"x-vendor": {"properties": {"a": {}}}}), 4)
        self.assertEqual(schema_depth({"anyOf": {"a": {}}}), 3)  # not a list
        self.assertEqual(schema_depth(nested_list(7)), 7)

    def test_too_deep_is_a_schema_error(self) -> None:
        for wrap in (*WRAPPERS.values(), *CHECK_ONLY.values()):
            for levels in (MAX_SCHEMA_DEPTH + 1, 100, 2_000):
                self.assert_too_deep(chain(wrap, levels), levels)
        self.assert_too_deep(chain(WRAPPERS["properties"], 100_000), 100_000)

    def test_deep_values_are_too_deep(self) -> None:
        for levels in (MAX_SCHEMA_DEPTH + 1, 5_000):
            data = nested_list(levels - 1)
            for schema in ({"const": data}, {"enum": [data[0]]}, {"default": data}):
                self.assert_too_deep(schema, levels)
            self.assert_too_deep({"x-vendor": data}, levels)
            self.assert_too_deep(nested_list(levels), levels)

    def test_at_the_bound_check_and_generate_work(self) -> None:
        for kind, wrap in WRAPPERS.items():
            schema = chain(wrap, MAX_SCHEMA_DEPTH)
            self.assertEqual(schema_depth(schema), MAX_SCHEMA_DEPTH)
            check_depth(schema)
            for seed in range(2):
                schema_gen._VERDICTS.clear()
                on_a_deep_stack(SERVER_STACK, check_schema, schema)
                schema_gen._VERDICTS.clear()
                instance = on_a_deep_stack(SERVER_STACK, generate, schema, rng(seed))
                assert_valid(schema, instance)
                if kind in ("properties", "items", "prefixItems"):
                    self.assertEqual(json_depth(instance), MAX_SCHEMA_DEPTH - 1)
        for wrap in CHECK_ONLY.values():
            schema_gen._VERDICTS.clear()
            on_a_deep_stack(SERVER_STACK, check_schema, chain(wrap, MAX_SCHEMA_DEPTH))
        data = nested_list(MAX_SCHEMA_DEPTH - 1)
        for schema in ({"const": data, "default": data}, {"enum": [data[0]]}):
            schema_gen._VERDICTS.clear()
            instance = on_a_deep_stack(SERVER_STACK, generate, schema, rng())
            assert_valid(schema, instance)

    def test_recursion_errors_become_schema_errors(self) -> None:
        """Long $ref chains pass the depth bound; following them must not 500."""

        def refs_chain(n: int, step: Callable[[str], Any]) -> dict[str, Any]:
            defs = {f"d{i}": step(f"#/$defs/d{i + 1}") for i in range(n)}
            defs[f"d{n}"] = {"type": "string"}
            return {"$defs": defs, "$ref": "#/$defs/d0"}

        # followed by check_schema itself
        by_ref = refs_chain(600, lambda ref: {"$ref": ref})
        self.assertEqual(schema_depth(by_ref), 2)
        for _ in range(2):  # and again: such a verdict is not remembered
            for call in (check_schema, lambda s: generate(s, rng())):
                with self.assertRaises(SchemaError) as caught:
                    call(by_ref)
                self.assertIs(type(caught.exception), SchemaError)
                self.assertIn("nests too deeply", str(caught.exception))
        # only followed by jsonschema, validating what was generated; where
        # the stack runs out varies with its depth (in Rust code for some)
        by_not = refs_chain(400, lambda ref: {"not": {"$ref": ref}})
        check_schema(by_not)
        for frames in range(10):
            with self.assertRaises(SchemaError) as caught:
                on_a_deep_stack(frames, generate, by_not, rng())
            self.assertIs(type(caught.exception), SchemaError)
            self.assertIn("nests too deeply", str(caught.exception))


# -- tools without parameters; undeclared properties --------------------------


class UndeclaredPropertyTests(SynchronousTestCase):
    def test_no_properties_no_arguments(self) -> None:
        """LangChain's magic_function_no_args: a model answers {}."""
        for schema in (
            {"type": "object", "properties": {}},
            {"type": "object"},
            {"type": "object", "properties": {}, "required": []},
            {"type": "object", "properties": {}, "additionalProperties": True},
            {"type": "object", "additionalProperties": {"type": "string"}},
            {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"}},
            {"type": "object", "unevaluatedProperties": {"type": "integer"}},
        ):
            for seed in range(60):
                self.assertEqual(generate(schema, rng(seed)), {}, (schema, seed))

    def test_only_declared_properties(self) -> None:
        schema = {
            "type": "object",
            "properties": {
                "a": {"type": "integer"},
                "inner": {"type": "object", "properties": {}},
                "free": {"type": "object"},
                "b": {"type": "object", "properties": {"c": {"type": "string"}}},
            },
            "required": ["inner", "free"],
        }
        for seed in range(60):
            value = generate(schema, rng(seed))
            self.assertLessEqual(set(value), {"a", "inner", "free", "b"})
            self.assertEqual(value["inner"], {})
            self.assertEqual(value["free"], {})
            self.assertLessEqual(set(value.get("b", {})), {"c"})
        required_only = {"type": "object", "required": ["x"]}
        for seed in range(20):
            self.assertEqual(set(generate(required_only, rng(seed))), {"x"})

    def test_min_properties_beyond_the_declared_ones(self) -> None:
        schema = {
            "type": "object",
            "properties": {"a": {"type": "integer"}},
            "minProperties": 3,
        }
        for seed in range(30):
            value = generate(schema, rng(seed))
            assert_valid(schema, value)
            self.assertGreaterEqual(len(value), 3)
            self.assertIn("a", value)  # the declared ones first
        self.assertEqual(
            len(generate({"type": "object", "minProperties": 2}, rng())), 2
        )

    def test_pattern_properties_name_their_keys(self) -> None:
        """A patternProperties map declares its keys by pattern, and only those."""
        for extra in ({}, {"additionalProperties": True}, {"minProperties": 1}):
            schema = {
                "type": "object",
                "patternProperties": {"^S_[a-z]+$": {"type": "string"}},
                **extra,
            }
            sizes = set()
            for seed in range(60):
                value = generate(schema, rng(seed))
                assert_valid(schema, value)
                for key in value:
                    self.assertRegex(key, "^S_[a-z]+$")
                sizes.add(len(value))
            self.assertTrue(sizes - {0}, schema)  # a map gets some entries
        declared = {
            "type": "object",
            "properties": {"a": {"type": "integer"}},
            "patternProperties": {"^S_": {"type": "string"}},
        }
        for seed in range(30):
            self.assertLessEqual(set(generate(declared, rng(seed))), {"a"})


def expected_message(schema: Any) -> str:
    try:
        check_schema(schema)
    except SchemaError as exc:
        return str(exc)
    return ""
