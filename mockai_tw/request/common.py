"""Shared checks for request bodies, worded as OpenAI words them."""

from __future__ import annotations

from collections.abc import Mapping
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
    "number": "a number",
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


def missing(param: str) -> ApiError:
    return invalid(
        f"Missing required parameter: '{param}'.",
        param=param,
        code="missing_required_parameter",
    )


def out_of_range(param: str, message: str) -> ApiError:
    return invalid(f"Invalid '{param}': {message}", param=param, code="invalid_value")


class Fields:
    """Typed reads from one JSON object, each failing with the param's name."""

    def __init__(self, body: Mapping[str, Any], prefix: str = "") -> None:
        self.body = body
        self.prefix = prefix

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
        self, key: str, *, low: int | None = None, high: int | None = None
    ) -> int | None:
        value = self.body.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise wrong_type(self.name(key), "an integer", value)
        self._bounds(key, value, low, high)
        return value

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
