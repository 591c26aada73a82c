"""Request bodies read with the shared checks, a failure worded as OpenAI words it.

``mockai_tw.checks`` says what is wrong with a value; ``as_api_error`` says it
as the real service does (its sentence, the param, the code), so a client
sees OpenAI's 400s.  Also the body's parsing and its integer literals.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

from mockai_tw import checks
from mockai_tw.checks import INTEGER, LIST, MAPPING, Problem
from mockai_tw.errors import ApiError, invalid

_JSON_HINT = (
    "We could not parse the JSON body of your request. (HINT: This likely means"
    " you aren't using your HTTP library correctly. The OpenAI API expects a JSON"
    " payload, but what was sent was not valid JSON. If you have trouble figuring"
    " out how to fix this, please contact us through our help center at"
    " help.openai.com.)"
)

_KIND = {
    "string": "a string",
    "integer": "an integer",
    "number": "a decimal number",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
}


def json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# Where OpenAI's reference gives no bound, a count is an int32 and a seed an
# int64, as the real service stores them.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# orjson reads an integer literal outside [-2**63, 2**64) as a float.
_ORJSON_INTS = 2**63


class _IntegerLiteral(str):
    """An integer literal's text, as the standard library's reader hands it on."""


class Source:
    """The body as sent, for the integers orjson cannot hold.

    Parsed by orjson, ``18446744073709551616`` and ``1.8446744073709552e19``
    are the same float; OpenAI answers the first with a range error and the
    second with a type error.  Only such an out-of-range value needs to know
    which it was, so only then is the body read again, by the standard
    library, keeping each integer literal's text.
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self._exact: Any = None
        self._read = False

    def integer_literal(self, path: Sequence[str | int]) -> str | None:
        """The text at ``path`` if the body has an integer literal there."""
        if not self._read:
            self._read = True
            try:
                self._exact = json.loads(self.data, parse_int=_IntegerLiteral)
            except (ValueError, RecursionError):
                self._exact = None
        node = self._exact
        for step in path:
            try:
                node = node[step]
            except (KeyError, IndexError, TypeError):
                return None
        return node if isinstance(node, _IntegerLiteral) else None


def parse_body(body: bytes, default_model: str | None = None) -> dict[str, Any]:
    """The request body as a JSON object, or the 400 OpenAI sends.

    ``default_model`` fills an absent ``model`` (Azure names it in the path).
    """
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, _JSON_HINT) from None
    if not isinstance(value, dict):
        # The body itself is no param.
        raise dataclasses.replace(wrong_type("body", "an object", value), param=None)
    if default_model is not None and value.get("model") in (None, ""):
        value["model"] = default_model
    return value


def wrong_type(param: str, expected: str, value: Any) -> ApiError:
    got = json_kind(value)
    return invalid(
        f"Invalid type for '{param}': expected {expected}, but got"
        f" {_KIND.get(got, got)} instead.",
        param=param,
        code="invalid_type",
    )


def missing(param: str) -> ApiError:
    return invalid(
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def out_of_range(param: str, message: str) -> ApiError:
    return invalid(f"Invalid '{param}': {message}", param=param, code="invalid_value")


#: How OpenAI names what a value had to be; another ``expected`` is a phrase.
_EXPECTED = {
    checks.STRING: "a string",
    checks.INTEGER: "an integer",
    checks.NUMBER: "a number",
    checks.BOOLEAN: "a boolean",
    checks.MAPPING: "an object",
    checks.LIST: "an array",
}


#: (condition, kind, any items?) -> OpenAI's words for a count out of bounds.
_COUNTS = {
    (checks.MIN_ITEMS, LIST, False): (
        "empty array. Expected an array with minimum length {bound}, but got an"
        " empty array instead.",
        "empty_array",
    ),
    (checks.MIN_ITEMS, LIST, True): (
        "array too short. Expected an array with minimum length {bound}, but got"
        " an array with length {size} instead.",
        "array_below_min_length",
    ),
    (checks.MAX_ITEMS, LIST, True): (
        "array too long. Expected an array with maximum length {bound}, but got"
        " an array with length {size} instead.",
        "array_above_max_length",
    ),
    (checks.MAX_ITEMS, MAPPING, True): (
        "too many properties. Expected an object with at most {bound}"
        " properties, but got {size} instead.",
        "object_above_max_properties",
    ),
}


def as_api_error(problem: Problem) -> ApiError:
    """A failed shared check as OpenAI answers it: sentence, param and code."""
    param, got, bound = problem.path, problem.got, problem.bound
    expected = problem.expected
    if problem.wrong_type:
        return wrong_type(param, _EXPECTED.get(expected, expected), got)
    if expected in checks.RANGE:
        below = expected != checks.AT_MOST
        if problem.kind == INTEGER:
            side = "below minimum" if below else "above maximum"
            return invalid(
                f"Invalid '{param}': integer {side} value. Expected a value"
                f" {expected} {bound}, but got {got} instead.",
                param=param,
                code="integer_below_min_value" if below else "integer_above_max_value",
            )
        side = "lower than the minimum" if below else "greater than the maximum"
        return out_of_range(param, f"{got!r} is {side} of {bound!r}.")
    if expected == checks.ONE_OF:
        names = ", ".join(f"'{choice}'" for choice in bound)
        return invalid(
            f"Invalid value: '{got}'. Supported values are: {names}.",
            param=param,
            code="invalid_value",
        )
    count = _COUNTS.get((expected, problem.kind, bool(got)))
    if count is not None:
        (text, code) = count
        return invalid(
            f"Invalid '{param}': {text.format(bound=bound, size=len(got))}",
            param=param,
            code=code,
        )
    # No request model checks anything else; said plainly, should one start.
    return out_of_range(param, f"{checks.must(problem)}.")


#: For the request models' entry points: a failed check below one leaves it
#: as the 400 OpenAI sends.
worded = checks.worded_by(as_api_error)


def read_integer(
    value: Any,
    param: str,
    *,
    low: int = INT32_MIN,
    high: int = INT32_MAX,
    literal: Callable[[], str | None] | None = None,
) -> int:
    """``value`` as an int within ``[low, high]``, or a Problem.

    The one integer check of every request model.  A whole number written
    as a float (``16.0``) is taken when it is in range; any other float is a
    type error, as OpenAI words it ("expected an integer").  ``literal``
    finds the value's text in the body as sent (see ``Source``), so that an
    integer too large for orjson is still reported as the integer it was.
    """
    if literal is not None and isinstance(value, float) and abs(value) >= _ORJSON_INTS:
        text = literal()
        if text is not None:
            # An integer orjson could not hold: beyond int64, so beyond any bound.
            below = text.startswith("-")
            condition = checks.AT_LEAST if below else checks.AT_MOST
            bound = low if below else high
            raise Problem(param, condition, text, bound, INTEGER, low, high)
    return checks.integer(value, param, ge=low, le=high, whole_floats=True)


#: ``read_integer`` failing with the 400 OpenAI sends, for any caller.
check_integer = worded(read_integer)


class Fields:
    """Typed reads from one JSON object, each failing with the param's name.

    A value of exactly the type asked for (in range) is returned at once --
    every request pays for these reads, and a call each cost a chat parse
    13% -- and any other is the shared check's to take or refuse: a read
    raises its Problem, worded by the request model's ``worded`` entry point.
    ``source`` and ``path`` say where the object is in the body as sent, for
    the integers orjson cannot hold (``read_integer``).
    """

    def __init__(
        self,
        body: Mapping[str, Any],
        prefix: str = "",
        source: Source | None = None,
        path: tuple[str | int, ...] = (),
    ) -> None:
        self.body = body
        self.prefix = prefix
        self.source = source
        self.path = path

    def name(self, key: str) -> str:
        return self.prefix + key

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.body.get(key)
        if type(value) is str:
            return value
        if value is None:
            if required:
                raise missing(self.name(key))
            return None
        return checks.string(value, self.prefix + key)

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self.body.get(key)
        if type(value) is bool:
            return value
        if value is None:
            return default
        return checks.boolean(value, self.prefix + key)

    def integer(
        self, key: str, *, low: int = INT32_MIN, high: int = INT32_MAX
    ) -> int | None:
        value = self.body.get(key)
        if type(value) is int and low <= value <= high:
            return value
        if value is None:
            return None
        return read_integer(
            value, self.prefix + key, low=low, high=high, literal=self.literal(key)
        )

    def literal(self, *steps: str | int) -> Callable[[], str | None] | None:
        """Finds the integer literal at ``steps`` below this object, if known."""
        source = self.source
        if source is None:
            return None
        path = (*self.path, *steps)
        return lambda: source.integer_literal(path)

    def number(
        self, key: str, *, low: float | None = None, high: float | None = None
    ) -> float | None:
        value = self.body.get(key)
        if value is None:
            return None
        return checks.number(value, self.prefix + key, ge=low, le=high)

    def obj(self, key: str) -> dict[str, Any] | None:
        value = self.body.get(key)
        if type(value) is dict:
            return value
        if value is None:
            return None
        return checks.mapping(value, self.prefix + key)

    def array(self, key: str, *, min_items: int = 0) -> list[Any] | None:
        value = self.body.get(key)
        if type(value) is list and len(value) >= min_items:
            return value
        if value is None:
            return None
        return checks.array(value, self.prefix + key, min_items=min_items)
