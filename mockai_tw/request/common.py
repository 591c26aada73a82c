"""Shared checks for request bodies, worded as OpenAI words them."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import orjson

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
        raise invalid(
            f"Invalid type for 'body': expected an object, but got"
            f" {_KIND.get(json_kind(value), json_kind(value))} instead.",
            param=None,
            code="invalid_type",
        )
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


def check_integer(
    value: Any,
    param: str,
    *,
    low: int = INT32_MIN,
    high: int = INT32_MAX,
    literal: Callable[[], str | None] | None = None,
) -> int:
    """``value`` as an int within ``[low, high]``, or the 400 OpenAI sends.

    The one integer check of every request model.  A whole number written
    as a float (``16.0``) is taken when it is in range; any other float is a
    type error, as OpenAI words it ("expected an integer").  ``literal``
    finds the value's text in the body as sent (see ``Source``), so that an
    integer too large for orjson is still reported as the integer it was.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise wrong_type(param, "an integer", value)
    if isinstance(value, float):
        text = None
        if literal is not None and abs(value) >= _ORJSON_INTS:
            text = literal()
        if text is None:
            if value.is_integer() and low <= value <= high:
                return int(value)
            raise wrong_type(param, "an integer", value)
        # An integer orjson could not hold: beyond int64, so beyond any bound.
        shown, below = text, text.startswith("-")
    elif low <= value <= high:
        return value
    else:
        shown, below = str(value), value < low
    if below:
        raise invalid(
            f"Invalid '{param}': integer below minimum value. Expected a value"
            f" >= {low}, but got {shown} instead.",
            param=param,
            code="integer_below_min_value",
        )
    raise invalid(
        f"Invalid '{param}': integer above maximum value. Expected a value"
        f" <= {high}, but got {shown} instead.",
        param=param,
        code="integer_above_max_value",
    )


def missing(param: str) -> ApiError:
    return invalid(
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def out_of_range(param: str, message: str) -> ApiError:
    return invalid(f"Invalid '{param}': {message}", param=param, code="invalid_value")


class Fields:
    """Typed reads from one JSON object, each failing with the param's name.

    ``source`` and ``path`` say where the object is in the body as sent, for
    the integers orjson cannot hold (see ``check_integer``).
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
        return f"{self.prefix}{key}"

    def string(self, key: str, *, required: bool = False) -> str | None:
        value = self.body.get(key)
        if value is None:
            if required:
                raise missing(self.name(key))
            return None
        if not isinstance(value, str):
            raise wrong_type(self.name(key), "a string", value)
        return value

    def boolean(self, key: str, default: bool = False) -> bool:
        value = self.body.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise wrong_type(self.name(key), "a boolean", value)
        return value

    def integer(
        self, key: str, *, low: int = INT32_MIN, high: int = INT32_MAX
    ) -> int | None:
        value = self.body.get(key)
        if value is None:
            return None
        return check_integer(
            value, self.name(key), low=low, high=high, literal=self.literal(key)
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
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong_type(self.name(key), "a number", value)
        self._bounds(key, value, low, high)
        return float(value)

    def obj(self, key: str) -> dict[str, Any] | None:
        value = self.body.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise wrong_type(self.name(key), "an object", value)
        return value

    def array(self, key: str) -> list[Any] | None:
        value = self.body.get(key)
        if value is None:
            return None
        if not isinstance(value, list):
            raise wrong_type(self.name(key), "an array", value)
        return value

    def _bounds(
        self, key: str, value: float, low: float | None, high: float | None
    ) -> None:
        if low is not None and value < low:
            raise out_of_range(
                self.name(key),
                f"{value!r} is lower than the minimum of {low!r}.",
            )
        if high is not None and value > high:
            raise out_of_range(
                self.name(key),
                f"{value!r} is greater than the maximum of {high!r}.",
            )
