"""RuleError and the value checks every rule parser uses.

Each check returns the value it was given, or raises a RuleError naming the
key path (``rules[3].times: must be an integer``).  A leaf: imports no rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mockai_tw.errors import describe


class RuleError(ValueError):
    """A rule is wrong; ``str()`` names the key path, like ConfigError."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def as_mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise RuleError(path, f"must be a mapping, got {describe(value)}")
    for key in value:
        if not isinstance(key, str):
            raise RuleError(path, f"keys must be strings, got {describe(key)}")
    return value


def known_keys(value: Mapping[str, Any], path: str, known: Sequence[str]) -> None:
    for key in value:
        if key not in known:
            where = f"{path}.{key}" if path else key
            raise RuleError(where, f"unknown key (known keys: {', '.join(known)})")


def as_string(value: Any, path: str, *, nonempty: bool = True) -> str:
    if not isinstance(value, str):
        raise RuleError(path, f"must be a string, got {describe(value)}")
    if nonempty and not value:
        raise RuleError(path, "must not be empty")
    return value


def as_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise RuleError(path, f"must be a boolean (true/false), got {describe(value)}")
    return value


def as_int(value: Any, path: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleError(path, f"must be an integer, got {describe(value)}")
    if not low <= value <= high:
        raise RuleError(path, f"must be between {low} and {high}")
    return value


def as_number(value: Any, path: str, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RuleError(path, f"must be a number, got {describe(value)}")
    if value != value or not low <= value <= high:
        raise RuleError(path, f"must be between {low:g} and {high:g}")
    return float(value)


def as_strings(value: Any, path: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (as_string(value, path),)
    if not isinstance(value, list) or not value:
        raise RuleError(
            path, f"must be a string or a non-empty list, got {describe(value)}"
        )
    return tuple(as_string(v, f"{path}[{i}]") for i, v in enumerate(value))
